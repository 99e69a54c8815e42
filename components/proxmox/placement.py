"""Where each cluster's VMs really run, and what losing each Proxmox node would leave (the seed's "the cluster
survives a single node failure", as a check).

The infra provider tags every VM it makes with `machine-request.<machine set id>` (see preflight.py), so one
GET /cluster/resources says, per cluster, how many control planes and workers each node holds. etcd keeps
quorum while more than half of its members are left; a node holding that many is one whose loss stops the
cluster's API.

`placement_report` is pure (spec and facts in). `ControlPlanePlacement` reads it after the clusters are up and
on every refresh, so `up` and the drift job report it; `python -m components.proxmox.placement` (`make survive`) runs
the drift job's refreshed preview (which writes nothing) and prints only this part.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Sequence

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, UpdateResult

from components import PROJECT_ROOT
from components.core.console import progress
from components.core.dynamic import StackConfiguredProvider, TypedResource, is_unknown
from components.core.settings import proxmox_from_config
from components.core.spec import Spec, spec_document
from components.core.spec_file import parse_spec
from components.proxmox.client import ClusterFacts, ProxmoxClient
from components.proxmox.preflight import MACHINE_REQUEST_TAG

RESOURCE_NAME = "control-plane-placement"


def quorum_kept(left: int, members: int) -> bool:
    return members == 0 or left > members // 2


def placement_report(spec: Spec, facts: ClusterFacts) -> dict:
    """Per cluster: VMs per node (control planes, workers), and per Proxmox node what its loss would leave."""
    nodes = sorted(facts.nodes)
    report = {}
    for name, cluster in spec.clusters.items():
        sets = cluster.machine_sets(name)
        tags = {MACHINE_REQUEST_TAG.format(set_id): set_id for set_id, _pool, _size in sets}
        control_plane_tag = MACHINE_REQUEST_TAG.format(sets[0][0])
        control_planes: Counter[str] = Counter()
        workers: Counter[str] = Counter()
        for guest in facts.guests:
            if guest.kind != "qemu" or not tags.keys() & guest.tags:
                continue
            (control_planes if control_plane_tag in guest.tags else workers)[guest.node] += 1
        members, worker_total = sum(control_planes.values()), sum(workers.values())
        if_lost = {
            node: {
                "control_planes_left": members - control_planes[node],
                "control_planes": members,
                "etcd_quorum": quorum_kept(members - control_planes[node], members),
                "workers_left": worker_total - workers[node],
                "workers": worker_total,
            }
            for node in sorted(set(nodes) | set(control_planes) | set(workers))
        }
        problems = [
            f"cluster {name}: {control_planes[node]} of its {members} control planes run on {node}; losing "
            f"{node} loses etcd quorum (move them apart by hand: live migration breaks Talos nodes)"
            for node, lost in if_lost.items()
            if members > 1 and not lost["etcd_quorum"]
        ]
        report[name] = {
            "control_planes_per_node": dict(sorted(control_planes.items())),
            "workers_per_node": dict(sorted(workers.items())),
            "if_lost": if_lost,
            "spread": cluster.control_plane.spread,
            "problems": problems,
        }
    return report


def report_lines(report: dict) -> list[str]:
    """The report as an operator reads it: per cluster, where the control planes run, then each node's loss."""
    lines = []
    for name, cluster in report.items():
        per_node = ", ".join(f"{n} {c}" for n, c in cluster["control_planes_per_node"].items()) or "none found"
        lines.append(f"cluster {name}: control planes per node: {per_node}")
        for node, lost in cluster["if_lost"].items():
            quorum = "keeps etcd quorum" if lost["etcd_quorum"] else "LOSES etcd quorum"
            lines.append(
                f"  losing {node}: {lost['control_planes_left']} of {lost['control_planes']} control planes "
                f"left ({quorum}), {lost['workers_left']} of {lost['workers']} workers left"
            )
        lines += [f"  {'error' if cluster['spread'] == 'require' else 'warning'}: {p}" for p in cluster["problems"]]
    return lines


