"""What the real Omni would say about a cluster's readiness, for the lab, where no VM ever boots Talos.

The lab's Omni is the real one, and the provider stand-in answers its MachineRequests with VMs in fakepve; what
cannot happen here is the rest of the chain: a VM booting Talos, joining Omni over SideroLink, its kubelet
registering a Node, and that Node becoming Ready once a CNI runs. This module plays that part by the rules
(see the README, "How the cluster comes up"):

- a machine of the cluster is *provisioned* when the provider says so (its real MachineRequestStatus, stage
  PROVISIONED), and *running* (joined, Talos up) when, besides, its VM exists in fakepve and runs;
- the Kubernetes API is reachable once a control-plane machine runs;
- a running machine's node is Ready (Talos's `nodeReady` condition met) only when the cluster gets a CNI: its
  patches leave Talos's default CNI on, or its manifests install one (a DaemonSet of a known CNI); with kube-proxy
  disabled, Cilium must also replace it (`kube-proxy-replacement: "true"` in cilium-config), or its agent never
  reaches the API and the node stays NotReady;
- the cluster is Ready when every requested machine runs and every node is Ready (Omni: ClusterStatus and every
  MachineSetStatus Ready).

`lab.ctl.set_cluster_ready(name, False)` holds the nodes NotReady regardless (a test's stand-in for any other
cause).

From that model come the resources the program's readiness wait reads, in the shape `omnictl get -o yaml` prints
them (Go field names lowercased, enums as numbers): ClusterStatuses, MachineSetStatuses, KubernetesStatuses,
ClusterMachineStatuses and MachineStatusSnapshots; and `cluster template status`'s answer.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LABEL_CLUSTER = "omni.sidero.dev/cluster"
LABEL_MACHINE_SET = "omni.sidero.dev/machine-set"
LABEL_CONTROL_PLANE = "omni.sidero.dev/role-controlplane"
LABEL_WORKER = "omni.sidero.dev/role-worker"
# Omni's enums, as numbers (omni.proto; Talos's machine.proto for the snapshot's stage).
CLUSTER_SCALING_UP, CLUSTER_RUNNING = 1, 3
SET_SCALING_UP, SET_RUNNING = 1, 3
MACHINE_BOOTING, MACHINE_RUNNING = 1, 4
REQUEST_PROVISIONED, REQUEST_FAILED = 2, 3
# DaemonSets that are a CNI's node agent.
CNI_DAEMONSETS = {"cilium", "kube-flannel", "kube-flannel-ds", "calico-node", "kube-router", "weave-net"}
SYNTHESIZED = (
    "ClusterStatuses",
    "MachineSetStatuses",
    "KubernetesStatuses",
    "ClusterMachineStatuses",
    "MachineStatusSnapshots",
)
# omnictl takes a type by its full name, its plural or its singular, in any case.
_NAMES = {
    alias: kind
    for kind in SYNTHESIZED
    for alias in (kind.lower(), kind.lower().removesuffix("es") if kind.endswith("uses") else kind.lower()[:-1])
}


def resource_kind(name: str) -> str | None:
    """ClusterStatuses for `clusterstatus`, `clusterstatuses` or `ClusterStatuses.omni.sidero.dev`; None if not ours."""
    return _NAMES.get(name.lower().removesuffix(".omni.sidero.dev"))


@dataclass
class Machine:
    request_id: str
    set_id: str
    control_plane: bool
    uuid: str = ""
    provisioned: bool = False
    error: str = ""
    running: bool = False


@dataclass
class ClusterModel:
    name: str
    sets: dict[str, dict] = field(default_factory=dict)  # set id -> {"control_plane", "requested"}
    machines: list[Machine] = field(default_factory=list)
    no_cni: str = ""  # why the nodes never get a CNI ("" when they do)
    held: bool = False

    @property
    def api_reachable(self) -> bool:
        return any(m.running and m.control_plane for m in self.machines)

    def node_ready(self, machine: Machine) -> bool:
        return machine.running and self.api_reachable and not self.no_cni and not self.held

    def set_counts(self, set_id: str) -> dict:
        members = [m for m in self.machines if m.set_id == set_id]
        return {
            "total": len([m for m in members if m.running]),
            "healthy": len([m for m in members if self.node_ready(m)]),
            "connected": len([m for m in members if m.running]),
            "requested": self.sets[set_id]["requested"],
        }

    def set_ready(self, set_id: str) -> bool:
        counts = self.set_counts(set_id)
        return counts["healthy"] == counts["requested"]

    @property
    def ready(self) -> bool:
        return all(self.set_ready(s) for s in self.sets)

    def unmet(self, machine: Machine) -> list[dict]:
        if not machine.running or self.node_ready(machine):
            return []
        reason = (
            f'node "{machine.request_id}" status is not available yet'
            if not self.api_reachable
            else f'node "{machine.request_id}" is not ready'
        )
        return [{"name": "nodeReady", "reason": reason}]


# --- what the model is built from ----------------------------------------------------------------------------


def cni_missing(template_docs: list[dict]) -> str:
    """Why a cluster (its exported template) would get no working CNI; "" if it gets one."""
    cluster = next(d for d in template_docs if d.get("kind") == "Cluster")
    patches = [p for d in template_docs for p in d.get("patches") or []]
    config: dict = {}
    for patch in patches:
        for doc in yaml.safe_load_all(
            patch.get("inline") if isinstance(patch.get("inline"), str) else yaml.safe_dump(patch.get("inline") or {})
        ):
            if isinstance(doc, dict):
                network = ((doc.get("cluster") or {}).get("network") or {}).get("cni")
                if network is not None:
                    config["cni"] = network.get("name")
                proxy = (doc.get("cluster") or {}).get("proxy") or {}
                if "disabled" in proxy:
                    config["proxy_disabled"] = bool(proxy["disabled"])
    installed = []
    for manifest in (cluster.get("kubernetes") or {}).get("manifests") or []:
        inline = manifest.get("inline")
        for doc in yaml.safe_load_all(inline) if isinstance(inline, str) else (inline or []):
            if isinstance(doc, dict):
                installed.append(doc)
    daemonsets = [
        d for d in installed if d.get("kind") == "DaemonSet" and (d.get("metadata") or {}).get("name") in CNI_DAEMONSETS
    ]
    if config.get("cni", "flannel") != "none":
        return ""
    if not daemonsets:
        return "the default CNI is disabled and no manifest installs one"
    cilium_config = next(
        (
            d.get("data") or {}
            for d in installed
            if d.get("kind") == "ConfigMap" and (d.get("metadata") or {}).get("name") == "cilium-config"
        ),
        None,
    )
    if (
        config.get("proxy_disabled")
        and cilium_config is not None
        and str(cilium_config.get("kube-proxy-replacement")).lower() != "true"
    ):
        return "kube-proxy is disabled and Cilium does not replace it"
    return ""


def _real_omnictl(real: str, globals_: list[str], *args: str) -> str:
    done = subprocess.run([real, *globals_, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LookupError(done.stderr.strip() or done.stdout.strip())
    return done.stdout


def _fakepve_vms(lab_dir: Path) -> list[dict]:
    """The VMs fakepve holds, asked with the provider's own token (the lab's view, not one of the program's calls)."""
    info = json.loads((lab_dir / "lab.json").read_text())
    token = info["provider_stack"]
    request = urllib.request.Request(
        info["proxmox"]["api_url"].rstrip("/") + "/cluster/resources?type=vm",
        headers={"Authorization": f"PVEAPIToken={token['proxmox_token_id']}={token['proxmox_token_secret']}"},
    )
    context = ssl.create_default_context(cafile=info["proxmox"]["cafile"])
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return json.load(answer)["data"]


