"""Adopting the estate that already runs: the list of what the program manages, from the spec, the plan of
the adopting `pulumi up`, and that `up` (in adoption mode: each existing thing is recorded as it is instead
of being written) only once the operator confirms.

    python -m components.adoption [--stack prod] [--list] [--json] [--yes]

Without --yes it prints the plan (`pulumi preview` in adoption mode) and asks at a terminal; with no terminal
it writes nothing. Pulumi's own import cannot take over a Python dynamic resource, so each of this program's
providers adopts in `create` (components/providers.py: adopted). Afterwards `pulumi preview` shows no change
where the live estate matches the spec, and exactly the differences where it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

from .machine_class import class_resource_id
from .provider_lxc import compose_id, container_id
from .providers import ADOPT_ENV
from .render import DEFAULT_NAMESPACE
from .tailscale_operator import RELEASE, release_id
from .talos_cluster import KUBECONFIG_USER
from .spec import Spec, SpecError, load_spec

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def import_list(spec: Spec) -> list[dict]:
    """Every managed thing, with the id its provider reads it by, in the order `up` reaches them."""
    items = []
    lxc = spec.provider_lxc
    if lxc is not None:
        items.append({"type": "omni-scale:proxmox:ProviderLxc", "name": lxc.hostname, "what": "Proxmox container",
                      "id": container_id(lxc.node, lxc.vmid)})
        items.append({"type": "omni-scale:proxmox:ProviderLxc", "name": f"{lxc.hostname}-compose",
                      "what": "docker compose stack in it", "id": compose_id(str(lxc.network.address.ip), lxc.compose.directory)})
    for class_id in spec.machine_classes:
        items.append({"type": "omni-scale:omni:MachineClass", "name": class_id, "what": "Omni MachineClass",
                      "id": class_resource_id(DEFAULT_NAMESPACE, class_id)})
    for name in spec.clusters:
        items.append({"type": "omni-scale:omni:TalosCluster", "name": name, "what": "Omni cluster (template)",
                      "id": name})
    op = spec.tailscale_operator
    if op is not None and op.enabled:
        items.append({"type": "omni-scale:k8s:TailscaleOperator", "name": "tailscale-operator-namespace",
                      "what": f"namespace in {op.cluster}", "id": op.namespace})
        items.append({"type": "omni-scale:k8s:TailscaleOperator", "name": RELEASE,
                      "what": f"Helm release in {op.cluster}", "id": release_id(op.namespace, RELEASE)})
    return items


def format_table(items: list[dict]) -> str:
    rows = [("what", "name", "id")] + [(i["what"], i["name"], i["id"]) for i in items]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


# With ADOPT_ENV=1 in their environment. The `up` previews before it applies: its plan is printed first.
ADOPT_PREVIEW_ARGS = ("preview", "--diff")
ADOPT_UP_ARGS = ("up", "--yes")


def what_adoption_does(spec: Spec) -> str:
    """What the plan's steps mean in adoption mode, and the credentials the adopting `up` makes."""
    lines = ["adoption: in the plan below, each `+ create` is first looked up by the id listed above: what exists is",
             "  recorded in the state as it is (nothing written), what does not is created; each `~ update` (a thing",
             "  the state already holds) is applied as shown."]
    if spec.clusters:
        lines.append("adoption: it mints these credentials (kept encrypted in the state, for the Tailscale operator):")
        lines += [f"  cluster {name}: Omni service account {KUBECONFIG_USER!r} and its kubeconfig "
                  "(`omnictl kubeconfig --service-account`, life: omni-scale:kubeconfigTtlSeconds)"
                  for name in spec.clusters]
    return "\n".join(lines)


def adopt(spec: Spec, pulumi_argv: Callable[..., list[str]], cwd: Path, env: dict, yes: bool,
          ask: Optional[Callable[[str], str]] = None) -> int:
    """Prints the list and the plan; runs the adopting `up` on --yes or on a `yes` typed at the prompt (ask,
    given when there is a terminal). Returns the exit code: 1 when nothing was written for want of a yes."""
    env = {**env, ADOPT_ENV: "1"}
    print(format_table(import_list(spec)))
    print(what_adoption_does(spec), flush=True)
    if not yes:
        preview = subprocess.run(pulumi_argv(*ADOPT_PREVIEW_ARGS), cwd=cwd, env=env)
        if preview.returncode != 0:
            return preview.returncode
        answer = ask("adopt as planned? type yes to go on: ") if ask else ""
        if answer.strip().lower() != "yes":
            print("adoption: nothing written" + ("" if ask else " (no terminal to confirm at: run again with --yes "
                                                                 "to adopt as planned)"))
            return 1
    return subprocess.run(pulumi_argv(*ADOPT_UP_ARGS), cwd=cwd, env=env).returncode


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=None, help="the stack to adopt into (default: the selected one)")
    parser.add_argument("--spec", default="specs/omni.yaml")
    parser.add_argument("--list", action="store_true", help="only print what would be adopted")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--yes", action="store_true", help="adopt without asking (the plan is printed first)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(PROJECT_ROOT / args.spec, display_name=args.spec)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.list:
        items = import_list(spec)
        print(json.dumps(items, indent=2) if args.json else format_table(items))
        return 0
    stack = ["--stack", args.stack] if args.stack else []
    return adopt(spec, lambda *a: ["pulumi", *a, *stack, "--non-interactive"], PROJECT_ROOT, dict(os.environ),
                 args.yes, input if sys.stdin.isatty() else None)


if __name__ == "__main__":
    sys.exit(main())
