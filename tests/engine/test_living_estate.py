"""The program on a lab that lives like Matrix: the provider runs only once `docker compose up -d` starts its
container in the LXC and registers seconds later; it makes a VM in fakepve for every machine Omni asks for;
node memory, CPU load and storage use move between requests; a replaced container is a new, empty machine.

The tests share one lab and one stack, and run in any order: the first `up` on the empty lab is run once, by
whichever test needs the estate first (`first_up`), and a test that changes the estate either leaves it as the
spec now describes it or puts it back."""

import calendar
import json
import time
from pathlib import Path

import asyncssh
import pytest

from components.omni.infra_provider import HEALTH_NAMESPACE, HEALTH_TYPE, STATUS_NAMESPACE, STATUS_TYPE, heartbeat_at
from components.proxmox.ssh import public_key_of
from components.proxmox.storage_preflight import PREFLIGHT_MARK
from lab import ctl, provider_standin
from lab.processes import wait_until
from tests.engine.estate import CLUSTER, PROVIDER_ID, plain, running_estate

PROVIDER = PROVIDER_ID
NODES = ("foxtrot", "golf", "hotel")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "living") as estate:
        yield estate


@pytest.fixture(scope="module")
def first_up(estate) -> dict:
    """The first `up` on the empty lab: what Omni knew of the provider before it, and what it printed."""
    # Nothing runs the provider yet, and Omni does not know it: the program makes its identity.
    status_before = estate.omni.get_or_none(STATUS_TYPE, PROVIDER, STATUS_NAMESPACE)
    up = estate.pulumi("up", "--yes", "--skip-preview")
    return {"status_before": status_before, "out": up.stdout + up.stderr}


# Every test runs on the estate made by the first `up`.
pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("first_up")]


def run_drift(estate) -> int:
    from components.cli import drift

    report = drift.detect(estate.stack.argv(*drift.PREVIEW_ARGS), estate.stack.project_dir, estate.stack.env())
    return report["exit_code"], drift.summary(report)


def set_workers(estate, size: int) -> None:
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=size))


def test_the_first_up_on_an_empty_lab_waits_for_the_provider_to_register(estate, first_up):
    assert first_up["status_before"] is None
    out = first_up["out"]
    assert f"waiting up to 300s for infra provider '{PROVIDER}' to register with Omni" in out
    assert out.index(f"infra provider '{PROVIDER}' registered with Omni") < out.index("syncing cluster template")
    status = estate.omni.get_or_none(STATUS_TYPE, PROVIDER, STATUS_NAMESPACE)
    assert status["spec"]["schema"] and status["spec"]["name"] == "Proxmox"


