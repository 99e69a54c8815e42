"""The one way this program runs helm (to pull and render charts): the pinned binary, with any values in a 0600
file of a private temporary directory (never argv), its own cache and config dirs, a timeout, and one error type."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from components.omni.omnictl import OmnictlMissing, resolve_binary

HELM_TIMEOUT_SECONDS = 600


class HelmError(Exception):
    pass


def helm_binary(path_setting: object | None) -> str:
    """helm to run: omni-scale:helmPath, else `helm` (the pinned build in .tools/bin first)."""
    try:
        return resolve_binary(str(path_setting or "helm"))
    except OmnictlMissing:
        raise HelmError("helm is not on PATH (run `make setup`) and omni-scale:helmPath names none") from None


def run_helm(binary: str, *args: str, values: dict | None = None) -> str:
    """`helm ARGS [--values FILE]`; what it prints. The values reach it only as a 0600 file in a 0700 directory
    removed when it is done."""
    with tempfile.TemporaryDirectory(prefix="omni-scale-helm-") as tmp:  # mode 0700
        env = {
            **os.environ,
            "HELM_CACHE_HOME": f"{tmp}/cache",
            "HELM_CONFIG_HOME": f"{tmp}/config",
            "HELM_DATA_HOME": f"{tmp}/data",
        }
        argv = [binary, *args]
        if values is not None:
            _write_private(Path(tmp) / "values.yaml", yaml.safe_dump(values, sort_keys=True))
            argv += ["--values", f"{tmp}/values.yaml"]
        try:
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=HELM_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise HelmError(f"helm not found at {binary} (run tools/bootstrap.sh, or set helmPath)") from None
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]} did not finish within {HELM_TIMEOUT_SECONDS}s") from None
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(a for a in args[:2])}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def merge_values(base: dict, extra: dict) -> dict:
    """Chart values: extra over base, mappings merged key by key (as helm merges --values files)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merge_values(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
