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


def test_a_shared_storage_excluded_on_one_node_keeps_its_free_space_from_the_nodes_that_use_it():
    foxtrot = node("foxtrot")
    excluded = tuple(
        {**s, "enabled": 0, "active": 0, "avail": 0} if s["storage"] == "vm_ssd" else s for s in foxtrot.storages
    )
    report = run_preflight(SPEC, matrix(foxtrot={"storages": excluded}))
    assert not [e for e in report.errors if e.startswith("capacity")], report.errors  # no shortage read from foxtrot
    assert report.readings["storages"]["vm_ssd@shared"] == 2048
    assert all("on node foxtrot: selector picks storage vm_ssd, which is disabled" in e for e in report.errors)


def test_a_selector_matching_two_storages_on_a_node_is_a_warning_naming_them():
    hotel = node("hotel")
    twin = (*hotel.storages, storage("vm_ssd_b", "rbd", "images", 1))
    spec = SPEC.model_copy(deep=True)
    data = spec.machine_classes["matrix-worker"].provider_data
    object.__setattr__(data, "storage_selector", 'name.startsWith("vm_ssd")')
    report = run_preflight(spec, matrix(hotel={"storages": twin}))
    assert report.errors == []
    assert report.warnings == [
        "class matrix-worker on node hotel: selector 'name.startsWith(\"vm_ssd\")' matches 2 storages (vm_ssd, "
        "vm_ssd_b); Proxmox lists them in no fixed order, so the provider may pick any of them: make the selector "
        "match one"
    ]


def test_a_node_without_an_iso_storage_is_named():
    golf = node("golf")
    no_iso = tuple({**s, "content": "vztmpl,backup"} if s["storage"] == "local" else s for s in golf.storages)
    report = run_preflight(SPEC, matrix(golf={"storages": no_iso}))
    assert report.errors == [
        "node golf: no enabled storage with `iso` content (the provider puts the Talos image and each VM's "
        "cloud-init ISO there)"
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


def _with_worker_class(**changes):
    spec = SPEC.model_copy(deep=True)
    data = spec.machine_classes["matrix-worker"].provider_data
    for key, value in changes.items():
        object.__setattr__(data, key, value)
    return spec


def _vm(vmid: int, on: str, tag: str = "other") -> Guest:
    return Guest(vmid=vmid, node=on, kind="qemu", running=True, vcpus=1, memory_mb=1024, tags=frozenset({tag}))


def _worker_placement(spec, facts) -> dict:
    report = run_preflight(spec, facts)
    assert report.errors == []
    return report.readings["machine_sets"]["talos-prod-01-workers"]["placement"]


def test_the_placement_strategy_changes_where_the_workers_are_predicted():
    # Free memory: foxtrot 120 GiB, golf 100 GiB, hotel 60 GiB.
    facts = matrix(golf={"mem": 28 * GiB}, hotel={"mem": 68 * GiB})
    assert _worker_placement(_with_worker_class(), facts) == {"foxtrot": 1, "golf": 1}  # spread: most free memory
    assert _worker_placement(_with_worker_class(placement_strategy="binpack"), facts) == {"hotel": 2}
    assert _worker_placement(_with_worker_class(placement_strategy="round-robin"), facts) == {"foxtrot": 1, "golf": 1}
    crowded = dataclasses.replace(facts, guests=(_vm(300, "foxtrot"), _vm(301, "foxtrot"), _vm(302, "golf")))
    assert _worker_placement(_with_worker_class(placement_strategy="fewer-vms"), crowded) == {"hotel": 1, "golf": 1}
    # round-robin ignores memory: hotel, with the least, is still next by name after golf.
    three = _with_worker_class(placement_strategy="round-robin")
    object.__setattr__(three.clusters["talos-prod-01"].workers[0], "size", 3)
    assert _worker_placement(three, facts) == {"foxtrot": 1, "golf": 1, "hotel": 1}


def test_with_ha_the_existing_vms_of_the_set_are_not_counted_by_the_provider():
    from components.core.spec import HaConfig

    spec = _with_worker_class(ha=HaConfig(state="started"))
    object.__setattr__(spec.clusters["talos-prod-01"].workers[0], "size", 3)
    tag = "machine-request.talos-prod-01-workers"
    facts = dataclasses.replace(matrix(), guests=(_vm(300, "foxtrot", tag),))
    # Without ha the one on foxtrot counts, and the two still to build go elsewhere; with ha foxtrot is as good.
    without = _with_worker_class()
    object.__setattr__(without.clusters["talos-prod-01"].workers[0], "size", 3)
    assert _worker_placement(without, facts) == {"golf": 1, "hotel": 1}
    assert _worker_placement(spec, facts) == {"foxtrot": 1, "golf": 1}
