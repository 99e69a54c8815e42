"""The call-count targets (issue: performance): a no-change `preview` writes nothing; `preview` and
`refresh` read each Omni resource at most once; the preflight's Proxmox requests grow with the nodes,
not with nodes x classes. Counted at the source: every omnictl argv (the lab's omnictl records them)
and every request fakepve answered."""

import copy

import pytest

from lab import ctl
from tests.engine.estate import running_estate

pytestmark = pytest.mark.engine
WRITES = {"apply", "delete", "sync"}
NODES = 3


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "counts") as estate:
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


def counted(estate, tmp_path, *args):
    """Runs pulumi ARGS; returns (omnictl argvs, Proxmox (method, path)s) it caused."""
    run = estate.stack.run_counted(tmp_path / f"argv-{len(list(tmp_path.iterdir()))}.log", *args)
    return run["omnictl"], run["proxmox"]


def test_a_no_change_preview_writes_nothing_and_reads_nothing_twice(estate, tmp_path):
    argvs, requests = counted(estate, tmp_path, "preview", "--expect-no-changes")
    omni = ctl.omni_calls(argvs)
    assert not [a for a in argvs if WRITES & set(a[:3])]
    assert omni == []  # preview compares with the state; it reads Omni only on refresh
    assert {method for method, _ in requests} == {"GET"}
    # /cluster/resources, then storage, network and dns per node. No GET /pools nor /access/permissions: after `up`
    # every VM the spec asks for exists, and the provider fills a pool only as it makes a VM.
    assert len(requests) == 1 + 3 * NODES


def test_refresh_reads_each_omni_resource_once(estate, tmp_path):
    argvs, requests = counted(estate, tmp_path, "refresh", "--yes", "--skip-preview")
    omni = ctl.omni_calls(argvs)
    assert not [a for a in omni if WRITES & set(a[:3])]
    reads = sorted(" ".join(a[:4]) for a in omni)
    # 2 classes (get), 1 cluster (template export), 2 service accounts (their identities; the drift job's key among
    # the keys Omni lists, which leave infra providers out), the backup store (its configuration and its status),
    # the cluster's backups (those in the store, and Omni's last attempt): one read each.
    assert reads == [
        "cluster template export -c",
        "get EtcdBackupS3Configs.omni.sidero.dev etcd-backup-s3-conf -n",
        "get EtcdBackupStatuses.omni.sidero.dev talos-prod-01 -n",
        "get EtcdBackupStoreStatuses.omni.sidero.dev etcdbackup-store-status -n",
        "get EtcdBackups.omni.sidero.dev -n external",
        "get Identities.omni.sidero.dev drift@serviceaccount.omni.sidero.dev -n",
        "get Identities.omni.sidero.dev matrix-cluster@infra-provider.serviceaccount.omni.sidero.dev -n",
        "get MachineClasses.omni.sidero.dev matrix-control-plane -n",
        "get MachineClasses.omni.sidero.dev matrix-worker -n",
        "serviceaccount list",
    ], reads
    assert {method for method, _ in requests} <= {"GET", "POST"}  # POST: the root login for the container
    assert not [p for m, p in requests if m == "POST" and not p.endswith("/access/ticket")]


def test_preflight_requests_grow_with_nodes_not_classes(estate, tmp_path):
    def with_classes(extra: int):
        def edit(data):
            for i in range(extra):
                data["machine_classes"][f"extra-{i}"] = copy.deepcopy(data["machine_classes"]["matrix-worker"])

        return edit

    estate.edit_spec(with_classes(6))
    _, requests = counted(estate, tmp_path, "preview")
    assert len(requests) == 1 + 3 * NODES  # 8 classes: the same 10 requests as 2
