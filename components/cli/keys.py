"""Hands out the key of one of the program's Omni service accounts (specs/omni.yaml service_accounts), once.

The key lives only in the stack's state, encrypted. This reads it with `pulumi stack export --show-secrets` and
writes it into a new file of mode 0600 (--out), or prints it to a terminal; never into a pipe or a log, and never
as a stack output. For the drift job's secret store: `make service-account-key NAME=drift OUT=drift.key`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from components import PROJECT_ROOT
from components.omni.service_account_key import key_facts

SERVICE_ACCOUNT_TYPE = "pulumi-python:dynamic/omni:ServiceAccount"


class KeyNotHeld(Exception):
    pass


def revealed(value):
    """A value as `stack export --show-secrets` writes it: a secret keeps its envelope,
    {"<sig>": "<secret sig>", "plaintext": "<the value, JSON>"}; anything else is itself."""
    return json.loads(value["plaintext"]) if isinstance(value, dict) and "plaintext" in value else value


def key_in_state(deployment: dict, account: str) -> str:
    """The key the state holds for the account (decrypted: `stack export --show-secrets`)."""
    for resource in deployment.get("resources", []):
        outputs = resource.get("outputs") or {}
        if resource.get("type") == SERVICE_ACCOUNT_TYPE and outputs.get("account") == account:
            key = revealed(outputs.get("key"))
            if key:
                return str(key)
    held = sorted(
        str((r.get("outputs") or {}).get("account"))
        for r in deployment.get("resources", [])
        if r.get("type") == SERVICE_ACCOUNT_TYPE
    )
    raise KeyNotHeld(
        f"the stack holds no key for service account {account!r} (it holds: {', '.join(held) or 'none'}); "
        "name it under service_accounts in specs/omni.yaml and run `pulumi up` first"
    )


def write_private(path: Path, key: str) -> None:
    """A new file, 0600 from its first byte; an existing file is refused (a key is not written over another)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def hand_out(
    account: str,
    out: Path | None,
    pulumi_argv: Callable[..., list[str]],
    cwd: Path,
    env: dict,
    is_terminal: bool,
) -> int:
    if out is None and not is_terminal:
        print("keys: stdout is not a terminal: name a file with --out (OUT=...), which is made 0600", file=sys.stderr)
        return 2
    exported = subprocess.run(
        pulumi_argv("stack", "export", "--show-secrets"), cwd=cwd, env=env, capture_output=True, text=True
    )
    if exported.returncode != 0:
        print(f"keys: `pulumi stack export` failed: {exported.stderr.strip()}", file=sys.stderr)
        return 2
    try:
        key = key_in_state(json.loads(exported.stdout)["deployment"], account)
    except KeyNotHeld as exc:
        print(f"keys: {exc}", file=sys.stderr)
        return 1
    facts = key_facts(key)
    expiry = facts.expires_at.strftime("%Y-%m-%d %H:%M UTC") if facts.expires_at else "never"
    if out is not None:
        try:
            write_private(out, key)
        except FileExistsError:
            print(f"keys: {out} exists; name a new file (a key is not written over another)", file=sys.stderr)
            return 2
        print(f"keys: the key of {account!r} (expires {expiry}) is in {out} (mode 0600)", file=sys.stderr)
    else:
        print(key)
        print(f"keys: the key of {account!r} expires {expiry}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("account", help="a name under service_accounts in specs/omni.yaml")
    parser.add_argument("--out", type=Path, default=None, help="a new file to write the key into (mode 0600)")
    parser.add_argument("--stack", default=None)
    args = parser.parse_args(argv)
    stack = ["--stack", args.stack] if args.stack else []
    return hand_out(
        args.account,
        args.out,
        lambda *a: ["pulumi", *a, *stack, "--non-interactive"],
        PROJECT_ROOT,
        dict(os.environ),
        sys.stdout.isatty(),
    )


if __name__ == "__main__":
    sys.exit(main())
