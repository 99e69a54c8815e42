"""StoragePreflight against fakepve shaped like Matrix: one scenario per fault the real estate
has shown; each asserts exactly the problems reported, all at once."""

import copy
import re

from components.core.spec import spec_document
from components.core.spec_file import load_spec
from components.proxmox.storage_preflight import PREFLIGHT_MARK, StoragePreflightProvider
from lab import fakepve_lab
from tests.conftest import PROJECT_ROOT, configure
from tests.fakepve_matrix import running_matrix

SEED = spec_document(load_spec(PROJECT_ROOT / "specs" / "omni.yaml"))
SELECTOR = 'name == "vm_ssd"'
CLASSES = ("matrix-control-plane", "matrix-worker")


def preflight(matrix, spec=SEED, **config):
    provider = configure(StoragePreflightProvider(), preflight_config(matrix, **config))
    return provider.check({}, {"spec": spec})


def readings(matrix, result) -> dict:
    """What the resource records for people to read once created (never an input)."""
    provider = configure(StoragePreflightProvider(), preflight_config(matrix))
    return provider.create(result.inputs).outs["readings"]


def preflight_config(matrix, **config) -> dict:
    return {
        "omni-scale:proxmoxApiUrl": matrix.api_url,
        "omni-scale:proxmoxTokenId": matrix.token_id,
        "omni-scale:proxmoxTokenSecret": matrix.token_secret,
        "omni-scale:proxmoxCaFile": matrix.cafile,
        # The provider's own token, whose pool privileges the preflight reads (the stack names it for the compose).
        "omni-scale:providerProxmoxTokenId": matrix.provider_token_id,
        **{f"omni-scale:{k}": v for k, v in config.items()},
    }


def provider_vm(matrix, vmid: int, node: str, machine_set: str, memory: int, cores: int):
    """A VM as the infra provider leaves it: tagged with its machine request set, running."""

    def add(pve):
        pve.add_vm(
            vmid,
            f"{machine_set}-{vmid}",
            node=node,
            status="running",
            config={"memory": memory, "cores": cores, "sockets": 1, "tags": f"machine-request.{machine_set}"},
        )

    matrix.call(add, matrix.pve)


def problems(result) -> list[str]:
    """The problems the preflight found, without the marker the drift job tells them by (each has it)."""
    assert all(f.reason.startswith(PREFLIGHT_MARK) for f in result.failures if f.property == "preflight")
    return sorted(f.reason.removeprefix(PREFLIGHT_MARK) for f in result.failures)


def on_every_class(node: str, tail: str) -> list[str]:
    return sorted(f"class {c} on node {node}: {tail}" for c in CLASSES)


def test_all_good_judges_and_records_readings_apart(matrix):
    result = preflight(matrix)
    assert problems(result) == []
    assert set(result.inputs) == {"spec", "judgement"}  # no reading is an input
    judgement = result.inputs["judgement"]
    assert judgement["storage_by_class"] == {c: {n: "vm_ssd" for n in ("foxtrot", "golf", "hotel")} for c in CLASSES}
    assert judgement["requested"] == {"machines": 5, "cores": 28, "memory_mb": 57344, "disk_gb": 320}
    assert judgement["warnings"] == []
    seen = readings(matrix, result)
    assert seen["nodes"]["golf"] == {"free_memory_mb": 120 * 1024, "free_cores": 32}  # 128 GiB less the host's 8
    assert seen["storages"] == {"vm_ssd@shared": 4096}
    # Nothing runs yet: all five to build, spread as the provider would place them.
    assert seen["machine_sets"] == {
        "talos-prod-01-control-planes": {
            "class": "matrix-control-plane",
            "wanted": 3,
            "existing": 0,
            "to_build": 3,
            "placement": {"foxtrot": 1, "golf": 1, "hotel": 1},
        },
        "talos-prod-01-workers": {
            "class": "matrix-worker",
            "wanted": 2,
            "existing": 0,
            "to_build": 2,
            "placement": {"foxtrot": 1, "golf": 1},
        },
    }


