"""The lab's SSH server for tests, as its own process on 127.0.0.1 with a port and keys made for this run:
`with running_lxc_host(tmp_path) as host: ...` (host is ssh.json's contents plus `private_key`)."""

import contextlib
import json
import os
import sys
from pathlib import Path

from lab import ctl
from lab.processes import spawn
from tests.conftest import PROJECT_ROOT

COMPOSE_SCHEMA = PROJECT_ROOT / ".tools" / "compose-spec.json"


@contextlib.contextmanager
def running_lxc_host(tmp_path: Path):
    state = tmp_path / "lxc"
    proc = spawn(tmp_path, "ssh", [sys.executable, str(PROJECT_ROOT / "lab" / "ssh_standin.py"),
                                        "--state-dir", str(state)],
                      env={**os.environ, "OMNI_SCALE_COMPOSE_SCHEMA": str(COMPOSE_SCHEMA)})
    try:
        info = ctl._wait_for(state / "ssh.json", proc, tmp_path / "ssh.log", "the lab SSH server")
        info["private_key"] = Path(info["private_key_file"]).read_text()
        yield info
    finally:
        proc.terminate()
        proc.wait(30)


def docker_history(host: dict) -> list[list[str]]:
    log = Path(host["home"]) / ".docker-standin" / "history.log"
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []
