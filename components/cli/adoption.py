"""Adopting the estate that already runs: the list of what the program manages, from the spec, the plan of
the adopting `pulumi up`, and that `up` (in adoption mode: each existing thing is recorded as it is instead
of being written) only once the operator confirms.

    python -m components.cli.adoption [--stack prod] [--list] [--json] [--yes]

Without --yes it prints the plan (`pulumi preview` in adoption mode) and asks at a terminal; with no terminal
it writes nothing. Pulumi's own import cannot take over a Python dynamic resource, so each of this program's
providers adopts in `create` (components/core/dynamic.py: adopted); the pulumi-kubernetes resources (the Tailscale
operator's namespace and release) take the `import` option instead. Afterwards `pulumi preview` shows no change
where the live estate matches the spec, and exactly the differences where it does not.

A state made before the operator moved to pulumi-kubernetes holds its namespace and release as two dynamic
resources: adoption first removes those entries from the state (saving it as it was), and its `up` imports both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from components import PROJECT_ROOT
from components.core.dynamic import ADOPT_ENV
from components.core.errors import UserError
from components.core.spec import Spec
from components.core.spec_file import load_spec
from components.kubernetes.tailscale_operator import RELEASE, release_id
from components.omni.etcd_backups import S3_CONFIG_ID, EtcdBackupStore
from components.omni.machine_class import class_resource_id
from components.omni.render import DEFAULT_NAMESPACE
from components.omni.service_accounts import OmniServiceAccount, provider_account
from components.omni.talos_cluster import KUBECONFIG_USER
from components.proxmox.lxc import compose_id, container_id


def import_list(spec: Spec) -> list[dict]:
    """Every managed thing, with the id its provider reads it by, in the order `up` reaches them."""
    items = []
    lxc = spec.provider_lxc
    if lxc is not None:
        account = provider_account(spec.infra_provider.id)
        items.append(
            {
                "type": OmniServiceAccount.TYPE,
                "name": f"infra-provider-{spec.infra_provider.id}",
                "what": "Omni infra provider identity (key: providerOmniServiceAccountKey)",
                "id": account,
            }
        )
        items.append(
            {
                "type": "omni-scale:proxmox:ProviderLxc",
                "name": lxc.hostname,
                "what": "Proxmox container",
                "id": container_id(lxc.node, lxc.vmid),
            }
        )
        items.append(
            {
                "type": "omni-scale:proxmox:ProviderLxc",
                "name": f"{lxc.hostname}-compose",
                "what": "docker compose stack in it",
                "id": compose_id(str(lxc.network.address.ip), lxc.compose.directory),
            }
        )
    for name in spec.service_accounts:
        items.append(
            {
                "type": OmniServiceAccount.TYPE,
                "name": f"service-account-{name}",
                "what": "Omni service account (made if absent)",
                "id": name,
            }
        )
    if spec.backups is not None:
        items.append(
            {
                "type": EtcdBackupStore.TYPE,
                "name": "etcd-backup-store",
                "what": "Omni's etcd backup store (keys: backupS3AccessKeyId, backupS3SecretAccessKey)",
                "id": S3_CONFIG_ID,
            }
        )
    for class_id in spec.machine_classes:
        items.append(
            {
                "type": "omni-scale:omni:MachineClass",
                "name": class_id,
                "what": "Omni MachineClass",
                "id": class_resource_id(DEFAULT_NAMESPACE, class_id),
            }
        )
    for name in spec.clusters:
        items.append(
            {"type": "omni-scale:omni:TalosCluster", "name": name, "what": "Omni cluster (template)", "id": name}
        )
    op = spec.tailscale_operator
    if op is not None and op.enabled:
        items.append(
            {
                "type": "kubernetes:core/v1:Namespace",
                "name": "tailscale-operator-namespace",
                "what": f"namespace in {op.cluster}",
                "id": op.namespace,
            }
        )
        items.append(
            {
                "type": "kubernetes:helm.sh/v3:Release",
                "name": RELEASE,
                "what": f"Helm release in {op.cluster}",
                "id": release_id(op.namespace, RELEASE),
            }
        )
    return items


# What the code before pulumi-kubernetes registered for the operator: two Python dynamic resources in the component.
_RETIRED = "omni-scale:k8s:TailscaleOperator$pulumi-python:dynamic:Resource::"


def retired_entries(state: dict) -> list[str]:
    """The URNs of the previous code's operator resources in an exported state, dependents first (the order
    `pulumi state delete` takes them in). Their namespace and release are imported by the adopting `up`."""
    resources = state.get("deployment", {}).get("resources") or []
    return [r["urn"] for r in reversed(resources) if _RETIRED in r["urn"]]


def _pulumi(pulumi_argv: Callable[..., list[str]], cwd: Path, env: dict, *args: str) -> str:
    proc = subprocess.run(
        pulumi_argv(*args), cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        raise AdoptionError(f"pulumi {' '.join(args[:2])}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def remove_retired_entries(
    exported: str, urns: list[str], pulumi_argv: Callable[..., list[str]], cwd: Path, env: dict
) -> None:
    """Removes the previous code's operator entries from the state (nothing in the cluster is touched), after
    saving the state as it was (0600: its secrets are encrypted, but it is the whole estate's record)."""
    backup = cwd / ".adoption" / f"state-before-adoption-{int(time.time())}.json"
    backup.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(exported)
    print(f"adoption: the state as it was is saved in {backup} (`pulumi stack import --file` puts it back)")
    for urn in urns:
        # --force: prod protects them; removing an entry from the state deletes nothing live.
        _pulumi(pulumi_argv, cwd, env, "state", "delete", urn, "--force", "--yes")
        print(f"adoption: removed from the state, left running: {urn.rsplit('::', 1)[1]}")


class AdoptionError(Exception):
    pass


def format_table(items: list[dict]) -> str:
    rows = [("what", "name", "id")] + [(i["what"], i["name"], i["id"]) for i in items]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# With ADOPT_ENV=1 in their environment. The `up` previews before it applies: its plan is printed first.
ADOPT_PREVIEW_ARGS = ("preview", "--diff")
ADOPT_UP_ARGS = ("up", "--yes")


def what_adoption_does(spec: Spec) -> str:
    """What the plan's steps mean in adoption mode, and the credentials the adopting `up` makes."""
    lines = [
        "adoption: in the plan below, each `+ create` is first looked up by the id listed above: what exists is",
        "  recorded in the state as it is (nothing written), what does not is created; each `~ update` (a thing",
        "  the state already holds) is applied as shown.",
    ]
    if spec.provider_lxc is not None:
        lines.append(
            "adoption: Omni never gives a key back: the infra provider's identity, if it exists, is taken over with "
            "the key\n  in omni-scale:providerOmniServiceAccountKey (the one its .env holds); `up` renews it from then "
            "on. An automation\n  account that exists already is refused (its key cannot be had): destroy it first."
        )
    op = spec.tailscale_operator
    if op is not None and op.enabled:
        lines.append(
            "adoption: the Tailscale operator's namespace and release show as `= import`: pulumi-kubernetes "
            "reads them as they are,\n  then applies what differs (an upgrade in place); they must exist "
            "(otherwise set tailscale_operator.enabled: false to adopt)"
        )
    if spec.clusters:
        lines.append("adoption: it mints these credentials (kept encrypted in the state, for the Tailscale operator):")
        lines += [
            f"  cluster {name}: Omni service account {KUBECONFIG_USER!r} and its kubeconfig "
            "(`omnictl kubeconfig --service-account`, life: omni-scale:kubeconfigTtlSeconds)"
            for name in spec.clusters
        ]
    return "\n".join(lines)


def _confirmed(yes: bool, ask: Callable[[str], str] | None, question: str) -> bool:
    """--yes, or a `yes` typed at the terminal; otherwise says that nothing was written."""
    if yes or (ask is not None and ask(question).strip().lower() == "yes"):
        return True
    print(
        "adoption: nothing written"
        + ("" if ask else " (no terminal to confirm at: run again with --yes to adopt as planned)")
    )
    return False


def adopt(
    spec: Spec,
    pulumi_argv: Callable[..., list[str]],
    cwd: Path,
    env: dict,
    yes: bool,
    ask: Callable[[str], str] | None = None,
) -> int:
    """Prints the list and the plan; runs the adopting `up` on --yes or on a `yes` typed at the prompt (ask,
    given when there is a terminal). Returns the exit code: 1 when nothing was written for want of a yes."""
    env = {**env, ADOPT_ENV: "1"}
    print(format_table(import_list(spec)))
    print(what_adoption_does(spec), flush=True)
    try:
        exported = _pulumi(pulumi_argv, cwd, env, "stack", "export")
        retired = retired_entries(json.loads(exported))
        if retired:
            print(
                "adoption: the state holds the operator's namespace and release as the code before "
                "pulumi-kubernetes made them;\n  they are removed from the state first (the cluster is not "
                "touched), and the adopting `up` imports both:"
            )
            print("\n".join(f"  {urn}" for urn in retired), flush=True)
            if not _confirmed(yes, ask, "remove them from the state and go on? type yes: "):
                return 1
            remove_retired_entries(exported, retired, pulumi_argv, cwd, env)
    except AdoptionError as exc:
        print(f"adoption: {exc}", file=sys.stderr)
        return 2
    if not yes:
        preview = subprocess.run(pulumi_argv(*ADOPT_PREVIEW_ARGS), cwd=cwd, env=env)
        if preview.returncode != 0:
            return preview.returncode
        if not _confirmed(yes, ask, "adopt as planned? type yes to go on: "):
            return 1
    return subprocess.run(pulumi_argv(*ADOPT_UP_ARGS), cwd=cwd, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=None, help="the stack to adopt into (default: the selected one)")
    parser.add_argument("--spec", default="specs/omni.yaml")
    parser.add_argument("--list", action="store_true", help="only print what would be adopted")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--yes", action="store_true", help="adopt without asking (the plan is printed first)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(PROJECT_ROOT / args.spec, display_name=args.spec)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.list:
        items = import_list(spec)
        print(json.dumps(items, indent=2) if args.json else format_table(items))
        return 0
    stack = ["--stack", args.stack] if args.stack else []
    return adopt(
        spec,
        lambda *a: ["pulumi", *a, *stack, "--non-interactive"],
        PROJECT_ROOT,
        dict(os.environ),
        args.yes,
        input if sys.stdin.isatty() else None,
    )


if __name__ == "__main__":
    sys.exit(main())