def _running_seed_estate(matrix, node_memory_gib: int = 40, host_gib: int = 4):
    """Nodes of node_memory_gib, and the seed estate's five VMs already running where the provider put them."""
    for node in ("foxtrot", "golf", "hotel"):
        matrix.call(fakepve_lab.set_node_capacity, matrix.pve, node, 32, node_memory_gib * 1024**3, host_gib * 1024**3)
    for vmid, node in ((300, "foxtrot"), (301, "golf"), (302, "hotel")):
        provider_vm(matrix, vmid, node, "talos-prod-01-control-planes", 8192, 4)
    for vmid, node in ((310, "foxtrot"), (311, "golf")):
        provider_vm(matrix, vmid, node, "talos-prod-01-workers", 16384, 8)


def with_workers(size: int) -> dict:
    spec = copy.deepcopy(SEED)
    spec["clusters"]["talos-prod-01"]["workers"][0]["size"] = size
    return spec


def test_the_running_estate_is_not_counted_twice(matrix):
    # The five VMs hold 56 GiB of the 108 GiB the hosts leave: 52 GiB free, less than the spec's 56 GiB in all.
    # Nothing is left to build, so nothing is missing.
    _running_seed_estate(matrix)
    result = preflight(matrix)
    assert problems(result) == []
    sets = readings(matrix, result)["machine_sets"]
    assert [(s["existing"], s["to_build"]) for s in sets.values()] == [(3, 0), (2, 0)]


def test_growing_beyond_the_free_memory_names_the_set_the_node_and_the_shortage(matrix):
    _running_seed_estate(matrix)  # free: foxtrot 12 GiB, golf 12 GiB, hotel 28 GiB
    # Two more workers: hotel (no worker yet) takes one and keeps 12 GiB; the next goes to the first of three
    # equal nodes, foxtrot, which lacks 4 GiB.
    assert problems(preflight(matrix, with_workers(4))) == [
        "capacity: not enough memory for the VMs still to build: foxtrot would get 1 VM of talos-prod-01-workers "
        "(16384 MB) and has 12288 MB free: 4096 MB missing"
    ]
    assert problems(preflight(matrix, with_workers(3))) == []  # one more fits on hotel


def test_unpinned_sets_are_checked_per_node_as_the_provider_spreads_them(matrix):
    # In all there is room to spare, but the spread puts one control plane on each node, and hotel has 6 GiB.
    matrix.call(fakepve_lab.set_node_capacity, matrix.pve, "hotel", 32, 12 * 1024**3, 6 * 1024**3)
    assert problems(preflight(matrix)) == [
        "capacity: not enough memory for the VMs still to build: hotel would get 1 VM of "
        "talos-prod-01-control-planes (8192 MB) and has 6144 MB free: 2048 MB missing"
    ]


def test_cores_follow_the_same_rule(matrix):
    matrix.call(fakepve_lab.set_node_capacity, matrix.pve, "golf", 6, 128 * 1024**3, 8 * 1024**3)
    provider_vm(matrix, 400, "golf", "someone-else", 2048, 4)  # 4 of golf's 6 cores given to a running VM
    # The spread gives golf one control plane (the workers go where more memory is free).
    assert problems(preflight(matrix)) == [
        "capacity: not enough cores for the VMs still to build: golf would get 1 VM of talos-prod-01-control-planes "
        "(4 cores) and has 2 cores free: 2 cores missing"
    ]


def test_control_planes_still_to_build_next_to_two_that_run_on_one_node_are_a_warning(matrix):
    for vmid in (300, 301):
        provider_vm(matrix, vmid, "foxtrot", "talos-prod-01-control-planes", 8192, 4)
    result = preflight(matrix)
    assert problems(result) == []
    assert result.inputs["judgement"]["warnings"] == [
        "cluster talos-prod-01: 2 of its 3 control planes would run on foxtrot (3 node(s) online); losing foxtrot "
        "would lose etcd quorum"
    ]


