"""Drift detection: does the live estate still match the spec?

    python -m components.cli.drift [--stack prod] [--report drift-report.json]

Runs `pulumi preview --refresh` (refresh reads every live thing through the providers' `read`; preview
then compares it with what the program wants) and judges it from the engine's structured event stream
(`--json` with PULUMI_ENABLE_STREAMING_JSON_PREVIEW: each step's op, type, old and new state and diff,
each diagnostic's resource and severity), never from the engine's wording. It answers with an exit code:

    0  no drift
    1  drift: what differs is printed (resource, field, live vs desired) and written to the report
    2  could not judge: Omni or Proxmox unreachable, a refused key, a bad spec (the report says which)

A preflight failure (a storage gone from a node, a node offline, public DNS) is drift too: the
infrastructure no longer satisfies the spec; so are control planes not spread where a cluster's
`control_plane.spread` is `require`; and an Omni key the stack holds that has expired or expires within
keyExpiryWarningDays (the program's marked warning, components/omni/service_account_key.py); and a cluster whose
newest etcd backup is older than twice its backup interval (components/omni/etcd_backups.py). Every report also
says, per cluster, where the control planes run and what losing each Proxmox node would leave
(components/proxmox/placement.py): two on one node is a warning there.
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pulumi.runtime.rpc import UNKNOWN

from components import PROJECT_ROOT
from components.core.dynamic import is_dynamic_type
from components.omni.etcd_backups import BACKUP_STALE_MARK
from components.omni.service_account_key import KEY_EXPIRY_MARK
from components.proxmox.placement import RESOURCE_NAME as PLACEMENT
from components.proxmox.placement import report_lines, required_spread_broken
from components.proxmox.storage_preflight import PREFLIGHT_MARK, PREFLIGHT_TYPE

NO_DRIFT, DRIFT, UNJUDGED = 0, 1, 2
PREVIEW_ARGS = ("preview", "--refresh", "--json")
# With it, `preview --json` streams the engine's events (one JSON object per line) instead of one summary document.
STREAMING = {"PULUMI_ENABLE_STREAMING_JSON_PREVIEW": "1"}
# What a changed-out-of-band resource turns into in a refreshed preview.
CHANGE_OPS = {
    "update": "differs",
    "replace": "differs (would be replaced)",
    "create-replacement": "differs (would be replaced)",
    "create": "missing (would be created)",
    "delete": "not in the spec",
}
_INTERNAL = ("__provider", "__inputs")
# The engine's and the Python SDK's wrapping around a provider's own message, and Pulumi's colour directives;
# only for showing an error, never for judging one.
_ENGINE_NOISE = re.compile(r"^(error: )?(Preview failed: )?(Exception calling application: )?")
_COLOURS = re.compile(r"<\{%[^%]*%\}>")


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
        if b == UNKNOWN:
            continue  # known only once applied (another resource's output): the provider's own diff judges it
        if isinstance(a, dict) and isinstance(b, dict):
            out += field_changes(a, b, path + ".")
        elif a != b:
            out.append({"field": path, "live": a, "desired": b})
    return out


def _is_estate_change(step: dict) -> bool:
    """False for what is not a thing of the estate's: a provider (how the program reaches a cluster; its kubeconfig
    renews on the cluster's schedule, reported there), and an update pulumi-kubernetes could not diff because that
    provider's kubeconfig is known only once the change reported for its cluster is applied (no diff reasons)."""
    if step["type"].startswith("pulumi:providers:") or step["type"] == "pulumi:pulumi:Stack":
        return False
    return not (
        step.get("op") == "update"
        and not is_dynamic_type(step["type"])
        and not step.get("diffReasons")
        and not step.get("detailedDiff")
    )


def _changed_fields(step: dict) -> list[dict]:
    """What differs, live against desired. A pulumi-kubernetes resource compares its old inputs, the live state and
    the new inputs three ways, which no two-way comparison repeats: for it, the fields its own diff names (a secret,
    such as a Helm release's values with the OAuth pair, reads "[secret]" on both sides)."""
    live, desired = (step.get("oldState") or {}).get("outputs") or {}, (step.get("newState") or {}).get("inputs") or {}
    if is_dynamic_type(step["type"]):
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


# How the event stream carries a secret: Pulumi's signature key with the secret signature, and no plain value.
_SIG, _SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def _masked(value: Any) -> Any:
    """The value with each secret envelope read as "[secret]", as Pulumi prints one."""
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET_SIG:
            return "[secret]"
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def steps_of(events: list[dict]) -> list[dict]:
    """The preview's steps, in order, from the engine's events: a step's pre event, completed by its outputs
    event where there is one (a refresh step's outputs are what was read)."""
    steps: dict[tuple, dict] = {}
    for event in events:
        for kind in ("resourcePreEvent", "resOutputsEvent"):
            meta = (event.get(kind) or {}).get("metadata")
            if not meta:
                continue
            step = steps.setdefault((meta["urn"], meta["op"]), {})
            for key, value in (
                ("op", meta["op"]),
                ("urn", meta["urn"]),
                ("type", meta.get("type", "")),
                ("oldState", _masked(meta.get("old"))),
                ("newState", _masked(meta.get("new"))),
                ("diffReasons", meta.get("diffs")),
                ("detailedDiff", meta.get("detailedDiff")),
            ):
                if value or key not in step:
                    step[key] = value
    return list(steps.values())


