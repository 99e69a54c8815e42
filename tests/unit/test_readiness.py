"""The readiness wait's reading of Omni (components/omni/readiness.py) and the lab's model of what the real Omni would
say (lab/omni_readiness.py): the rules, without a lab."""

import yaml

from components.omni.readiness import ClusterProgress, SetProgress
from lab.omni_readiness import ClusterModel, Machine, cni_missing, resource_kind, resources

NAME = "c1"
NO_DEFAULT_CNI = {
    "name": "cni",
    "inline": {"cluster": {"network": {"cni": {"name": "none"}}, "proxy": {"disabled": True}}},
}


def template(patches=(), manifests=()) -> list[dict]:
    cluster = {"kind": "Cluster", "name": NAME, "patches": list(patches)}
    if manifests:
        cluster["kubernetes"] = {"manifests": list(manifests)}
    return [cluster, {"kind": "ControlPlane", "machineClass": {"name": "cp", "size": 3}}]


def cilium(replacement: str) -> dict:
    docs = [
        {"kind": "ConfigMap", "metadata": {"name": "cilium-config"}, "data": {"kube-proxy-replacement": replacement}},
        {"kind": "DaemonSet", "metadata": {"name": "cilium"}},
    ]
    return {"name": "cilium", "mode": "full", "inline": yaml.safe_dump_all(docs)}


def test_a_cni_is_there_when_the_default_stays_on_or_a_manifest_installs_one():
    assert cni_missing(template()) == ""
    assert cni_missing(template([NO_DEFAULT_CNI])) == "the default CNI is disabled and no manifest installs one"
    assert cni_missing(template([NO_DEFAULT_CNI], [cilium("true")])) == ""
    assert (
        cni_missing(template([NO_DEFAULT_CNI], [cilium("false")]))
        == "kube-proxy is disabled and Cilium does not replace it"
    )


def model(provisioned: int, running: int, no_cni: str = "") -> ClusterModel:
    machines = [
        Machine(
            f"{NAME}-control-planes-abc12{i}",
            f"{NAME}-control-planes",
            True,
            uuid=f"u{i}",
            provisioned=i < provisioned,
            running=i < running,
        )
        for i in range(3)
    ]
    return ClusterModel(NAME, {f"{NAME}-control-planes": {"control_plane": True, "requested": 3}}, machines, no_cni)


def test_the_lab_model_is_ready_only_when_every_machine_runs_and_every_node_is_ready():
    assert not model(3, 2).ready
    assert model(3, 3).ready
    without_cni = model(3, 3, no_cni="the default CNI is disabled and no manifest installs one")
    assert not without_cni.ready
    [status] = resources(without_cni, "ClusterStatuses")
    assert status["spec"]["kubernetesapiready"] is True and status["spec"]["ready"] is False
    snapshots = resources(without_cni, "MachineStatusSnapshots")
    assert [c["name"] for s in snapshots for c in s["spec"]["machinestatus"]["status"]["unmetconditions"]] == [
        "nodeReady"
    ] * 3
    assert resources(model(3, 0), "KubernetesStatuses") == []  # no control plane runs: no API


def test_the_lab_answers_for_each_name_omnictl_takes():
    assert {resource_kind(n) for n in ("clusterstatus", "ClusterStatuses", "ClusterStatuses.omni.sidero.dev")} == {
        "ClusterStatuses"
    }
    assert resource_kind("machinesetstatus") == "MachineSetStatuses" and resource_kind("clusters") is None


def progress(**sets) -> ClusterProgress:
    return ClusterProgress(NAME, {f"{NAME}-{k}": SetProgress(*v) for k, v in sets.items()}, api_reachable=True)


def test_the_progress_line_and_what_is_unmet_at_the_timeout():
    state = progress(**{"control-planes": (3, 3, 3), "workers": (2, 2, 2)})
    assert state.line() == (
        f"cluster {NAME}: control-planes 3 requested, 3 provisioned, 3 running; workers 2 requested,"
        " 2 provisioned, 2 running; Kubernetes API reachable; 0 of 5 nodes ready"
    )
    assert state.unmet({"nodeReady": 5}) == [
        "`nodeReady` unmet on 5 machines (a node is Ready only once a CNI runs on it)"
    ]
    stuck = progress(**{"control-planes": (3, 1, 0), "workers": (2, 0, 0)})
    stuck.api_reachable = False
    assert stuck.unmet({}) == [
        "4 of 5 machines never provisioned: look at the provider (its container's logs, and "
        "its InfraProviderStatus in Omni)",
        "1 provisioned machines never joined Omni: look at their VMs' consoles (boot, SideroLink)",
    ]


class _MovingOmni:
    """Omni's answers as the reads see them: the last node turns Ready between the first read and the second."""

    def __init__(self, nodes_ready_at_first_read: int):
        self.first = nodes_ready_at_first_read

    def get_or_none(self, kind, name, namespace):
        if kind.startswith("KubernetesStatuses"):
            return {"spec": {"nodes": [{"ready": i < self.first} for i in range(5)]}}
        return {"spec": {"ready": True, "kubernetesapiready": True}}

    def run(self, *args):
        if "MachineSetStatuses.omni.sidero.dev" in args:
            sets = {"control-planes": 3, "workers": 2}
            return yaml.safe_dump_all(
                [
                    {
                        "metadata": {"id": f"{NAME}-{s}"},
                        "spec": {"ready": True, "machines": {"requested": n, "connected": n}},
                    }
                    for s, n in sets.items()
                ]
            )
        return ""


def test_omnis_ready_read_after_a_node_was_seen_not_ready_is_not_yet_ready():
    from components.omni.readiness import read_progress

    set_ids = [f"{NAME}-control-planes", f"{NAME}-workers"]
    moving = read_progress(_MovingOmni(4), NAME, set_ids)
    assert moving.line().endswith("4 of 5 nodes ready") and not moving.ready
    assert read_progress(_MovingOmni(5), NAME, set_ids).ready
