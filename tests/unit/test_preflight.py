"""The preflight's decisions on facts built here, no Proxmox: the seed spec against a healthy Matrix, then one
fault at a time, each the one problem it must be (tests/provider/test_storage_preflight_provider.py runs the same
rules against fakepve through the provider)."""

import dataclasses

from components.core.spec_file import load_spec
from components.proxmox.client import ClusterFacts, Guest, NodeFacts
from components.proxmox.preflight import run_preflight
from tests.conftest import PROJECT_ROOT

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
GiB = 1024**3
NODES = ("foxtrot", "golf", "hotel")


def storage(name: str, type_: str, content: str, shared: int, **extra) -> dict:
    return {
        "storage": name,
        "type": type_,
        "content": content,
        "shared": shared,
        "enabled": 1,
        "active": 1,
        "avail": 2048 * GiB,
        **extra,
    }


def node(name: str, **changes) -> NodeFacts:
    healthy = NodeFacts(
        name=name,
        online=True,
        maxcpu=32,
        maxmem=128 * GiB,
        mem=8 * GiB,
        storages=(
            storage("local", "dir", "vztmpl,iso,backup", 0),
            storage("local-lvm", "lvmthin", "images,rootdir", 0),
            storage("vm_ssd", "rbd", "images,rootdir", 1),
        ),
        bridges=frozenset({"vmbr0"}),
        resolvers=("127.0.0.53",),
    )
    return dataclasses.replace(healthy, **changes)


def matrix(**per_node) -> ClusterFacts:
    """Matrix, healthy unless a node's facts are changed: matrix(hotel={"online": False})."""
    return ClusterFacts(nodes={n: node(n, **per_node.get(n, {})) for n in NODES})


def test_the_seed_estate_on_a_healthy_matrix_has_no_problem_and_picks_vm_ssd_everywhere():
    report = run_preflight(SPEC, matrix())
    assert report.errors == [] and report.warnings == []
    assert report.storage_by_class == {c: {n: "vm_ssd" for n in NODES} for c in SPEC.machine_classes}


def test_an_offline_node_is_named_and_no_class_is_placed_on_it():
    report = run_preflight(SPEC, matrix(hotel={"online": False}))
    assert report.errors == ["node hotel: offline"]
    assert all("hotel" not in nodes for nodes in report.storage_by_class.values())


def test_a_storage_disabled_on_one_node_is_a_problem_of_each_class_there_only():
    hotel = node("hotel")
    disabled = tuple({**s, "enabled": 0} if s["storage"] == "vm_ssd" else s for s in hotel.storages)
    report = run_preflight(SPEC, matrix(hotel={"storages": disabled}))
    assert report.errors == [
        f"class {c} on node hotel: selector picks storage vm_ssd, which is disabled on this node "
        "(storage.cfg `disable`, or a `nodes` list without it)"
        for c in SPEC.machine_classes
    ]


def test_a_missing_bridge_and_a_public_resolver_are_named_on_their_node():
    report = run_preflight(SPEC, matrix(golf={"bridges": frozenset(), "resolvers": ("1.1.1.1",)}))
    assert [e.split(";")[0] for e in report.errors] == [
        "node golf: public DNS resolver 1.1.1.1",
        "class matrix-control-plane on node golf: bridge vmbr0 does not exist on golf",
        "class matrix-worker on node golf: bridge vmbr0 does not exist on golf",
    ]


def test_memory_already_in_use_counts_and_only_what_is_still_to_build_needs_room():
    # 3 control planes of 8 GiB and 2 workers of 16 GiB to build; 20 GiB free on each node holds a control plane
    # and not a worker as well.
    tight = {n: {"maxmem": 28 * GiB} for n in NODES}
    [error] = run_preflight(SPEC, matrix(**tight)).errors
    assert error.startswith("capacity: not enough memory for the VMs still to build: ") and "MB missing" in error
    # The workers exist already (the provider's tags): nothing of them is still to build, and the rest fits.
    built = tuple(
        Guest(
            vmid=200 + i,
            node=n,
            kind="qemu",
            running=True,
            vcpus=8,
            memory_mb=16384,
            tags=frozenset({"machine-request.talos-prod-01-workers"}),
        )
        for i, n in enumerate(("foxtrot", "golf"))
    )
    assert run_preflight(SPEC, dataclasses.replace(matrix(**tight), guests=built)).errors == []
