"""Drift detection: does the live estate still match the spec?

    python -m components.drift [--stack prod] [--report drift-report.json]

Runs `pulumi preview --refresh --json` (refresh reads every live thing through the providers' `read`;
preview then compares it with what the program wants) and answers with an exit code:

    0  no drift
    1  drift: what differs is printed (resource, field, live vs desired) and written to the report
    2  could not judge: Omni or Proxmox unreachable, a refused key, a bad spec (the report says which)

A preflight failure (a storage gone from a node, a node offline, public DNS) is drift too: the
infrastructure no longer satisfies the spec; so are control planes not spread where a cluster's
`control_plane.spread` is `require`. Every report also says, per cluster, where the control planes run and
what losing each Proxmox node would leave (components/placement.py): two on one node is a warning there.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from .placement import RESOURCE_NAME as PLACEMENT, report_lines, required_spread_broken

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NO_DRIFT, DRIFT, UNJUDGED = 0, 1, 2
PREVIEW_ARGS = ("preview", "--refresh", "--json", "--diff")
# What a changed-out-of-band resource turns into in a refreshed preview.
CHANGE_OPS = {"update": "differs", "replace": "differs (would be replaced)", "create-replacement":
              "differs (would be replaced)", "create": "missing (would be created)", "delete": "not in the spec"}
# How the engine prints a failed `check` of the StoragePreflight resource, one line per problem.
_PREFLIGHT = re.compile(r"property preflight value .*? has a problem: (.+)")
_INTERNAL = ("__provider", "__inputs")
_DYNAMIC = "$pulumi-python:dynamic:Resource::"
# The engine's and the Python SDK's wrapping around a provider's own message.
_ENGINE_NOISE = re.compile(r"^(error: )?(Preview failed: )?(Exception calling application: )?")


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _component_type(urn: str) -> str:
    """The component a dynamic resource belongs to: urn:...::omni-scale:proxmox:ProviderLxc$pulumi-python:...::name."""
    chain = urn.split("::")[2].split("$")
    return next((t for t in reversed(chain) if not t.startswith("pulumi-python:")), chain[-1])


def field_changes(live: dict, desired: dict, prefix: str = "") -> list[dict]:
    """Dotted paths whose values differ, with both values (secrets stay "[secret]" as pulumi prints them)."""
    out = []
    for key in sorted(set(live) | set(desired)):
        if key in _INTERNAL:
            continue
        path = f"{prefix}{key}"
        a, b = live.get(key), desired.get(key)
        if b is None:
            continue  # an output the program leaves to the provider (a kubeconfig, a host key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += field_changes(a, b, path + ".")
        elif a != b:
            out.append({"field": path, "live": a, "desired": b})
    return out


def _is_estate_change(step: dict) -> bool:
    """False for what is not a thing of the estate's: a provider (how the program reaches a cluster; its kubeconfig
    renews on the cluster's schedule, reported there), and an update pulumi-kubernetes could not diff because that
    provider's kubeconfig is known only once the change reported for its cluster is applied (no diff reasons)."""
    kind = step["urn"].split("::")[2].split("$")[-1]
    if kind.startswith("pulumi:providers:"):
        return False
    return not (step.get("op") == "update" and _DYNAMIC not in step["urn"]
                and not step.get("diffReasons") and not step.get("detailedDiff"))


def _changed_fields(step: dict) -> list[dict]:
    """What differs, live against desired. A pulumi-kubernetes resource compares its old inputs, the live state and
    the new inputs three ways, which no two-way comparison repeats: for it, the fields its own diff names (a secret,
    such as a Helm release's values with the OAuth pair, reads "[secret]" on both sides)."""
    live, desired = (step.get("oldState") or {}).get("outputs") or {}, (step.get("newState") or {}).get("inputs") or {}
    if _DYNAMIC in step["urn"]:
        return field_changes(live, desired)
    paths = sorted(step.get("detailedDiff") or {}) or step.get("diffReasons") or []
    return [{"field": path, "live": _at(live, path), "desired": _at(desired, path)} for path in paths]


def _at(value: Any, path: str) -> Any:
    """The value at a dotted path, or what stands above it when that is not a mapping (a "[secret]")."""
    for key in path.split("."):
        if not isinstance(value, dict):
            return value
        value = value.get(key)
    return value