def diagnostics_of(events: list[dict], severity: str = "error") -> list[dict]:
    """The diagnostics of a severity (errors by default), each with the URN of the resource it is about (None for
    the program's own)."""
    return [
        {"urn": d.get("urn") or None, "message": _COLOURS.sub("", d.get("message", "")).strip()}
        for d in (e.get("diagnosticEvent") for e in events)
        if d and d.get("severity") == severity
    ]


def marked_warnings(events: list[dict], mark: str) -> list[str]:
    """The program's warnings marked so (marked by the program, not worded by the engine), without the mark."""
    return sorted(
        {
            line.split(mark, 1)[1].strip()
            for d in diagnostics_of(events, "warning")
            for line in d["message"].splitlines()
            if mark in line
        }
    )


def expiring_keys(events: list[dict]) -> list[str]:
    """Omni keys expired or due for renewal: drift, since the estate stops working when they run out."""
    return marked_warnings(events, KEY_EXPIRY_MARK)


def stale_backups(events: list[dict]) -> list[str]:
    """Clusters whose newest etcd backup is older than twice their interval: drift, since a restore would lose
    more than the spec allows."""
    return marked_warnings(events, BACKUP_STALE_MARK)


# A problem the StoragePreflight found is drift (the estate no longer satisfies the spec); any other failure of that
# resource, or of another, cannot be judged.
_PREFLIGHT_PROBLEM = re.compile(re.escape(PREFLIGHT_MARK) + r"(.+)")


def _is_preflight(urn: str | None) -> bool:
    return urn is not None and PREFLIGHT_TYPE in urn.split("::")[2].split("$")


def analyse(events: list[dict], returncode: int, stderr: str = "") -> dict:
    """The report, from the engine's event stream of the refreshed preview (and its exit code and stderr)."""
    steps = steps_of(events)
    resources = []
    for step in steps:
        op = step.get("op")
        if op not in CHANGE_OPS or not _is_estate_change(step):
            continue
        fields = _changed_fields(step) if op == "update" else []
        resources.append(
            {
                "name": _name(step["urn"]),
                "type": _component_type(step["urn"]),
                "urn": step["urn"],
                "change": CHANGE_OPS[op],
                "fields": fields,
            }
        )
    errors, preflight = [], []
    plan, after_plan = _split_at_summary(events)
    diagnostics = diagnostics_of(plan)
    # After the summary the plan is whole: what the engine says then is about stopping plugins (it gives each 5 s
    # to answer Cancel, and reports one that did not, on a busy host, as having "exited prematurely"). With exit
    # 0 that cannot unmake the verdict; it is kept as a note. A failed run's late errors still count.
    notes = [d["message"] for d in diagnostics_of(after_plan)]
    if returncode != 0:
        diagnostics, notes = diagnostics + diagnostics_of(after_plan), []
    # An error about no resource is the engine's closing "preview failed" when resources failed: theirs explain it.
    about_resources = [d for d in diagnostics if d["urn"]]
    for diagnostic in about_resources or diagnostics:
        found = _PREFLIGHT_PROBLEM.findall(diagnostic["message"]) if _is_preflight(diagnostic["urn"]) else []
        if found:
            preflight += [f.strip() for f in found]
        else:
            errors.append(_ENGINE_NOISE.sub("", diagnostic["message"]))
    if returncode != 0 and not diagnostics:
        errors = [line for line in stderr.splitlines() if "error" in line.lower()] or [stderr.strip()]
    preflight, errors = sorted(set(preflight)), sorted({e for e in errors if e})
    placement = placement_of(steps)
    required = required_spread_broken(placement)
    keys, backups = expiring_keys(events), stale_backups(events)
    if errors:
        code = UNJUDGED
    elif resources or preflight or required or keys or backups:
        code = DRIFT
    elif returncode != 0:
        code, errors = UNJUDGED, [stderr.strip() or f"pulumi preview exited with {returncode}"]
    else:
        code = NO_DRIFT
    return {
        "exit_code": code,
        "drift": code == DRIFT,
        "resources": resources,
        "preflight": preflight,
        "keys": keys,
        "backups": backups,
        "errors": errors,
        "notes": notes,
        "placement": placement,
    }


def _split_at_summary(events: list[dict]) -> tuple[list[dict], list[dict]]:
    """The events up to and including the engine's summary, and those after it (all of them are the plan's when
    there is no summary: the run stopped before it)."""
    for index, event in enumerate(events):
        if "summaryEvent" in event:
            return events[: index + 1], events[index + 1 :]
    return events, []


