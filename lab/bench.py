"""`make bench`: wall time, omnictl invocations and Proxmox requests of `up` (from empty), a no-change
`preview` and `refresh`, on the lab, for the seed estate and generated estates of 10 and 50 clusters;
against a baseline (a plain script reading each Omni resource once and each node's storage, network and
DNS once) and the engine's own floor (a stack of as many no-op dynamic resources).

    python -m lab.bench [--sizes 1,10,50] [--out bench-results.md]

Not a test: timings vary with the machine; tests/engine/test_call_counts.py asserts the call counts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from components.proxmox import ProxmoxClient, ProxmoxSettings

from . import ctl, omni_lab

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def generated_spec(clusters: int) -> dict:
    """The seed estate with N clusters, each with its own two classes (one control plane, no workers, so
    50 of them fit the lab's Matrix)."""
    seed = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())
    if clusters == 1:
        return seed
    spec = copy.deepcopy(seed)
    spec["machine_classes"], spec["clusters"] = {}, {}
    small = {"cores": 1, "sockets": 1, "memory": 2048, "disk_size": 5, "network_bridge": "vmbr0",
             "storage_selector": 'name == "vm_ssd"'}
    for i in range(clusters):
        for role in ("cp", "worker"):
            spec["machine_classes"][f"c{i}-{role}"] = {"provider_id": "proxmox", "provider_data": dict(small)}
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
        log = self.root / f"argv-{time.monotonic_ns()}.log"
        before = len(ctl.proxmox_requests(self.lab_dir))
        start = time.monotonic()
        self.stack.run(*args, extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(log)})
        seconds = time.monotonic() - start
        argvs = [json.loads(line)[1:] for line in log.read_text().splitlines()] if log.exists() else []
        requests = ctl.proxmox_requests(self.lab_dir)[before:]
        return {"seconds": seconds, "omnictl": len(argvs),
                "omni_calls": len([a for a in argvs if a and a[0] != "--version" and a[2:3] not in (["validate"], ["render"])]),
                "proxmox": len(requests)}

    def baseline(self, spec: dict) -> float:
        """The minimum the same job needs by hand: each Omni resource read once, each node's facts once."""
        omni = omni_lab.lab_omnictl(self.info["omni"])
        pve = self.info["proxmox"]
        start = time.monotonic()
        for class_id in spec["machine_classes"]:
            omni.get("MachineClasses.omni.sidero.dev", class_id, "default")
        for name in spec["clusters"]:
            omni.export_template(name)
        api = ProxmoxClient(ProxmoxSettings(pve["api_url"], pve["token_id"], pve["token_secret"], verify_tls=pve["cafile"]))
        for node in api.get("nodes"):
            for path in ("storage", "network", "dns"):
                api.get(f"nodes/{node['node']}/{path}")
        return time.monotonic() - start

    def stop(self) -> None:
        ctl.stop(self.lab_dir)

def engine_floor(resources: int, root: Path) -> dict:
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
        f"for i in range({resources}):\n    Noop(f'r{{i}}', {{'i': i}})\n")
    stack = ctl.LabStack(project_dir=project, state_dir=root / "floor-state", stack="floor")
    stack.ensure_stack()
    start = time.monotonic()
    stack.run("up", "--yes", "--skip-preview")
    up = time.monotonic() - start
    start = time.monotonic()
    stack.run("preview", "--expect-no-changes")
    return {"up": up, "preview": time.monotonic() - start}

def bench(size: int) -> dict:
    spec = generated_spec(size)
    with tempfile.TemporaryDirectory(prefix=f"omni-scale-bench-{size}-") as tmp:
        run = Run(Path(tmp), spec)
        try:
            up = run.measure("up", "--yes", "--skip-preview")
            preview = run.measure("preview", "--expect-no-changes")
            refresh = run.measure("refresh", "--yes", "--skip-preview")
            baseline = run.baseline(spec)
            state = json.loads(run.stack.run("stack", "export").stdout)["deployment"]["resources"]
            dynamic = len([r for r in state if r["type"] == "pulumi-python:dynamic:Resource"])
            floor = engine_floor(dynamic, Path(tmp))
        finally:
            run.stop()
    return {"clusters": len(spec["clusters"]), "classes": len(spec["machine_classes"]), "resources": dynamic,
            "up": up, "preview": preview, "refresh": refresh, "baseline": baseline, "floor": floor}

def table(results: list[dict]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {platform.node()} "
             f"({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores), lab stack.", "",
             "| clusters (classes) | op | wall s | omnictl runs (Omni calls) | Proxmox requests | baseline s | engine floor s | ours / (baseline + floor) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for op in ("up", "preview", "refresh"):
            m = r[op]
            floor = r["floor"]["up" if op == "up" else "preview"]
            ratio = m["seconds"] / (r["baseline"] + floor)
            lines.append(f"| {r['clusters']} ({r['classes']}) | {op} | {m['seconds']:.1f} | {m['omnictl']} ({m['omni_calls']}) "
                         f"| {m['proxmox']} | {r['baseline']:.1f} | {floor:.1f} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50")
    parser.add_argument("--out", default="bench-results.md")
    args = parser.parse_args(argv)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"bench: {size} cluster(s)...", file=sys.stderr, flush=True)
        results.append(bench(size))
    text = table(results)
    print(text)
    Path(args.out).write_text(text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