def test_control_planes_that_all_run_are_not_the_preflights_to_judge(matrix):
    # Where they did land is reported after `up` (components/proxmox/placement.py): a judgement that changed with the
    # program's own `up` would be drift on every refresh after it.
    for vmid, node in ((300, "foxtrot"), (301, "foxtrot"), (302, "golf")):
        provider_vm(matrix, vmid, node, "talos-prod-01-control-planes", 8192, 4)
    assert preflight(matrix).inputs["judgement"]["warnings"] == []


def test_one_node_offline(matrix):
    matrix.call(fakepve_lab.take_node_offline, matrix.pve, "golf")
    result = preflight(matrix)
    assert problems(result) == ["node golf: offline"]
    [warning] = result.inputs["judgement"]["warnings"]
    assert re.fullmatch(
        r"cluster talos-prod-01: 2 of its 3 control planes would run on (foxtrot|hotel) \(2 node\(s\) "
        r"online\); losing \1 would lose etcd quorum",
        warning,
    ), warning


def test_vm_ssd_missing_on_hotel(matrix):
    matrix.call(fakepve_lab.remove_storage_from_node, matrix.pve, "vm_ssd", "hotel")
    assert problems(preflight(matrix)) == on_every_class(
        "hotel",
        "selector picks storage vm_ssd, which is disabled on this node (storage.cfg `disable`, "
        "or a `nodes` list without it)",
    )


def test_ceph_down(matrix):
    matrix.call(fakepve_lab.ceph_down, matrix.pve)
    tail = "selector picks storage vm_ssd, which is inactive (for Ceph RBD: is the Ceph cluster healthy?)"
    expected = sum((on_every_class(n, tail) for n in ("foxtrot", "golf", "hotel")), [])
    expected.append(
        "capacity: storage vm_ssd needs 320 GB for the VMs still to build (3 VMs of "
        "talos-prod-01-control-planes, 2 VMs of talos-prod-01-workers), has 0 GB free: 320 GB missing"
    )
    assert problems(preflight(matrix)) == sorted(expected)


def test_storage_full(matrix):
    matrix.call(fakepve_lab.fill_storage, matrix.pve, "vm_ssd", 100 * 1024**3)
    assert problems(preflight(matrix)) == [
        "capacity: storage vm_ssd needs 320 GB for the VMs still to build (3 VMs of talos-prod-01-control-planes, "
        "2 VMs of talos-prod-01-workers), has 100 GB free: 220 GB missing"
    ]


def test_bridge_missing_on_one_node(matrix):
    matrix.call(fakepve_lab.remove_bridge, matrix.pve, "hotel", "vmbr0")
    assert problems(preflight(matrix)) == on_every_class("hotel", "bridge vmbr0 does not exist on hotel")


def test_provider_lxc_placement_bridge_root_storage_and_template(matrix):
    matrix.call(fakepve_lab.remove_bridge, matrix.pve, "foxtrot", "vmbr0")
    matrix.call(fakepve_lab.disable_storage, matrix.pve, "local-lvm")
    spec = copy.deepcopy(SEED)
    spec["provider_lxc"]["os_template"] = "vm_ssd:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"
    lxc = "provider LXC 200 on node foxtrot"
    assert problems(preflight(matrix, spec)) == sorted(
        on_every_class("foxtrot", "bridge vmbr0 does not exist on foxtrot")
        + [
            f"{lxc}: bridge vmbr0 does not exist on foxtrot",
            f"{lxc}: root disk storage local-lvm is disabled or inactive on foxtrot",
            f"{lxc}: template storage vm_ssd does not hold `vztmpl` content",
        ]
    )