def test_the_provider_made_the_seed_estates_vms_where_its_placement_puts_them(estate):
    vms = wait_until(
        lambda: (lambda v: len(v) == 5 and all(x["status"] == "running" for x in v) and v)(estate.provider_vms()),
        None,
        "the provider's five VMs",
        provider_standin.log_file(estate.lab_dir),
        60,
    )
    made = sorted((vm["tags"], vm["maxcpu"], vm["maxmem"] // 2**20) for vm in vms)
    assert (
        made
        == [("machine-request.talos-prod-01-control-planes", 4, 8192)] * 3
        + [("machine-request.talos-prod-01-workers", 8, 16384)] * 2
    )
    control_planes = [vm["node"] for vm in vms if "control-planes" in vm["tags"]]
    assert sorted(control_planes) == list(NODES)  # spread: one per node
    assert all(vm["name"].startswith(vm["tags"].split(".", 1)[1] + "-") for vm in vms)  # named after its request


def test_binpack_fills_a_node_that_holds_workers_already_and_every_vm_joins_its_sets_pool(estate):
    # A pool of its own, on a class of its own (the strategy is the class's): the seed's workers stay as they are,
    # and removing the pool afterwards puts the estate back exactly.
    vms = estate.provider_vms()
    with_a_worker = {vm["node"] for vm in vms if "workers" in vm["tags"]}
    assert len(with_a_worker) == 2  # spread put the two workers apart: the third node holds less

    def packed(d):
        d["machine_classes"]["matrix-packed"] = {
            **d["machine_classes"]["matrix-worker"],
            "provider_data": {
                **d["machine_classes"]["matrix-worker"]["provider_data"],
                "placement_strategy": "binpack",
            },
        }
        d["clusters"][CLUSTER]["workers"].append({"name": "packed", "machine_class": "matrix-packed", "size": 1})

    original = (estate.project / "specs" / "omni.yaml").read_text()
    try:
        estate.edit_spec(packed)
        estate.pulumi("up", "--yes", "--skip-preview")  # returns once the cluster is Ready with the new machine
        [new] = [vm for vm in estate.provider_vms() if vm["tags"].endswith("talos-prod-01-packed")]
        # binpack: the least free memory that still holds the VM, a node with a worker (16 GiB less free); a new set
        # placed by spread would take the node with the most free memory, the one without.
        assert new["node"] in with_a_worker
        # No class names a pool: each VM is in its machine request set's, which the provider made and marked.
        for set_id in ("talos-prod-01-control-planes", "talos-prod-01-workers", "talos-prod-01-packed"):
            pool = estate.pve().get(f"pools/{set_id}")
            members = {m["vmid"] for m in pool["members"]}
            assert members == {vm["vmid"] for vm in estate.provider_vms() if vm["tags"].endswith(set_id)}
            assert pool["comment"] == "managed by omni-infra-provider-proxmox"
    finally:
        (estate.project / "specs" / "omni.yaml").write_text(original)
        estate.pulumi("up", "--yes", "--skip-preview")
    assert sorted(vm["vmid"] for vm in estate.provider_vms()) == sorted(vm["vmid"] for vm in vms)
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_readings_move_and_neither_preview_nor_drift_sees_a_change(estate):
    memory = {json.dumps([n["mem"] for n in estate.pve().get("nodes")]) for _ in range(3)}
    assert len(memory) > 1  # the readings do move
    for _ in range(10):
        proc = estate.pulumi("preview", "--expect-no-changes", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for _ in range(10):
        code, text = run_drift(estate)
        assert code == 0, text


def test_growing_beyond_the_free_memory_is_one_capacity_error_and_growing_by_one_that_fits_passes(estate):
    # Nodes of 48 GiB, 4 for the host: the estate's VMs already hold their share of it.
    for node in NODES:
        ctl.fault("node-capacity", node, "32", "48", "4", directory=estate.lab_dir)
    try:
        set_workers(estate, 8)  # six more workers of 16 GiB: the spread puts two on each node
        proc = estate.pulumi("preview", check=False)
        out = proc.stdout + proc.stderr
        problems = sorted(
            {line.split(PREFLIGHT_MARK, 1)[1].strip() for line in out.splitlines() if PREFLIGHT_MARK in line}
        )
        assert proc.returncode != 0 and len(problems) == 1, out
        [problem] = problems
        assert problem.startswith("capacity: not enough memory for the VMs still to build: "), problem
        assert "2 VMs of talos-prod-01-workers (32768 MB)" in problem and "MB missing" in problem, problem
        set_workers(estate, 3)  # one more: the node without a worker has room for it
        proc = estate.pulumi("preview", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        set_workers(estate, 2)
        for node in NODES:
            ctl.fault("node-capacity", node, "32", "128", "8", directory=estate.lab_dir)
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_a_new_lxc_template_replaces_the_container_and_deploys_the_stack_into_the_new_one(estate):
    old_host_key = estate.state_resource("omni-provider-compose")["outputs"]["host_key"]
    old_creation = estate.state_resource("omni-provider")["outputs"]["creation_id"]
    before = heartbeat_at(estate.omni.get_or_none(HEALTH_TYPE, PROVIDER, HEALTH_NAMESPACE))
    estate.edit_spec(
        lambda d: d["provider_lxc"].update(os_template="local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst")
    )
    steps = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in estate.preview_json()["steps"]}
    assert steps["omni-provider"] == "replace" and steps["omni-provider-compose"] == "update"
    estate.pulumi("up", "--yes", "--skip-preview")
    container = estate.state_resource("omni-provider")["outputs"]
    assert container["ostemplate"].endswith("debian-13-standard_13.1-2_amd64.tar.zst")
    assert container["creation_id"] != old_creation and estate.ct_config()["hostname"] == "omni-provider"
    files = sorted(p.name for p in estate.stack_dir.iterdir())
    assert files == [".env", "compose.yml", "config.yaml"]  # in the new container's empty root
    compose = estate.state_resource("omni-provider-compose")["outputs"]
    assert compose["host_key"] and compose["host_key"] != old_host_key  # the new container's, learned afresh
    after = heartbeat_at(estate.omni.get_or_none(HEALTH_TYPE, PROVIDER, HEALTH_NAMESPACE))
    assert after > before  # the provider runs in the new container, and registered again
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_a_rotated_ssh_key_shows_in_preview_and_is_put_in_the_container(estate):
    new_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    estate.stack.set_config("omni-scale:providerLxcSshPrivateKey", new_key, secret=True)
    steps = {s["urn"].rsplit("::", 1)[1]: s for s in estate.preview_json()["steps"]}
    assert steps["omni-provider-compose"]["op"] == "update"
    assert steps.get("omni-provider", {"op": "same"})["op"] == "same"  # the container is not touched for it
    estate.pulumi("up", "--yes", "--skip-preview")
    authorized = (Path(estate.info["lxc"]["home"]) / ".ssh" / "authorized_keys").read_text().splitlines()
    assert authorized == [public_key_of(new_key)]
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    code, text = run_drift(estate)  # refresh reads the container with the new key
    assert code == 0, text


def test_the_kubeconfig_is_renewed_once_a_third_of_its_life_is_left(estate):
    estate.set_config("omni-scale:kubeconfigTtlSeconds", "45")
    try:
        up = estate.pulumi("up", "--yes", "--skip-preview")  # a new TTL: a new kubeconfig, and no sync
        assert "minting a kubeconfig" in up.stderr + up.stdout and "syncing" not in up.stderr + up.stdout
        cluster = estate.state_resource(CLUSTER)["outputs"]
        minted, expires = cluster["kubeconfig_minted_at"], cluster["kubeconfig_expires_at"]
        assert 0 < cluster["kubeconfig_remaining_seconds"] <= 45
        assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0  # 2/3 of its life left
        due = calendar.timegm(time.strptime(minted, "%Y-%m-%dT%H:%M:%SZ")) + 30
        time.sleep(max(due - time.time(), 0) + 1)  # the feature is about time: let a third of the life go by
        preview = estate.pulumi("preview", "--diff", check=False)
        out = preview.stdout + preview.stderr
        assert "has less than a third of its" in out and "`up` renews it" in out, out
        steps = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in estate.preview_json()["steps"]}
        assert steps[CLUSTER] == "update"
        estate.pulumi("up", "--yes", "--skip-preview")
        renewed = estate.state_resource(CLUSTER)["outputs"]
        assert renewed["kubeconfig_minted_at"] > minted and renewed["kubeconfig_expires_at"] > expires
        # The operator's Kubernetes provider now holds the new kubeconfig too (refresh must not use the old one).
        provider = estate.state_resource("tailscale-operator-cluster", "pulumi:providers:kubernetes")
        assert plain(provider["inputs"]["kubeconfig"]) == plain(renewed["kubeconfig"])
        assert estate.stack_outputs()["kubeconfig_expiry"] == {CLUSTER: renewed["kubeconfig_expires_at"]}
    finally:
        estate.set_config("omni-scale:kubeconfigTtlSeconds", str(90 * 86400))
        estate.pulumi("up", "--yes", "--skip-preview")