def placement_of(steps: list[dict]) -> dict:
    """The control-plane placement the refresh just read (components/proxmox/placement.py), per cluster, judged by the
    spread the spec asks for now: the refresh step carries the state's (perhaps older) spec, the step after it
    the program's."""
    found: dict = {}
    wanted: dict = {}
    for step in steps:
        if step["urn"].endswith("::" + PLACEMENT) and is_dynamic_type(step["type"]):
            old, new = step.get("oldState") or {}, step.get("newState") or {}
            found = (new.get("outputs") or {}).get("placement") or (old.get("outputs") or {}).get("placement") or found
            wanted = ((new.get("inputs") or {}).get("spec") or {}).get("clusters") or wanted
    return {
        name: {
            **cluster,
            "spread": ((wanted.get(name) or {}).get("control_plane") or {}).get("spread", cluster["spread"]),
        }
        for name, cluster in found.items()
    }


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n")
    return text if len(text) <= 70 else text[:67] + "..."


def _field_lines(f: dict) -> list[str]:
    live, desired = f["live"], f["desired"]
    if isinstance(live, str) and isinstance(desired, str) and "\n" in live + desired:
        # A document (a cluster template): the lines that differ, not two walls of text.
        changed = [
            line
            for line in difflib.unified_diff(live.splitlines(), desired.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        shown = [f"      {'live   ' if line[0] == '-' else 'desired'} | {line[1:]}" for line in changed[:8]]
        more = [f"      ... {len(changed) - 8} more changed lines"] if len(changed) > 8 else []
        return [f"    {f['field']}:"] + shown + more
    return [f"    {f['field']}: live {_short(live)}, desired {_short(desired)}"]


def summary(report: dict) -> str:
    notes = [f"note (after the plan was complete): {n.splitlines()[0]}" for n in report.get("notes") or []]
    if report["exit_code"] == UNJUDGED:
        return "drift: could not judge:\n" + "\n".join(f"  {e}" for e in report["errors"])
    if report["exit_code"] == NO_DRIFT:
        return "\n".join(["drift: none; the live estate matches the spec", *notes])
    lines = ["drift: the live estate differs from the spec:"]
    for r in report["resources"]:
        lines.append(f"  {r['name']} ({r['type']}): {r['change']}")
        for f in r["fields"]:
            lines += _field_lines(f)
    lines += [f"  preflight: {p}" for p in report["preflight"]]
    lines += [f"  key: {k}" for k in report.get("keys") or []]
    lines += [f"  backup: {b}" for b in report.get("backups") or []]
    lines += [f"  placement: {p}" for p in required_spread_broken(report.get("placement") or {})]
    return "\n".join(lines + notes)


def placement_summary(report: dict) -> str:
    """What losing each Proxmox node would leave, per cluster (empty when nothing was read)."""
    lines = report_lines(report.get("placement") or {})
    return (
        "placement (what losing each Proxmox node would leave):\n" + "\n".join(f"  {line}" for line in lines)
        if lines
        else ""
    )


def detect(argv: list[str], cwd: Path, env: dict | None = None, record: Path | None = None) -> dict:
    """Runs the refreshed preview (argv: the pulumi command with its stack flags) and analyses its event stream;
    `record` keeps the stream (gzipped), as tests/fixtures/drift-events holds them."""
    proc = subprocess.run(
        argv, cwd=cwd, env={**(os.environ if env is None else env), **STREAMING}, capture_output=True, text=True
    )
    if record is not None:
        record.write_bytes(
            gzip.compress(
                json.dumps({"returncode": proc.returncode, "stderr": proc.stderr, "stdout": proc.stdout}).encode(),
                mtime=0,
            )
        )
    events = read_events(proc.stdout)
    return analyse(events, proc.returncode, proc.stderr + ("" if events else proc.stdout))


def read_events(text: str) -> list[dict]:
    """The engine's event stream: one JSON object per line (a line cut short by a crash ends it)."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(event, dict):
            events.append(event)
    return events


def report_and_exit_code(report: dict, report_path: str | None, stack: str) -> int:
    print(summary(report))
    if placement_summary(report):
        print(placement_summary(report))
    if report_path:
        Path(report_path).write_text(json.dumps({"stack": stack, **report}, indent=2, default=str) + "\n")
    return report["exit_code"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=None)
    parser.add_argument("--report", default="drift-report.json", help="where to write the JSON report")
    args = parser.parse_args(argv)
    stack = ["--stack", args.stack] if args.stack else []
    report = detect(["pulumi", *PREVIEW_ARGS, *stack, "--non-interactive"], PROJECT_ROOT, dict(os.environ))
    return report_and_exit_code(report, args.report, args.stack or "(selected)")


if __name__ == "__main__":
    sys.exit(main())