def build(name: str, real: str, globals_: list[str], lab_dir: Path) -> ClusterModel:
    """The model of one existing cluster: its template as Omni exports it, the provider's request statuses and
    fakepve's VMs. LookupError when the cluster does not exist."""
    with tempfile.TemporaryDirectory(prefix="omni-lab-") as d:
        target = os.path.join(d, "template.yaml")
        _real_omnictl(real, globals_, "cluster", "template", "export", "-c", name, "-o", target)
        docs = [doc for doc in yaml.safe_load_all(Path(target).read_text()) if doc]
    model = ClusterModel(name=name, no_cni=cni_missing(docs), held=(lab_dir / "not-ready" / name).exists())
    for doc in docs:
        if doc.get("kind") == "ControlPlane":
            model.sets[f"{name}-control-planes"] = {"control_plane": True, "requested": _size(doc)}
        elif doc.get("kind") == "Workers":
            model.sets[f"{name}-{doc.get('name') or 'workers'}"] = {"control_plane": False, "requested": _size(doc)}
    statuses = [
        d
        for d in yaml.safe_load_all(
            _real_omnictl(real, globals_, "get", "machinerequeststatuses", "-n", "infra-provider", "-o", "yaml")
        )
        if d
    ]
    vms = {vm.get("name"): vm for vm in _fakepve_vms(lab_dir)}
    for status in sorted(statuses, key=lambda s: s["metadata"]["id"]):
        request_id = status["metadata"]["id"]
        set_id = next(
            (s for s in model.sets if request_id.startswith(s + "-") and len(request_id) == len(s) + 7), None
        )  # <set>-<6 random characters>
        if set_id is None:
            continue
        spec = status.get("spec") or {}
        vm = vms.get(request_id) or {}
        machine = Machine(
            request_id=request_id,
            set_id=set_id,
            control_plane=model.sets[set_id]["control_plane"],
            uuid=spec.get("id") or "",
            provisioned=spec.get("stage") == REQUEST_PROVISIONED,
            error=spec.get("error") or "",
        )
        machine.running = machine.provisioned and vm.get("status") == "running"
        model.machines.append(machine)
    return model