def test_public_dns_on_golf(matrix):
    matrix.call(fakepve_lab.set_node_dns, matrix.pve, "golf", ["1.1.1.1", "127.0.0.53"])
    [problem] = problems(preflight(matrix))
    assert problem.startswith("node golf: public DNS resolver 1.1.1.1; ")
    assert "split-horizon" in problem and "SideroLink" in problem


def test_expected_resolvers_from_the_spec(matrix):
    spec = copy.deepcopy(SEED)
    spec["proxmox"]["dns_resolvers"] = ["127.0.0.54"]
    assert problems(preflight(matrix, spec)) == sorted(
        f"node {n}: DNS resolvers ['127.0.0.53'], expected ['127.0.0.54'] (proxmox.dns_resolvers)"
        for n in ("foxtrot", "golf", "hotel")
    )


def test_selector_using_type_is_named_with_the_fix(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-worker"]["provider_data"]["storage_selector"] = 'type == "rbd"'
    [problem] = problems(preflight(matrix, spec))
    assert "machine_classes.matrix-worker.provider_data.storage_selector" in problem and "storageType" in problem


def test_selector_matching_nothing(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-worker"]["provider_data"]["storage_selector"] = 'name == "nvme"'
    assert problems(preflight(matrix, spec)) == sorted(
        f"class matrix-worker on node {n}: no storage matches selector 'name == \"nvme\"' "
        '(the provider fails with "no matches for the condition")'
        for n in ("foxtrot", "golf", "hotel")
    )


def test_selector_sees_storage_type_and_available_space(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-worker"]["provider_data"]["storage_selector"] = (
        'storageType == "lvmthin" && availableSpace > 1u'
    )
    judgement = preflight(matrix, spec).inputs["judgement"]
    assert judgement["storage_by_class"]["matrix-worker"] == {n: "local-lvm" for n in ("foxtrot", "golf", "hotel")}


def test_pinned_class_on_a_node_the_cluster_does_not_have(matrix):
    spec = copy.deepcopy(SEED)
    spec["proxmox"]["nodes"].append("india")
    spec["machine_classes"]["matrix-worker"]["provider_data"]["node"] = "india"
    assert problems(preflight(matrix, spec)) == [
        "node india: named in the spec but not in the Proxmox cluster (it has: foxtrot, golf, hotel)"
    ]


def test_pinned_control_planes_warn_and_pinned_capacity_is_per_node(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-control-plane"]["provider_data"]["node"] = "foxtrot"
    matrix.call(fakepve_lab.set_node_capacity, matrix.pve, "foxtrot", 32, 16 * 1024**3, 0)
    result = preflight(matrix, spec)
    assert problems(result) == [
        "capacity: not enough memory for the VMs still to build: foxtrot would get 3 VMs of "
        "talos-prod-01-control-planes (24576 MB) and has 16384 MB free: 8192 MB missing"
    ]
    assert result.inputs["judgement"]["warnings"] == [
        "cluster talos-prod-01: all 3 control planes are pinned to foxtrot; the cluster does not survive "
        "the loss of that node"
    ]


def test_wrong_token_and_unreachable_api_are_one_clear_failure(matrix):
    provider_result = preflight(matrix, proxmoxTokenSecret="not-the-token")
    [failure] = provider_result.failures
    assert failure.property == "proxmox" and "token was refused" in failure.reason
    assert "not-the-token" not in failure.reason


def test_a_flaky_network_is_ridden_out_and_a_dead_one_is_named(matrix):
    # One request in three reset: reads are retried (bounded), so the preflight sees the real estate.
    matrix.call(matrix.pve.flaky_network, drop_rate=0.33, seed=7)
    assert problems(preflight(matrix, retryAttempts="8", retryFirstDelaySeconds="0.01")) == []
    matrix.call(matrix.pve.flaky_network, drop_rate=1.0)
    [failure] = preflight(matrix, retryFirstDelaySeconds="0.01").failures
    assert failure.property == "proxmox" and "Proxmox API unreachable" in failure.reason


def test_an_expired_token_fails_at_once_without_retries(matrix, monkeypatch):
    from components.core import retry

    pauses = []
    monkeypatch.setattr(retry.time, "sleep", pauses.append)
    matrix.call(matrix.pve.apitokens.pop, matrix.token_id)
    [failure] = preflight(matrix).failures
    assert failure.property == "proxmox" and "token was refused" in failure.reason
    assert pauses == []  # permanent: not retried


def test_moving_readings_are_no_change_and_a_new_judgement_is(tmp_path):
    with running_matrix(tmp_path, readings=fakepve_lab.LiveReadings(seed=3)) as matrix:
        provider = StoragePreflightProvider()
        first = preflight(matrix)
        created = readings(matrix, first)
        second = preflight(matrix)
        assert readings(matrix, second) != created  # free memory and space moved between the two
        assert provider.diff("id", {**first.inputs, "readings": created}, second.inputs).changes is False
        # Two control planes on one node: a new warning is a new judgement, which preview shows.
        for vmid in (300, 301):
            provider_vm(matrix, vmid, "foxtrot", "talos-prod-01-control-planes", 8192, 4)
        assert provider.diff("id", first.inputs, preflight(matrix).inputs).changes is True


def test_a_state_written_before_judgement_and_readings_were_apart_shows_no_change(matrix):
    # What the previous code kept (inputs and outputs alike): the readings and the judgement under `live`.
    now = preflight(matrix).inputs
    old = {
        "spec": SEED,
        "live": {
            **now["judgement"],
            "free": {"nodes": {"golf": {"cores": 32, "memory_mb": 106496}}},
            "storages": {"vm_ssd@shared": 4096},
        },
    }
    assert StoragePreflightProvider().diff("storage-preflight", old, now).changes is False


def test_unreachable_api(matrix):
    provider = configure(
        StoragePreflightProvider(),
        {
            "omni-scale:proxmoxApiUrl": "https://127.0.0.1:1/api2/json",
            "omni-scale:proxmoxTokenId": matrix.token_id,
            "omni-scale:proxmoxTokenSecret": matrix.token_secret,
            "omni-scale:proxmoxCaFile": matrix.cafile,
            "omni-scale:proxmoxTimeoutSeconds": "2",
        },
    )
    [failure] = provider.check({}, {"spec": SEED}).failures
    assert failure.property == "proxmox" and "Proxmox API unreachable" in failure.reason


def test_requests_grow_with_nodes_not_classes(matrix, monkeypatch):
    from components.proxmox import client as proxmox

    counted = []
    real_init = proxmox.ProxmoxClient.__init__

    def spy(self, settings):
        real_init(self, settings)
        counted.append(self)

    monkeypatch.setattr(proxmox.ProxmoxClient, "__init__", spy)
    grown = spec_document(load_spec(PROJECT_ROOT / "tests" / "fixtures" / "grown-estate.yaml"))
    preflight(matrix, grown)
    preflight(matrix)
    # GET /cluster/resources, then storage, bridges and DNS of each of the 3 nodes: 10, whatever the classes; with
    # VMs still to build, GET /pools and the provider token's /access/permissions once each: 12.
    assert [c.requests for c in counted] == [12, 12]
    _running_seed_estate(matrix)
    preflight(matrix)
    assert counted[-1].requests == 10  # nothing left to build: the provider fills no pool, none is read


# The provider puts every VM in a pool: the class's `pool`, or, unset, the one named after its machine request set,
# which it creates when it does not find it (Pool.Allocate); it finds pools by listing them (Pool.Audit).
SETS = ("talos-prod-01-control-planes", "talos-prod-01-workers")


def with_worker_pool(pool: str) -> dict:
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-worker"]["provider_data"]["pool"] = pool
    return spec


def test_a_named_pool_that_exists_is_no_problem_and_one_that_does_not_is_one_error(matrix):
    assert problems(preflight(matrix, with_worker_pool("talos"))) == [
        "machine_classes.matrix-worker.provider_data.pool: pool 'talos' does not exist; the provider creates only the "
        "pool named after a machine request set, so create it in Proxmox (pveum pool add talos) or leave `pool` unset"
    ]  # though the provider's token may create pools: it does not create this one
    matrix.call(fakepve_lab.add_pool, matrix.pve, "talos")
    result = preflight(matrix, with_worker_pool("talos"))
    assert problems(result) == [] and result.inputs["judgement"]["warnings"] == []


def test_the_sets_own_pools_missing_are_no_problem_while_the_provider_may_create_them(matrix):
    assert not set(SETS) & set(matrix.pve.pools)  # the seed's pools are unset, and none exists yet
    result = preflight(matrix)
    assert problems(result) == [] and result.inputs["judgement"]["warnings"] == []


def test_a_sets_own_pool_the_provider_may_not_create_is_one_error(matrix):
    matrix.call(fakepve_lab.add_pool, matrix.pve, SETS[0])  # the control planes' pool exists
    matrix.call(fakepve_lab.FAULTS["provider-token-without"], matrix.pve, "Pool.Allocate")
    assert problems(preflight(matrix)) == [
        f"machine_classes.matrix-worker.provider_data.pool: pool {SETS[1]!r} (`pool` unset: its machine request "
        f"set's) does not exist and the provider's token {matrix.provider_token_id} may not create it (needs "
        f"Pool.Allocate on /pool/{SETS[1]})"
    ]


def test_a_token_the_program_makes_is_not_read_it_holds_the_pool_privileges_by_construction(matrix):
    matrix.call(fakepve_lab.add_pool, matrix.pve, SETS[0])
    matrix.call(fakepve_lab.FAULTS["provider-token-without"], matrix.pve, "Pool.Allocate")
    provider = configure(StoragePreflightProvider(), preflight_config(matrix))
    before = len(matrix.pve.requests)
    result = provider.check({}, {"spec": SEED, "managed_token": True})
    assert problems(result) == [] and result.inputs["judgement"]["warnings"] == []
    assert result.inputs["managed_token"] is True
    assert not any("/access/permissions" in path for _m, path, _b in matrix.pve.requests[before:])


def test_permissions_the_preflights_token_may_not_read_are_a_warning_not_an_error(matrix):
    def without_access_audit(pve):
        # PVEAuditor on / less Sys.Audit, which it keeps on the nodes (their DNS needs it): not on /access.
        fakepve_lab.revoke(pve, matrix.token_id, "Sys.Audit")
        pve.grant(matrix.token_id, "/nodes", "Sys.Audit")

    matrix.call(fakepve_lab.FAULTS["provider-token-without"], matrix.pve, "Pool.Allocate")
    matrix.call(without_access_audit, matrix.pve)
    result = preflight(matrix)
    assert problems(result) == []  # the missing Pool.Allocate is not seen: no false error either way
    assert result.inputs["judgement"]["warnings"] == [
        f"pools {SETS[0]!r}, {SETS[1]!r}: the provider's token is not checked: the preflight's token may not read "
        "its permissions (GET /access/permissions: 403 Forbidden: Permission check failed (/access, Sys.Audit); "
        "reading another token's needs Sys.Audit on /access, as PVEAuditor on / gives); the provider needs "
        "Pool.Audit on each pool to find it, and Pool.Allocate to create its machine request set's pool"
    ]


def test_a_malformed_provider_token_id_is_named(matrix):
    [failure] = preflight(matrix, providerProxmoxTokenId="omni-provider").failures
    assert "providerProxmoxTokenId: an API token id, USER@REALM!TOKENID (got 'omni-provider')" in failure.reason