def required_spread_broken(report: dict) -> list[str]:
    return [p for cluster in report.values() if cluster["spread"] == "require" for p in cluster["problems"]]


class ControlPlanePlacementProvider(StackConfiguredProvider):
    """Inputs: the spec and the clusters' templates (so a cluster's change re-reads where its VMs went). The
    placement is an output only, taken after the clusters are ready and on refresh: it moves with the estate."""

    def _observe(self, props: dict, enforce: bool = True) -> dict:
        spec = parse_spec(props["spec"], "specs/omni.yaml")
        report = placement_report(spec, ProxmoxClient(proxmox_from_config(self._config)).cluster_facts(details=False))
        for line in report_lines(report):
            progress(line)
        broken = required_spread_broken(report)
        if broken and enforce:
            raise Exception(
                "control planes not spread as the spec requires (control_plane.spread: require): " + "; ".join(broken)
            )
        return {**props, "placement": report}

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in ("spec", "templates") if is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def create(self, props: dict) -> CreateResult:
        return CreateResult(RESOURCE_NAME, self._observe(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._observe(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        # A refresh reports and records; the drift job judges what it recorded (drift.placement_findings).
        outs = self._observe(props, enforce=False)
        return ReadResult(id_, outs, {k: props[k] for k in ("spec", "templates") if k in props})

    def delete(self, _id: str, _props: dict) -> None:
        pass  # a reading has nothing to tear down


class _PlacementResource(TypedResource, module="proxmox", name="ControlPlanePlacement"):
    placement: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(ControlPlanePlacementProvider(), name, {**props, "placement": None}, opts)


class ControlPlanePlacement(pulumi.ComponentResource):
    """After every cluster is ready: control planes per Proxmox node and what losing each node would leave."""

    def __init__(
        self,
        name: str,
        spec: Spec,
        templates: dict[str, pulumi.Input[str]],
        clusters: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("omni-scale:proxmox:ControlPlanePlacement", name, None, opts)
        self.resource = _PlacementResource(
            name,
            {"spec": spec_document(spec), "templates": templates},
            pulumi.ResourceOptions(parent=self, depends_on=list(clusters)),
        )
        self.placement = self.resource.placement
        self.register_outputs({"placement": self.placement})


def survives(report: dict) -> bool:
    """Every cluster keeps etcd quorum whichever single Proxmox node is lost."""
    return all(lost["etcd_quorum"] for cluster in report.values() for lost in cluster["if_lost"].values())


def survive_exit_code(drift_report: dict) -> int:
    """`make survive`: the placement part of a drift report. 0 every cluster survives the loss of any one node,
    1 some node's loss breaks a cluster's quorum, 2 could not judge."""
    from components.cli.drift import UNJUDGED

    if drift_report["exit_code"] == UNJUDGED or not drift_report.get("placement"):
        print(
            "survive: could not read the placement:\n"
            + "\n".join(
                f"  {e}" for e in drift_report.get("errors") or ["no placement recorded yet: run `pulumi up` first"]
            )
        )
        return 2
    print("\n".join(report_lines(drift_report["placement"])))
    return 0 if survives(drift_report["placement"]) else 1


def main(argv: list[str] | None = None) -> int:
    from components.cli.drift import PREVIEW_ARGS, detect

    parser = argparse.ArgumentParser(description="what losing each Proxmox node would leave, per cluster")
    parser.add_argument("--stack", default=None)
    args = parser.parse_args(argv)
    stack = ["--stack", args.stack] if args.stack else []
    return survive_exit_code(
        detect(["pulumi", *PREVIEW_ARGS, *stack, "--non-interactive"], PROJECT_ROOT, dict(os.environ))
    )


if __name__ == "__main__":
    sys.exit(main())
