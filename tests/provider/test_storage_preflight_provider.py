"""StoragePreflight against fakepve shaped like Matrix: one scenario per fault the real estate
has shown; each asserts exactly the problems reported, all at once."""

import copy

import pytest

from components.spec import spec_document, load_spec
from components.storage_preflight import StoragePreflightProvider
from lab import fakepve_lab
from tests.conftest import PROJECT_ROOT
from tests.fakepve_matrix import running_matrix

SEED = spec_document(load_spec(PROJECT_ROOT / "specs" / "omni.yaml"))
SELECTOR = 'name == "vm_ssd"'
CLASSES = ("matrix-control-plane", "matrix-worker")


@pytest.fixture
def matrix(tmp_path):
    with running_matrix(tmp_path) as matrix:
        yield matrix


def preflight(matrix, spec=SEED, **config):
    provider = StoragePreflightProvider()
    provider._raw_config = {"omni-scale:proxmoxApiUrl": matrix.api_url, "omni-scale:proxmoxTokenId": matrix.token_id,
                            "omni-scale:proxmoxTokenSecret": matrix.token_secret,
                            "omni-scale:proxmoxCaFile": matrix.cafile,
                            **{f"omni-scale:{k}": v for k, v in config.items()}}
    return provider.check({}, {"spec": spec})


def problems(result) -> list[str]:
    return sorted(f.reason for f in result.failures)


def on_every_class(node: str, tail: str) -> list[str]:
    return sorted(f"class {c} on node {node}: {tail}" for c in CLASSES)


def test_all_good_reports_the_choice_free_capacity_and_totals(matrix):
    result = preflight(matrix)
    assert problems(result) == []
    live = result.inputs["live"]
    assert live["storage_by_class"] == {c: {n: "vm_ssd" for n in ("foxtrot", "golf", "hotel")} for c in CLASSES}
    assert live["free"]["nodes"]["golf"] == {"cores": 32, "memory_mb": 104 * 1024}
    assert live["free"]["storages"] == {"vm_ssd@shared": 4096}
    assert live["requested"] == {"machines": 5, "cores": 28, "memory_mb": 57344, "disk_gb": 320}
    assert live["warnings"] == []


def test_one_node_offline(matrix):
    matrix.call(fakepve_lab.take_node_offline, matrix.pve, "golf")
    result = preflight(matrix)
    assert problems(result) == ["node golf: offline"]
    assert result.inputs["live"]["warnings"] == [
        "cluster talos-prod-01: 3 control planes on 2 online node(s); some node will hold more than one, "
        "and losing it loses quorum"]


def test_vm_ssd_missing_on_hotel(matrix):
    matrix.call(fakepve_lab.remove_storage_from_node, matrix.pve, "vm_ssd", "hotel")
    assert problems(preflight(matrix)) == on_every_class(
        "hotel", "selector picks storage vm_ssd, which is disabled on this node (storage.cfg `disable`, "
                 "or a `nodes` list without it)")


def test_ceph_down(matrix):
    matrix.call(fakepve_lab.ceph_down, matrix.pve)
    tail = "selector picks storage vm_ssd, which is inactive (for Ceph RBD: is the Ceph cluster healthy?)"
    expected = sum((on_every_class(n, tail) for n in ("foxtrot", "golf", "hotel")), [])
    expected.append("capacity: storage vm_ssd needs 320 GB, has 0 GB free: 320 GB missing")
    assert problems(preflight(matrix)) == sorted(expected)


def test_storage_full(matrix):
    matrix.call(fakepve_lab.fill_storage, matrix.pve, "vm_ssd", 100 * 1024 ** 3)
    assert problems(preflight(matrix)) == ["capacity: storage vm_ssd needs 320 GB, has 100 GB free: 220 GB missing"]


def test_bridge_missing_on_one_node(matrix):
    matrix.call(fakepve_lab.remove_bridge, matrix.pve, "hotel", "vmbr0")
    assert problems(preflight(matrix)) == on_every_class("hotel", "bridge vmbr0 does not exist on hotel")


