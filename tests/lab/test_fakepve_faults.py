"""Each Matrix lab fault shows in the PVE API answers a storage preflight reads, at once, on the target only."""

import json
import ssl
import urllib.error
import urllib.request

import pytest

from lab import fakepve_lab as fake
from tests.fakepve_matrix import api_get, running_matrix

GiB, TiB = 1024**3, 1024**4
NODES = ["foxtrot", "golf", "hotel"]


def get(matrix, path):
    return api_get(matrix.api_url, matrix.token_id, matrix.token_secret, matrix.cafile, path)


def get_error(matrix, path):
    with pytest.raises(urllib.error.HTTPError) as raised:
        get(matrix, path)
    return raised.value.code, json.load(raised.value).get("message")  # PVE ends its messages with a newline


def nodes(matrix):
    return {n["node"]: n for n in get(matrix, "/nodes")}


def storages(matrix, node, query=""):
    return {s["storage"]: s for s in get(matrix, f"/nodes/{node}/storage{query}")}


def fields(item, *keys):
    return tuple(item[k] for k in keys)


def test_running_matrix_serves_the_matrix_over_verified_tls(matrix):
    assert matrix.api_url.startswith("https://127.0.0.1:") and matrix.api_url.endswith("/api2/json")
    assert matrix.token_id == "pulumi@pve!omni-scale"
    assert sorted(nodes(matrix)) == NODES
    assert fields(storages(matrix, "golf")["vm_ssd"], "type", "enabled", "active", "shared", "total") == (
        "rbd",
        1,
        1,
        1,
        4 * TiB,
    )
    with pytest.raises(urllib.error.URLError):  # a client that does not trust the cafile refuses the server
        urllib.request.urlopen(matrix.api_url + "/version", context=ssl.create_default_context(), timeout=10)


def test_call_runs_on_the_server_loop_and_raises_there_errors_here(matrix):
    assert matrix.call(lambda: matrix.pve.nodes["golf"]["online"]) is True
    with pytest.raises(KeyError, match="kilo"):
        matrix.call(fake.take_node_offline, matrix.pve, "kilo")


def test_take_node_offline(matrix):
    assert nodes(matrix)["golf"]["status"] == "online"
    matrix.call(fake.take_node_offline, matrix.pve, "golf")
    seen = nodes(matrix)
    assert seen["golf"]["status"] == "offline"
    assert not {"maxcpu", "maxmem", "mem"} & set(seen["golf"])
    assert all(fields(seen[n], "status", "maxcpu") == ("online", 32) for n in ("foxtrot", "hotel"))
    assert get_error(matrix, "/nodes/golf/storage") == (595, "No route to host\n")
    assert "vm_ssd" in storages(matrix, "foxtrot")


def test_remove_storage_from_node(matrix):
    matrix.call(fake.remove_storage_from_node, matrix.pve, "vm_ssd", "golf")
    # As real PVE (storage_info): still listed, but not enabled there and without space ...
    gone = storages(matrix, "golf")["vm_ssd"]
    assert fields(gone, "enabled", "active", "total", "used", "avail") == (0, 0, 0, 0, 0)
    # ... and absent once a content type is asked for.
    assert "vm_ssd" not in storages(matrix, "golf", "?content=images")
    assert "local-lvm" in storages(matrix, "golf", "?content=images")
    for node in ("foxtrot", "hotel"):
        kept = storages(matrix, node, "?content=images")["vm_ssd"]
        assert fields(kept, "enabled", "active", "total") == (1, 1, 4 * TiB)


def test_ceph_down(matrix):
    matrix.call(fake.ceph_down, matrix.pve)
    for node in NODES:
        listed = storages(matrix, node)
        assert fields(listed["vm_ssd"], "enabled", "active", "total", "used", "avail") == (1, 0, 0, 0, 0)
        assert "used_fraction" not in listed["vm_ssd"]
        assert listed["local-lvm"]["active"] == 1
    assert get_error(matrix, "/nodes/golf/storage/vm_ssd/content") == (
        500,
        "rbd error: rbd: listing images failed: (110) Connection timed out\n",
    )


