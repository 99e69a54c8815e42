"""`make bench`: wall time, omnictl invocations and Proxmox requests of `up` (from empty), a no-change
`preview` and `refresh`, on the lab, for the seed estate and generated estates of 10 and 50 clusters, each against
its baseline plus the engine's own floor (a stack of as many no-op dynamic resources):

- `up` against the operator's by-hand sequence (lab/by_hand.py), which writes the same estate with omnictl, pveum-
  and pct-equivalent API calls, ssh and helm, paying the same waits; each run of either on a fresh lab of its own;
- `preview` and `refresh` against a read baseline: a plain script reading each Omni resource once and each node's
  storage, network and DNS once.

    python -m lab.bench [--sizes 1,10,50] [--out bench-results.md] [--plot docs/bench.png]
    python -m lab.bench --from-json bench-results.json --plot docs/bench.png   # redraw, measure nothing

Not a test: timings vary with the machine; tests/engine/test_call_counts.py asserts the call counts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import yaml

from components.core.dynamic import is_dynamic_type
from components.core.spec_file import parse_spec

from . import ctl, omni_lab
from .by_hand import by_hand, pvesh_client, read_node_facts

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def generated_spec(clusters: int) -> dict:
    """The seed estate with N clusters, each with its own two classes (one control plane, no workers, so
    50 of them fit the lab's Matrix)."""
    seed = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())
    if clusters == 1:
        return seed
    spec = copy.deepcopy(seed)
    spec["machine_classes"], spec["clusters"] = {}, {}
    small = {
        "cores": 1,
        "sockets": 1,
        "memory": 2048,
        "disk_size": 5,
        "network_bridge": "vmbr0",
        "storage_selector": 'name == "vm_ssd"',
    }
    for i in range(clusters):
        for role in ("cp", "worker"):
            spec["machine_classes"][f"c{i}-{role}"] = {
                "provider_id": seed["infra_provider"]["id"],
                "provider_data": dict(small),
            }
        cluster = copy.deepcopy(seed["clusters"]["talos-prod-01"])
        cluster["control_plane"].update(machine_class=f"c{i}-cp", size=1)
        cluster["workers"] = [{"name": "workers", "machine_class": f"c{i}-worker", "size": 0}]
        spec["clusters"][f"cluster-{i:02d}"] = cluster
    spec["tailscale_operator"]["cluster"] = "cluster-00"
    return spec


