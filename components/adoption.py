"""Adopting the estate that already runs: the list of what the program manages, from the spec, and
one `pulumi up` in adoption mode that records each existing thing as it is instead of writing it.

    python -m components.adoption [--stack prod] [--list] [--json]

Pulumi's own import cannot take over a Python dynamic resource, so each of this program's providers
adopts in `create` (components/providers.py: adopted). Afterwards `pulumi preview` shows no change
where the live estate matches the spec, and exactly the differences where it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .machine_class import class_resource_id
from .provider_lxc import compose_id, container_id
from .providers import ADOPT_ENV
from .render import DEFAULT_NAMESPACE
from .tailscale_operator import RELEASE, release_id
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


ADOPT_UP_ARGS = ("up", "--yes", "--skip-preview")  # with ADOPT_ENV=1 in its environment


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=None, help="the stack to adopt into (default: the selected one)")
    parser.add_argument("--spec", default="specs/omni.yaml")
    parser.add_argument("--list", action="store_true", help="only print what would be adopted")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(PROJECT_ROOT / args.spec, display_name=args.spec)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    items = import_list(spec)
    print(json.dumps(items, indent=2) if args.json else format_table(items))
    if args.list:
        return 0
    stack = ["--stack", args.stack] if args.stack else []
    # One `pulumi up` with adoption on: existing things are recorded as they are, missing ones created.
    return subprocess.run(["pulumi", *ADOPT_UP_ARGS, *stack, "--non-interactive"], cwd=PROJECT_ROOT,
                          env={**os.environ, ADOPT_ENV: "1"}).returncode


if __name__ == "__main__":
    sys.exit(main())
