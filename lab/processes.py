"""Starting the lab's servers: each its own session (a signal to the lab's shell does not reach it), its
output in DIR/NAME.log, no stdin."""

from __future__ import annotations

import subprocess
from pathlib import Path


def spawn(directory: Path, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    with open(directory / f"{name}.log", "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
