"""Takes an etcd backup of a cluster now and waits for it: `make backup CLUSTER=talos-prod-01 [STACK=prod]`.

Asks Omni for it (an EtcdManualBackups resource), then waits on Omni's backup status for the cluster until it
records an attempt made since: the snapshot it wrote to the store, or Omni's error. Exit 0 with the snapshot's
name (what restore_from names), 1 when Omni's backup failed or did not happen in time, 2 for a mistake (no such
cluster, no backups section in the spec, a stack without Omni's credentials).

Omni looks for backup requests once a minute, and a request names a time Omni accepts only within a minute of
its own clock.
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
from components.core.errors import UserError
from components.core.settings import NAMESPACE, omnictl_from_config, with_omni_key_from_env
from components.omni.etcd_backups import BackupFailed, request_backup, wait_for_backup
from components.omni.omnictl import NotFound, Omnictl, OmnictlError

DEFAULT_TIMEOUT_SECONDS = 600.0


def stack_omnictl(pulumi_argv: Callable[..., list[str]], cwd: Path, env: dict) -> Omnictl:
    """omnictl as the stack's config says (its key through the environment, never argv), read with `pulumi config
    --show-secrets` through a pipe."""
    shown = subprocess.run(
        pulumi_argv("config", "--show-secrets", "--json"), cwd=cwd, env=env, capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise UserError("Pulumi.<stack>.yaml", expected=f"`pulumi config` to work ({shown.stderr.strip()})")
    values = {
        key.split(":", 1)[1]: entry.get("value")
        for key, entry in json.loads(shown.stdout).items()
        if key.startswith(f"{NAMESPACE}:")
    }
    client, _settings = omnictl_from_config(with_omni_key_from_env(values.get))
    return client


def take_backup(
    cluster: str, pulumi_argv: Callable[..., list[str]], cwd: Path, env: dict, timeout_seconds: float
) -> int:
    try:
        client = stack_omnictl(pulumi_argv, cwd, env)
        asked_at = request_backup(client, cluster)
    except (UserError, NotFound) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    except OmnictlError as exc:
        print(f"backup: Omni refused the request: {exc.message}", file=sys.stderr)
        return 1
    print(f"backup: asked Omni for a backup of cluster {cluster} at {asked_at:%Y-%m-%d %H:%M:%S} UTC", file=sys.stderr)
    try:
        backup = wait_for_backup(client, cluster, asked_at, timeout_seconds)
    except BackupFailed as exc:
        print(f"backup: {exc.message}", file=sys.stderr)
        return 1
    except OmnictlError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup: cluster {cluster}: snapshot {backup.snapshot} taken at {backup.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cluster", help="a cluster of specs/omni.yaml")
    parser.add_argument("--stack", default=None)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds to wait for Omni")
    args = parser.parse_args(argv)
    stack = ["--stack", args.stack] if args.stack else []
    return take_backup(
        args.cluster,
        lambda *a: ["pulumi", *a, *stack, "--non-interactive"],
        PROJECT_ROOT,
        dict(os.environ),
        args.timeout,
    )


if __name__ == "__main__":
    sys.exit(main())