def analyse(preview: dict, returncode: int, stderr: str = "") -> dict:
    """The report, from pulumi's JSON preview (and its exit code and stderr when it failed)."""
    resources = []
    for step in preview.get("steps", []):
        op = step.get("op")
        if op not in CHANGE_OPS or step["urn"].endswith("pulumi:pulumi:Stack::" + _name(step["urn"])) \
                or not _is_estate_change(step):
            continue
        fields = _changed_fields(step) if op == "update" else []
        resources.append({"name": _name(step["urn"]), "type": _component_type(step["urn"]), "urn": step["urn"],
                          "change": CHANGE_OPS[op], "fields": fields})
    errors, preflight = [], []
    messages = [d.get("message", "") for d in preview.get("diagnostics", []) if d.get("severity") == "error"]
    if returncode != 0 and not messages:
        messages = [line for line in stderr.splitlines() if "error" in line.lower()] or [stderr.strip()]
    for message in messages:
        found = _PREFLIGHT.findall(message)
        if found:
            preflight += [f.strip() for f in found]
        elif message.strip() and message.strip() not in ("error: preview failed", "preview failed"):
            errors.append(_ENGINE_NOISE.sub("", message.strip()))
    preflight, errors = sorted(set(preflight)), sorted(set(errors))
    placement = placement_of(preview)
    required = required_spread_broken(placement)
    if errors:
        code = UNJUDGED
    elif resources or preflight or required:
        code = DRIFT
    elif returncode != 0:
        code, errors = UNJUDGED, [stderr.strip() or f"pulumi preview exited with {returncode}"]
    else:
        code = NO_DRIFT
    return {"exit_code": code, "drift": code == DRIFT, "resources": resources, "preflight": preflight,
            "errors": errors, "placement": placement}


def placement_of(preview: dict) -> dict:
    """The control-plane placement the refresh just read (components/placement.py), per cluster, judged by the
    spread the spec asks for now: the refresh step carries the state's (perhaps older) spec, the step after it
    the program's."""
    found, wanted = {}, {}
    for step in preview.get("steps", []):
        if step["urn"].endswith("::" + PLACEMENT) and _DYNAMIC in step["urn"]:
            old, new = step.get("oldState") or {}, step.get("newState") or {}
            found = (new.get("outputs") or {}).get("placement") or (old.get("outputs") or {}).get("placement") or found
            wanted = ((new.get("inputs") or {}).get("spec") or {}).get("clusters") or wanted
    return {name: {**cluster, "spread": ((wanted.get(name) or {}).get("control_plane") or {}).get(
        "spread", cluster["spread"])} for name, cluster in found.items()}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= 70 else text[:67] + "..."


def _field_lines(f: dict) -> list[str]:
    live, desired = f["live"], f["desired"]
    if isinstance(live, str) and isinstance(desired, str) and "\n" in live + desired:
        # A document (a cluster template): the lines that differ, not two walls of text.
        changed = [line for line in difflib.unified_diff(live.splitlines(), desired.splitlines(), lineterm="", n=0)
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        shown = [f"      {'live   ' if line[0] == '-' else 'desired'} | {line[1:]}" for line in changed[:8]]
        more = [f"      ... {len(changed) - 8} more changed lines"] if len(changed) > 8 else []
        return [f"    {f['field']}:"] + shown + more
    return [f"    {f['field']}: live {_short(live)}, desired {_short(desired)}"]


def summary(report: dict) -> str:
    if report["exit_code"] == UNJUDGED:
        return "drift: could not judge:\n" + "\n".join(f"  {e}" for e in report["errors"])
    if report["exit_code"] == NO_DRIFT:
        return "drift: none; the live estate matches the spec"
    lines = ["drift: the live estate differs from the spec:"]
    for r in report["resources"]:
        lines.append(f"  {r['name']} ({r['type']}): {r['change']}")
        for f in r["fields"]:
            lines += _field_lines(f)
    lines += [f"  preflight: {p}" for p in report["preflight"]]
    lines += [f"  placement: {p}" for p in required_spread_broken(report.get("placement") or {})]
    return "\n".join(lines)


def placement_summary(report: dict) -> str:
    """What losing each Proxmox node would leave, per cluster (empty when nothing was read)."""
    lines = report_lines(report.get("placement") or {})
    return "placement (what losing each Proxmox node would leave):\n" + "\n".join(f"  {line}" for line in lines) \
        if lines else ""


def detect(argv: list[str], cwd: Path, env: Optional[dict] = None) -> dict:
    """Runs the refreshed preview (argv: the pulumi command with its stack flags) and analyses it."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    try:
        preview = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        preview = {}
    return analyse(preview, proc.returncode, proc.stderr + ("" if preview else proc.stdout))


def report_and_exit_code(report: dict, report_path: Optional[str], stack: str) -> int:
    print(summary(report))
    if placement_summary(report):
        print(placement_summary(report))
    if report_path:
        Path(report_path).write_text(json.dumps({"stack": stack, **report}, indent=2, default=str) + "\n")
    return report["exit_code"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=None)
    parser.add_argument("--report", default="drift-report.json", help="where to write the JSON report")
    args = parser.parse_args(argv)
    stack = ["--stack", args.stack] if args.stack else []
    report = detect(["pulumi", *PREVIEW_ARGS, *stack, "--non-interactive"], PROJECT_ROOT, dict(os.environ))
    return report_and_exit_code(report, args.report, args.stack or "(selected)")


if __name__ == "__main__":
    sys.exit(main())