def _size(doc: dict) -> int:
    size = (doc.get("machineClass") or {}).get("size", 0)
    return size if isinstance(size, int) else 0


# --- the resources, as `omnictl get -o yaml` prints them -----------------------------------------------------


def _resource(kind: str, id_: str, labels: dict, spec: dict) -> dict:
    return {
        "metadata": {
            "namespace": "default",
            "type": f"{kind}.omni.sidero.dev",
            "id": id_,
            "version": 1,
            "owner": "",
            "phase": "running",
            "labels": labels,
        },
        "spec": spec,
    }


def resources(model: ClusterModel, kind: str) -> list[dict]:
    name = model.name
    running = [m for m in model.machines if m.running]
    if kind == "ClusterStatuses":
        requested = sum(s["requested"] for s in model.sets.values())
        healthy = len([m for m in running if model.node_ready(m)])
        return [
            _resource(
                kind,
                name,
                {},
                {
                    "available": True,
                    "machines": {
                        "total": len(running),
                        "healthy": healthy,
                        "connected": len(running),
                        "requested": requested,
                    },
                    "phase": CLUSTER_RUNNING if len(running) == requested else CLUSTER_SCALING_UP,
                    "ready": model.ready,
                    "kubernetesapiready": model.api_reachable,
                    "controlplaneready": any(model.node_ready(m) for m in running if m.control_plane),
                    "hasconnectedcontrolplanes": model.api_reachable,
                },
            )
        ]
    if kind == "MachineSetStatuses":
        return [
            _resource(
                kind,
                set_id,
                {LABEL_CLUSTER: name, LABEL_CONTROL_PLANE if s["control_plane"] else LABEL_WORKER: ""},
                {
                    "phase": SET_RUNNING if model.set_counts(set_id)["total"] == s["requested"] else SET_SCALING_UP,
                    "ready": model.set_ready(set_id),
                    "error": "",
                    "machines": model.set_counts(set_id),
                },
            )
            for set_id, s in model.sets.items()
        ]
    if kind == "KubernetesStatuses":
        if not model.api_reachable:
            return []
        return [
            _resource(
                kind,
                name,
                {LABEL_CLUSTER: name},
                {
                    "nodes": [
                        {"nodename": m.request_id, "kubeletversion": "", "ready": model.node_ready(m)} for m in running
                    ],
                    "staticpods": [],
                },
            )
        ]
    if kind == "ClusterMachineStatuses":
        return [
            _resource(
                kind,
                m.uuid,
                {
                    LABEL_CLUSTER: name,
                    LABEL_MACHINE_SET: m.set_id,
                    LABEL_CONTROL_PLANE if m.control_plane else LABEL_WORKER: "",
                },
                {"ready": model.node_ready(m), "stage": MACHINE_RUNNING, "apidavailable": True},
            )
            for m in running
        ]
    if kind == "MachineStatusSnapshots":
        return [
            _resource(
                kind,
                m.uuid,
                {},
                {
                    "machinestatus": {
                        "stage": MACHINE_RUNNING,
                        "status": {"ready": model.node_ready(m), "unmetconditions": model.unmet(m)},
                    },
                    "powerstage": 0,
                },
            )
            for m in running
        ]
    raise ValueError(kind)


def status_tree(model: ClusterModel) -> str:
    """`cluster template status`'s tree, as the real omnictl draws it (without colours)."""
    cluster = resources(model, "ClusterStatuses")[0]["spec"]
    phase = "RUNNING" if cluster["phase"] == CLUSTER_RUNNING else "SCALING_UP"
    lines = [
        f'Cluster "{model.name}" {phase} {"Ready" if model.ready else "Not Ready"} '
        f"({cluster['machines']['healthy']}/{cluster['machines']['total']}) (healthy/total)"
    ]
    for set_id, s in model.sets.items():
        counts = model.set_counts(set_id)
        title = "Control Plane" if s["control_plane"] else "Workers"
        lines.append(
            f'├── {title} "{set_id}" {"Running" if counts["total"] == s["requested"] else "ScalingUp"} '
            f"{'Ready' if model.set_ready(set_id) else 'Not Ready'} ({counts['healthy']}/{counts['total']})"
        )
        for m in (m for m in model.machines if m.set_id == set_id and m.running):
            lines.append(f'│   └── Machine "{m.uuid}" RUNNING {"Ready" if model.node_ready(m) else "Not Ready"}')
    return "\n".join(lines) + "\n"