def test_provider_lxc_placement_bridge_root_storage_and_template(matrix):
    matrix.call(fakepve_lab.remove_bridge, matrix.pve, "foxtrot", "vmbr0")
    matrix.call(fakepve_lab.disable_storage, matrix.pve, "local-lvm")
    spec = copy.deepcopy(SEED)
    spec["provider_lxc"]["os_template"] = "vm_ssd:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"
    lxc = "provider LXC 200 on node foxtrot"
    assert problems(preflight(matrix, spec)) == sorted(on_every_class("foxtrot", "bridge vmbr0 does not exist on foxtrot") + [
        f"{lxc}: bridge vmbr0 does not exist on foxtrot",
        f"{lxc}: root disk storage local-lvm is disabled or inactive on foxtrot",
        f"{lxc}: template storage vm_ssd does not hold `vztmpl` content"])


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
        for n in ("foxtrot", "golf", "hotel"))


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
        "(the provider fails with \"no matches for the condition\")" for n in ("foxtrot", "golf", "hotel"))


def test_selector_sees_storage_type_and_available_space(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-worker"]["provider_data"]["storage_selector"] = \
        'storageType == "lvmthin" && availableSpace > 1u'
    live = preflight(matrix, spec).inputs["live"]
    assert live["storage_by_class"]["matrix-worker"] == {n: "local-lvm" for n in ("foxtrot", "golf", "hotel")}


def test_pinned_class_on_a_node_the_cluster_does_not_have(matrix):
    spec = copy.deepcopy(SEED)
    spec["proxmox"]["nodes"].append("india")
    spec["machine_classes"]["matrix-worker"]["provider_data"]["node"] = "india"
    assert problems(preflight(matrix, spec)) == [
        "node india: named in the spec but not in the Proxmox cluster (it has: foxtrot, golf, hotel)"]


def test_pinned_control_planes_warn_and_pinned_capacity_is_per_node(matrix):
    spec = copy.deepcopy(SEED)
    spec["machine_classes"]["matrix-control-plane"]["provider_data"]["node"] = "foxtrot"
    matrix.call(fakepve_lab.set_node_capacity, matrix.pve, "foxtrot", 32, 16 * 1024 ** 3, 0)
    result = preflight(matrix, spec)
    assert problems(result) == ["capacity: classes pinned to foxtrot ask for 24576 MB of memory, it has "
                                "16384 MB free: 8192 MB missing"]
    assert result.inputs["live"]["warnings"] == [
        "cluster talos-prod-01: all 3 control planes are pinned to foxtrot; the cluster does not survive "
        "the loss of that node"]


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
    from components import retry
    pauses = []
    monkeypatch.setattr(retry.time, "sleep", pauses.append)
    matrix.call(matrix.pve.apitokens.pop, matrix.token_id)
    [failure] = preflight(matrix).failures
    assert failure.property == "proxmox" and "token was refused" in failure.reason
    assert pauses == []  # permanent: not retried


def test_diff_sees_the_live_infrastructure_change(matrix):
    provider = StoragePreflightProvider()
    before = preflight(matrix).inputs
    matrix.call(fakepve_lab.fill_storage, matrix.pve, "vm_ssd", 1024 * 1024 ** 3)
    after = preflight(matrix).inputs
    assert provider.diff("id", before, before).changes is False
    assert provider.diff("id", before, after).changes is True
    assert after["live"]["free"]["storages"] == {"vm_ssd@shared": 1024}


def test_unreachable_api(matrix):
    provider = StoragePreflightProvider()
    provider._raw_config = {"omni-scale:proxmoxApiUrl": "https://127.0.0.1:1/api2/json",
                            "omni-scale:proxmoxTokenId": matrix.token_id,
                            "omni-scale:proxmoxTokenSecret": matrix.token_secret,
                            "omni-scale:proxmoxCaFile": matrix.cafile, "omni-scale:proxmoxTimeoutSeconds": "2"}
    [failure] = provider.check({}, {"spec": SEED}).failures
    assert failure.property == "proxmox" and "Proxmox API unreachable" in failure.reason


def test_requests_grow_with_nodes_not_classes(matrix, monkeypatch):
    from components import proxmox

    counted = []
    real_init = proxmox.ProxmoxClient.__init__

    def spy(self, settings):
        real_init(self, settings)
        counted.append(self)

    monkeypatch.setattr(proxmox.ProxmoxClient, "__init__", spy)
    grown = spec_document(load_spec(PROJECT_ROOT / "tests" / "fixtures" / "grown-estate.yaml"))
    preflight(matrix, grown)
    preflight(matrix)
    # GET /nodes, then storage, bridges and DNS of each of the 3 nodes: 10, whatever the classes.
    assert [c.requests for c in counted] == [10, 10]
