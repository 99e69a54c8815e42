"""How far a cluster is from Ready, read from Omni's own resources while `up` waits for it.

Omni calls a cluster healthy (what `omnictl cluster template status` waits for) when its ClusterStatus and every
MachineSetStatus are Ready. Each machine is Ready when Talos says so: its MachineStatus has no unmet condition,
and on a node that runs a kubelet one of them is `nodeReady`, met only once the Kubernetes Node is Ready, which
needs a CNI. So the way there, per cluster, is:

    requested  -> provisioned (the infra provider made the VM: MachineRequestStatus PROVISIONED)
               -> running (Talos booted and joined Omni: MachineSetStatus machines.connected)
               -> Kubernetes API reachable (ClusterStatus kubernetesapiready)
               -> nodes Ready (KubernetesStatus nodes[].ready) -> the cluster Ready.

`omnictl get -o yaml` prints a spec's fields as their Go names in lower case (`kubernetesapiready`) and enums as
numbers; that is what is read here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import yaml

from components.omni.omnictl import NotFound, Omnictl, OmnictlError

LABEL_CLUSTER = "omni.sidero.dev/cluster"
INFRA_NAMESPACE = "infra-provider"
REQUEST_PROVISIONED, REQUEST_FAILED = 2, 3  # infra.proto MachineRequestStatusSpec.Stage
RANDOM_SUFFIX = 6  # Omni names a MachineRequest <request set id>-<6 random characters>


class NotReady(OmnictlError):
    kind = "gave up waiting"


@dataclass
class SetProgress:
    requested: int = 0
    provisioned: int = 0
    running: int = 0
    ready: bool = False
    failures: list[str] = field(default_factory=list)  # what the provider said of the requests it failed


@dataclass
class ClusterProgress:
    name: str
    sets: dict[str, SetProgress]
    api_reachable: bool = False
    nodes_ready: int = 0
    ready: bool = False

    def line(self) -> str:
        parts = [
            f"{set_id.removeprefix(self.name + '-')} {s.requested} requested, {s.provisioned} provisioned, "
            f"{s.running} running"
            for set_id, s in self.sets.items()
        ]
        api = "Kubernetes API reachable" if self.api_reachable else "Kubernetes API not reachable yet"
        return (
            f"cluster {self.name}: " + "; ".join(parts) + f"; {api}; "
            f"{self.nodes_ready} of {sum(s.requested for s in self.sets.values())} nodes ready"
        )

    def unmet(self, conditions: Counter) -> list[str]:
        """What still stands between the cluster and Ready, the earliest step first."""
        requested = sum(s.requested for s in self.sets.values())
        provisioned = sum(min(s.provisioned, s.requested) for s in self.sets.values())
        running = sum(min(s.running, s.requested) for s in self.sets.values())
        failures = [f for s in self.sets.values() for f in s.failures]
        out = []
        if provisioned < requested:
            out.append(
                f"{requested - provisioned} of {requested} machines never provisioned: look at the provider"
                + (
                    f" (it says: {'; '.join(sorted(set(failures)))})"
                    if failures
                    else " (its container's logs, and its InfraProviderStatus in Omni)"
                )
            )
        if running < provisioned:
            out.append(
                f"{provisioned - running} provisioned machines never joined Omni: look at their VMs' consoles "
                "(boot, SideroLink)"
            )
        if running and not self.api_reachable:
            out.append("the Kubernetes API never became reachable")
        for condition, count in sorted(conditions.items()):
            out.append(
                f"`{condition}` unmet on {count} machine{'s' if count != 1 else ''}"
                + (" (a node is Ready only once a CNI runs on it)" if condition == "nodeReady" else "")
            )
        if not out and not self.ready:
            out.append("Omni does not call the cluster healthy yet")
        return out


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def read_progress(client: Omnictl, name: str, set_ids: list[str]) -> ClusterProgress:
    """Four reads: the cluster's KubernetesStatus and ClusterStatus, its MachineSetStatuses, the provider's
    MachineRequestStatuses. They are not one snapshot, and the cluster moves between them; read from the last step
    of the way to the first, whatever moved in between can only make an earlier step look further along, so one
    line never shows more nodes ready than machines running, or more running than provisioned."""
    kubernetes = client.get_or_none("KubernetesStatuses.omni.sidero.dev", name, "default") or {}
    nodes = (kubernetes.get("spec") or {}).get("nodes") or []
    cluster = (client.get_or_none("ClusterStatuses.omni.sidero.dev", name, "default") or {}).get("spec") or {}
    sets = {set_id: SetProgress() for set_id in set_ids}
    for status in _docs(
        client.run(
            "get", "MachineSetStatuses.omni.sidero.dev", "-n", "default", "-l", f"{LABEL_CLUSTER}={name}", "-o", "yaml"
        )
    ):
        set_id, spec = status["metadata"]["id"], status.get("spec") or {}
        if set_id in sets:
            machines = spec.get("machines") or {}
            sets[set_id].requested = int(machines.get("requested") or 0)
            sets[set_id].running = int(machines.get("connected") or 0)
            sets[set_id].ready = bool(spec.get("ready"))
    # Omni names a request after its set (<set id>-<6 characters>): only this cluster's are asked for.
    for status in _docs(
        client.run(
            "get",
            "MachineRequestStatuses.omni.sidero.dev",
            "-n",
            INFRA_NAMESPACE,
            "--id-match-regexp",
            f"^{re.escape(name)}-",
            "-o",
            "yaml",
        )
    ):
        request_id, spec = status["metadata"]["id"], status.get("spec") or {}
        set_id = request_id[: -RANDOM_SUFFIX - 1]
        if set_id in sets and request_id[-RANDOM_SUFFIX - 1] == "-":
            if spec.get("stage") == REQUEST_PROVISIONED:
                sets[set_id].provisioned += 1
            elif spec.get("stage") == REQUEST_FAILED:
                sets[set_id].failures.append(spec.get("error") or "failed")
    nodes_ready = len([n for n in nodes if n.get("ready")])
    return ClusterProgress(
        name=name,
        sets=sets,
        api_reachable=bool(cluster.get("kubernetesapiready")),
        nodes_ready=nodes_ready,
        # Omni's verdict, read after the nodes, may already count a node this read saw NotReady: ready only when
        # this one reading agrees, so the last line printed before "ready" shows every node ready.
        ready=bool(cluster.get("ready"))
        and all(s.ready for s in sets.values())
        and nodes_ready >= sum(s.requested for s in sets.values()),
    )


def unmet_conditions(client: Omnictl, name: str) -> Counter:
    """Talos's unmet conditions over the cluster's machines (their MachineStatusSnapshots), by name."""
    machines = {
        m["metadata"]["id"]
        for m in _docs(
            client.run(
                "get",
                "ClusterMachineStatuses.omni.sidero.dev",
                "-n",
                "default",
                "-l",
                f"{LABEL_CLUSTER}={name}",
                "-o",
                "yaml",
            )
        )
    }
    if not machines:
        return Counter()
    try:
        snapshots = _docs(client.run("get", "MachineStatusSnapshots.omni.sidero.dev", "-n", "default", "-o", "yaml"))
    except NotFound:
        return Counter()
    found: Counter[str] = Counter()
    for snapshot in snapshots:
        if snapshot["metadata"]["id"] in machines:
            status = ((snapshot.get("spec") or {}).get("machinestatus") or {}).get("status") or {}
            found.update({c.get("name") for c in status.get("unmetconditions") or [] if c.get("name")})
    return found
