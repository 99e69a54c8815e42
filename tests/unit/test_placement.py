"""Where the control planes run and what losing each Proxmox node would leave (components/proxmox/placement.py)."""

import yaml

from components.core.spec_file import load_spec, parse_spec
from components.proxmox.client import ClusterFacts, Guest, NodeFacts
from components.proxmox.placement import placement_report, report_lines, required_spread_broken
from tests.conftest import PROJECT_ROOT

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
NAME = "talos-prod-01"
NODES = {n: NodeFacts(name=n, online=True) for n in ("foxtrot", "golf", "hotel")}


def vm(vmid: int, node: str, machine_set: str) -> Guest:
    return Guest(
        vmid=vmid,
        node=node,
        kind="qemu",
        running=True,
        vcpus=2,
        memory_mb=4096,
        tags=frozenset({f"machine-request.{NAME}-{machine_set}"}),
    )


def facts(control_planes: list[str], workers: list[str]) -> ClusterFacts:
    guests = [vm(100 + i, n, "control-planes") for i, n in enumerate(control_planes)]
    guests += [vm(200 + i, n, "workers") for i, n in enumerate(workers)]
    guests.append(
        Guest(
            vmid=300,
            node="foxtrot",
            kind="qemu",
            running=True,
            vcpus=1,
            memory_mb=1,
            tags=frozenset({"machine-request.other-cluster-control-planes"}),
        )
    )
    return ClusterFacts(nodes=NODES, guests=tuple(guests))


def test_spread_control_planes_survive_the_loss_of_any_node():
    report = placement_report(SPEC, facts(["foxtrot", "golf", "hotel"], ["foxtrot", "golf"]))[NAME]
    assert report["control_planes_per_node"] == {"foxtrot": 1, "golf": 1, "hotel": 1}
    assert report["workers_per_node"] == {"foxtrot": 1, "golf": 1}
    assert report["if_lost"]["foxtrot"] == {
        "control_planes_left": 2,
        "control_planes": 3,
        "etcd_quorum": True,
        "workers_left": 1,
        "workers": 2,
    }
    assert report["problems"] == []


def test_two_control_planes_on_one_node_lose_quorum_with_it():
    report = placement_report(SPEC, facts(["foxtrot", "foxtrot", "hotel"], ["golf"]))
    cluster = report[NAME]
    assert cluster["if_lost"]["foxtrot"]["etcd_quorum"] is False
    assert cluster["if_lost"]["hotel"]["etcd_quorum"] is True
    assert cluster["if_lost"]["golf"] == {
        "control_planes_left": 3,
        "control_planes": 3,
        "etcd_quorum": True,
        "workers_left": 0,
        "workers": 1,
    }
    assert cluster["problems"] == [
        f"cluster {NAME}: 2 of its 3 control planes run on foxtrot; losing foxtrot loses "
        "etcd quorum (move them apart by hand: live migration breaks Talos nodes)"
    ]
    lines = report_lines(report)
    assert lines[0] == f"cluster {NAME}: control planes per node: foxtrot 2, hotel 1"
    assert "  losing foxtrot: 1 of 3 control planes left (LOSES etcd quorum), 1 of 1 workers left" in lines
    assert lines[-1].startswith("  warning: ")
    assert required_spread_broken(report) == []  # the spec's default: a warning


def test_a_spec_that_requires_the_spread_makes_it_an_error():
    data = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())
    data["clusters"][NAME]["control_plane"]["spread"] = "require"
    spec = parse_spec(data, "specs/omni.yaml")
    report = placement_report(spec, facts(["golf", "golf", "golf"], []))
    assert required_spread_broken(report) == report[NAME]["problems"] != []
    assert report_lines(report)[-1].startswith("  error: ")