def test_fill_storage(matrix):
    matrix.call(fake.fill_storage, matrix.pve, "vm_ssd")
    for node in NODES:
        full = storages(matrix, node)["vm_ssd"]
        assert fields(full, "active", "total", "used", "avail", "used_fraction") == (1, 4 * TiB, 4 * TiB, 0, 1.0)
    assert storages(matrix, "golf")["local-lvm"]["avail"] > 0
    matrix.call(fake.fill_storage, matrix.pve, "vm_ssd", 10 * GiB)  # again: the filler is resized
    almost = storages(matrix, "hotel")["vm_ssd"]
    assert fields(almost, "total", "used", "avail") == (4 * TiB, 4 * TiB - 10 * GiB, 10 * GiB)
    # A dir storage with fakepve's fixed avail (50 GiB) besides what it holds (the LXC templates): the total stays.
    total = storages(matrix, "foxtrot")["local"]["total"]
    assert total == 50 * GiB + sum(matrix.pve.storages["local"]["volumes"][t]["size"] for t in fake.CT_TEMPLATES)
    matrix.call(fake.fill_storage, matrix.pve, "local", GiB)
    local = storages(matrix, "foxtrot")["local"]
    assert fields(local, "total", "used", "avail") == (total, total - GiB, GiB)


def test_remove_bridge(matrix):
    matrix.call(fake.remove_bridge, matrix.pve, "hotel", "vmbr0")
    assert get(matrix, "/nodes/hotel/network?type=bridge") == []
    assert [i["iface"] for i in get(matrix, "/nodes/hotel/network")] == ["eno1"]
    for node in ("foxtrot", "golf"):
        assert [i["iface"] for i in get(matrix, f"/nodes/{node}/network?type=bridge")] == ["vmbr0"]


def test_set_node_dns(matrix):
    matrix.call(fake.set_node_dns, matrix.pve, "golf", ["1.1.1.1", "8.8.8.8"])
    assert get(matrix, "/nodes/golf/dns") == {"search": "matrix.lan", "dns1": "1.1.1.1", "dns2": "8.8.8.8"}
    for node in ("foxtrot", "hotel"):
        assert get(matrix, f"/nodes/{node}/dns") == {"search": "matrix.lan", "dns1": "127.0.0.53"}
    with pytest.raises(ValueError):
        matrix.call(fake.set_node_dns, matrix.pve, "golf", ["1.1.1.1", "8.8.8.8", "9.9.9.9", "127.0.0.1"])


def test_set_node_capacity(matrix):
    matrix.call(fake.set_node_capacity, matrix.pve, "foxtrot", 8, 16 * GiB, 15 * GiB)
    seen = nodes(matrix)
    assert fields(seen["foxtrot"], "maxcpu", "maxmem", "mem") == (8, 16 * GiB, 15 * GiB)
    for node in ("golf", "hotel"):
        assert fields(seen[node], "maxcpu", "maxmem", "mem") == (32, 128 * GiB, 8 * GiB)
    resources = {r["node"]: r for r in get(matrix, "/cluster/resources?type=node")}
    assert fields(resources["foxtrot"], "maxcpu", "maxmem", "mem") == (8, 16 * GiB, 15 * GiB)
    assert resources["golf"]["maxcpu"] == 32
    matrix.call(fake.take_node_offline, matrix.pve, "foxtrot")  # an offline node still shows no capacity
    assert "maxcpu" not in nodes(matrix)["foxtrot"]