class Run:
    def __init__(self, root: Path, spec: dict):
        self.lab_dir = root / "lab"
        os.environ["OMNI_SCALE_LAB_DIR"] = str(self.lab_dir)  # the baseline's omnictl calls find this lab
        self.project, self.info, self.stack = ctl.isolated_lab_stack(root)
        (self.project / "specs" / "omni.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        self.root = root

    def measure(self, *args: str) -> dict:
        counted = self.stack.run_counted(self.root / f"argv-{time.monotonic_ns()}.log", *args)
        return counts(counted["seconds"], counted["omnictl"], counted["proxmox"])

    def measure_up(self) -> dict:
        """`up` from empty, with where its time went: its engine events (`--json` streams them), per kind of
        resource."""
        counted = self.stack.run_counted(self.root / "argv-up.log", "up", "--yes", "--skip-preview", "--json")
        return {
            **counts(counted["seconds"], counted["omnictl"], counted["proxmox"]),
            "profile": up_profile(counted["stdout"].splitlines()),
        }

    def baseline(self, spec: dict) -> float:
        """The minimum the same job needs by hand: each Omni resource read once, each node's facts once."""
        omni = omni_lab.lab_omnictl(self.info["omni"])
        pve = self.info["proxmox"]
        start = time.monotonic()
        for class_id in spec["machine_classes"]:
            omni.get("MachineClasses.omni.sidero.dev", class_id, "default")
        for name in spec["clusters"]:
            omni.export_template(name)
        read_node_facts(pvesh_client(pve))
        return time.monotonic() - start

    def stop(self) -> None:
        ctl.stop(self.lab_dir)


def counts(seconds: float, argvs: list[list[str]], proxmox: list) -> dict:
    return {
        "seconds": seconds,
        "omnictl": len(argvs),
        "omni_calls": len(ctl.omni_calls(argvs)),
        "proxmox": len(proxmox),
    }


def write_baseline(spec: dict, root: Path) -> dict:
    """The by-hand sequence (lab/by_hand.py) on a fresh lab of its own, counted as `up` is: the lab's omnictl logs
    every argv, fakepve every request."""
    root.mkdir(parents=True, exist_ok=True)
    lab_dir = root / "lab"
    argv_log = root / "by-hand-argv.log"
    # The by-hand omnictl runs find this lab and log their argvs through the environment, as `up`'s do.
    with mock.patch.dict(os.environ, OMNI_SCALE_LAB_DIR=str(lab_dir), OMNI_SCALE_LAB_ARGV_LOG=str(argv_log)):
        try:
            info = ctl.start(lab_dir)
            before = len(ctl.proxmox_requests(lab_dir))
            done = by_hand(info, parse_spec(spec, file="generated"))
            counted = counts(done["seconds"], ctl.logged_argvs(argv_log), ctl.proxmox_requests(lab_dir)[before:])
            return {**counted, "steps": done["steps"]}
        finally:
            ctl.stop(lab_dir)


def up_profile(event_lines: list[str]) -> dict[str, dict]:
    """Per kind of resource (its type's last part): how many, the longest one's seconds from its first event to its
    outputs, and their sum (the engine runs independent ones side by side, so the sum can exceed the wall time)."""
    started: dict[str, float] = {}
    profile: dict[str, dict] = {}
    for line in event_lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # not an event (a line the engine printed besides)
        for key in ("resourcePreEvent", "resOutputsEvent"):
            metadata = (event.get(key) or {}).get("metadata")
            if not metadata or metadata.get("op") == "same" and key == "resourcePreEvent":
                continue
            # The stack and the program's components span their children: only what does the work is counted.
            if metadata["type"] == "pulumi:pulumi:Stack" or metadata["type"].startswith("omni-scale:"):
                continue
            urn = metadata["urn"]
            if key == "resourcePreEvent":
                started.setdefault(urn, float(event["timestamp"]))
            elif urn in started:
                kind = metadata["type"].rsplit(":", 1)[-1]
                seconds = float(event["timestamp"]) - started.pop(urn)
                entry = profile.setdefault(kind, {"count": 0, "longest": 0.0, "total": 0.0})
                entry["count"] += 1
                entry["longest"] = max(entry["longest"], seconds)
                entry["total"] += seconds
    return dict(sorted(profile.items(), key=lambda item: -item[1]["longest"]))


def engine_floor(resources: int, root: Path, repeat: int = 1) -> dict:
    """A stack of as many no-op dynamic resources: what the engine and the Python host cost by themselves."""
    project = root / "floor"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: floor\nruntime:\n  name: python\n")
    (project / "__main__.py").write_text(
        "from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider\n"
        "class NoopProvider(ResourceProvider):\n"
        "    def create(self, props):\n        return CreateResult('x', props)\n"
        "    def diff(self, _id, olds, news):\n        return DiffResult(changes=False)\n"
        "class Noop(Resource):\n"
        "    def __init__(self, name, props):\n        super().__init__(NoopProvider(), name, props)\n"
        f"for i in range({resources}):\n    Noop(f'r{{i}}', {{'i': i}})\n"
    )
    stack = ctl.LabStack(project_dir=project, state_dir=root / "floor-state", stack="floor")
    stack.ensure_stack()

    def up() -> dict:
        stack.run("destroy", "--yes", "--skip-preview")  # each `up` from empty, as the program's is
        start = time.monotonic()
        stack.run("up", "--yes", "--skip-preview")
        return {"seconds": time.monotonic() - start}

    up_seconds = median_of(repeat, up)["seconds"]

    def preview() -> dict:
        start = time.monotonic()
        stack.run("preview", "--expect-no-changes")
        return {"seconds": time.monotonic() - start}

    return {"up": up_seconds, "preview": median_of(repeat, preview)["seconds"]}


def median_of(times: int, measure) -> dict:
    """Run a repeatable measurement `times` times; its seconds are the median, so one slow run (a cold page
    cache, the first run after `up`) does not decide a ratio. Call counts are the first run's."""
    samples = [measure() for _ in range(times)]
    return {
        **samples[0],
        "seconds": statistics.median(s["seconds"] for s in samples),
        "samples": [s["seconds"] for s in samples],
    }


def middle_run(samples: list[dict]) -> dict:
    """Of runs that each need a fresh lab (`up` from empty, the by-hand sequence), the one in the middle by wall
    time, with every run's seconds: its counts, steps and profile belong to the seconds shown (the median, for an
    odd number of runs)."""
    middle = sorted(samples, key=lambda s: s["seconds"])[len(samples) // 2]
    return {**middle, "samples": [s["seconds"] for s in samples]}


def reads_of_the_estate(run: Run, spec: dict, repeat: int) -> dict:
    """On an estate `up` made: the no-change preview, refresh and the read baseline, and how many dynamic resources
    the floor needs."""
    baseline = median_of(repeat, lambda: {"seconds": run.baseline(spec)})
    state = json.loads(run.stack.run("stack", "export").stdout)["deployment"]["resources"]
    return {
        "resources": len([r for r in state if is_dynamic_type(r["type"])]),
        "preview": median_of(repeat, lambda: run.measure("preview", "--expect-no-changes")),
        "refresh": median_of(repeat, lambda: run.measure("refresh", "--yes", "--skip-preview")),
        "baseline": baseline["seconds"],
        "baseline_samples": baseline["samples"],
    }


def bench(size: int, repeat: int = 3) -> dict:
    """Each measurement `repeat` times: `up` from empty and the by-hand sequence each on a fresh lab every time;
    preview, refresh and the read baseline on the first `up`'s estate; the floor's preview on its own stack."""
    spec = generated_spec(size)
    ups: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=f"omni-scale-bench-{size}-") as tmp:
        for attempt in range(repeat):
            run = Run(Path(tmp) / f"program-{attempt}", spec)
            try:
                ups.append(run.measure_up())
                if attempt == 0:
                    on_the_estate = reads_of_the_estate(run, spec, repeat)
            finally:
                run.stop()
        floor = engine_floor(on_the_estate["resources"], Path(tmp), repeat)
        hands = [write_baseline(spec, Path(tmp) / f"by-hand-{attempt}") for attempt in range(repeat)]
    return {
        "measured": f"{time.strftime('%Y-%m-%d')} on {machine()}, median of {repeat} runs",
        "clusters": len(spec["clusters"]),
        "classes": len(spec["machine_classes"]),
        **on_the_estate,
        "up": middle_run(ups),
        "by_hand": middle_run(hands),
        "floor": floor,
    }


def wall(measurement: dict) -> str:
    """The median, and the range of the runs behind it when there were several."""
    samples = measurement.get("samples", [])
    spread = f" ({min(samples):.1f}–{max(samples):.1f})" if len(samples) > 1 else ""
    return f"{measurement['seconds']:.1f}{spread}"


def machine() -> str:
    return (
        f"{platform.machine()}, {platform.node()} "
        f"({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores)"
    )


def table(results: list[dict]) -> str:
    lines = [
        f"Measured {results[0]['measured']}, lab stack. Baseline: for `up`, the by-hand sequence (the `by hand` row, "
        "lab/by_hand.py); for `preview` and `refresh`, the read baseline. Engine floor: `up` of as many no-op "
        "dynamic resources for `up`, their no-change `preview` otherwise.",
        "",
        "| clusters (classes) | op | wall s | omnictl runs (Omni calls) | Proxmox requests | baseline s "
        "| engine floor s | ours / (baseline + floor) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hand = r["by_hand"]
        for op in ("up", "by hand", "preview", "refresh"):
            m = hand if op == "by hand" else r[op]
            calls = f"| {r['clusters']} ({r['classes']}) | {op} | {wall(m)} | {m['omnictl']} ({m['omni_calls']}) "
            if op == "by hand":
                lines.append(calls + f"| {m['proxmox']} | | | |")
                continue
            baseline = hand["seconds"] if op == "up" else r["baseline"]
            floor = r["floor"]["up" if op == "up" else "preview"]
            ratio = m["seconds"] / (baseline + floor)
            lines.append(calls + f"| {m['proxmox']} | {baseline:.1f} | {floor:.1f} | {ratio:.2f} |")
    slopes = seconds_per_added_cluster(results)
    if slopes:
        sizes = sorted(r["clusters"] for r in results)
        spans = ", ".join(f"{a}→{b}" for a, b in zip(sizes, sizes[1:], strict=False))
        lines += [
            "",
            f"Seconds per added cluster ({spans}): "
            + "; ".join(f"{op} " + " / ".join(f"{x:.2f}" for x in per_op) for op, per_op in slopes.items())
            + " (equal figures: linear growth).",
        ]
    lines += ["", "Where the time goes:", ""]
    for r in sorted(results, key=lambda r: r["clusters"]):
        lines.append(f"- {r['clusters']} cluster(s), by hand: " + profile_line(r["by_hand"]["steps"]))
        kinds = list(r["up"].get("profile", {}).items())[:6]
        lines.append(
            f"- {r['clusters']} cluster(s), `up`, the longest of each kind of resource (from its first engine event to "
            "its outputs; the sum of them all in brackets): "
            + "; ".join(f"{kind} ×{p['count']} {p['longest']:.0f} s ({p['total']:.0f} s)" for kind, p in kinds)
        )
    return "\n".join(lines) + "\n"


def profile_line(steps: dict[str, float]) -> str:
    return "; ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(steps.items(), key=lambda s: -s[1]))


def seconds_per_added_cluster(results: list[dict]) -> dict[str, list[float]]:
    """Per op, the wall time each added cluster cost between consecutive sizes: if growth is linear, the
    figures are equal; if a later one is larger, something grows faster than the estate."""
    ordered = sorted(results, key=lambda r: r["clusters"])
    return (
        {
            op: [
                (b[op]["seconds"] - a[op]["seconds"]) / (b["clusters"] - a["clusters"])
                for a, b in zip(ordered, ordered[1:], strict=False)
            ]
            for op in ("up", "preview", "refresh")
        }
        if len(ordered) > 1
        else {}
    )


def plot(results: list[dict], path: Path) -> None:
    """Wall time against estate size, with the baseline + floor line the preview target is judged by.
    matplotlib is in requirements-bench.txt, not the product's requirements: only `make bench` draws."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a CI runner or over SSH
    import matplotlib.pyplot as plt

    ordered = sorted(results, key=lambda r: r["clusters"])
    clusters = [r["clusters"] for r in ordered]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    for op, style in (("up", "o-"), ("refresh", "s-"), ("preview", "^-")):
        axes.plot(clusters, [r[op]["seconds"] for r in ordered], style, label=f"pulumi {op}")
    axes.plot(
        clusters,
        [r["by_hand"]["seconds"] + r["floor"]["up"] for r in ordered],
        "k-.",
        label="by hand + engine floor (up's baseline)",
    )
    axes.plot(
        clusters,
        [r["baseline"] + r["floor"]["preview"] for r in ordered],
        "k--",
        label="read baseline + engine floor (preview's)",
    )
    axes.set_xlabel("clusters (each with 2 machine classes)")
    axes.set_ylabel("wall time, s")
    axes.set_title(f"omni-scale on the lab (real Omni), {ordered[0]['measured'].split(' on ')[0]}")
    axes.set_xticks(clusters)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--out", default="bench-results.md")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each repeatable measurement (median)")
    parser.add_argument("--json", default="bench-results.json", help="the raw measurements, for --from-json")
    parser.add_argument("--plot", type=Path, help="draw wall time against clusters into this image (needs matplotlib)")
    parser.add_argument("--from-json", type=Path, help="measure nothing; tabulate and draw these measurements")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"bench: {size} cluster(s)...", file=sys.stderr, flush=True)
            results.append(bench(size, args.repeat))
        Path(args.json).write_text(json.dumps(results, indent=1))
    text = table(results)
    print(text)
    Path(args.out).write_text(text)
    if args.plot:
        plot(results, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