def test_running_guests_use_their_nodes_memory_and_their_disks_the_storage(matrix):
    def add_vm(pve, vmid, status):
        pve.add_vm(vmid, f"vm{vmid}", node="golf", status=status, config={"memory": 16384, "cores": 8})

    used_before = storages(matrix, "golf")["vm_ssd"]["used"]
    matrix.call(add_vm, matrix.pve, 300, "running")
    matrix.call(add_vm, matrix.pve, 301, "stopped")  # a stopped VM holds no memory
    assert nodes(matrix)["golf"]["mem"] == 8 * GiB + 16 * GiB
    assert nodes(matrix)["foxtrot"]["mem"] == 8 * GiB
    # A disk made through the API is a volume of the storage: its size counts in `used` (fakepve's own arithmetic).
    matrix.call(lambda pve: pve._qm_alloc("vm_ssd", 300, None, 100 * GiB), matrix.pve)
    assert storages(matrix, "golf")["vm_ssd"]["used"] == used_before + 100 * GiB


def test_live_readings_move_between_requests_within_their_bounds(tmp_path):
    readings = fake.LiveReadings(seed=5, memory_bytes=2 * GiB, storage_bytes=16 * GiB)
    with running_matrix(tmp_path, readings=readings) as matrix:
        memory = [nodes(matrix)["golf"]["mem"] for _ in range(20)]
        used = [storages(matrix, "golf")["vm_ssd"]["used"] for _ in range(20)]
        loads = [nodes(matrix)["golf"]["cpu"] for _ in range(20)]
    assert len(set(memory)) > 10 and len(set(used)) > 10 and len(set(loads)) > 10
    assert all(6 * GiB <= m <= 10 * GiB for m in memory)  # the host's 8 GiB, 2 GiB either way
    assert all(0 <= u <= 16 * GiB for u in used)  # nothing stored yet: never below empty
    # Seeded: the same seed answers the same sequence.
    again = fake.LiveReadings(seed=5, memory_bytes=2 * GiB, storage_bytes=16 * GiB)
    (tmp_path / "again").mkdir()
    with running_matrix(tmp_path / "again", readings=again) as matrix:
        assert [nodes(matrix)["golf"]["mem"] for _ in range(20)] == memory


def test_disable_storage(matrix):
    matrix.call(fake.disable_storage, matrix.pve, "vm_ssd")
    for node in NODES:
        off = storages(matrix, node)["vm_ssd"]
        assert fields(off, "enabled", "active", "total", "avail") == (0, 0, 0, 0)
        assert "vm_ssd" not in storages(matrix, node, "?enabled=1")
        assert "vm_ssd" not in storages(matrix, node, "?content=images")
        assert fields(storages(matrix, node)["local-lvm"], "enabled", "active") == (1, 1)


def test_set_storage_content(matrix):
    matrix.call(fake.set_storage_content, matrix.pve, "vm_ssd", "rootdir")
    for node in NODES:
        listed = storages(matrix, node)["vm_ssd"]
        assert fields(listed, "content", "enabled", "active") == ("rootdir", 1, 1)
        with_images = storages(matrix, node, "?content=images")
        assert "vm_ssd" not in with_images and "local-lvm" in with_images
    with pytest.raises(ValueError):  # RBD holds images and rootdir only, as PVE's plugin says
        matrix.call(fake.set_storage_content, matrix.pve, "vm_ssd", "iso")


def test_faults_made_before_start_show_from_the_first_request(tmp_path):
    def prepare(pve):
        fake.set_node_capacity(pve, "hotel", 4, 8 * GiB, 7 * GiB)
        fake.set_node_dns(pve, "hotel", ["9.9.9.9"])
        fake.fill_storage(pve, "vm_ssd")

    with running_matrix(tmp_path, prepare=prepare) as matrix:
        assert fields(nodes(matrix)["hotel"], "maxcpu", "maxmem", "mem") == (4, 8 * GiB, 7 * GiB)
        assert get(matrix, "/nodes/hotel/dns")["dns1"] == "9.9.9.9"
        assert storages(matrix, "golf")["vm_ssd"]["avail"] == 0
