"""Storage preflight: predict, from what the Proxmox API says now, what the infra provider
will do with each MachineClass, and list every reason it would fail, before anything is applied.

Pure: facts in, a report out. The placement rules are the provider's (domain.md): a class
lands on its pinned node or on any online node; on that node the provider walks the node's
storages in order and takes the first whose CEL selector is true.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

import celpy
from celpy import celtypes

from .proxmox import NodeFacts
from .spec import Spec

GIB = 1024 ** 3


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    storage_by_class: dict[str, dict[str, str]] = field(default_factory=dict)
    free: dict = field(default_factory=dict)
    requested: dict = field(default_factory=dict)

    def outputs(self) -> dict:
        return {"storage_by_class": self.storage_by_class, "free": self.free,
                "requested": self.requested, "warnings": self.warnings}


def _activation(storage: dict, node: str) -> dict:
    return {"name": celtypes.StringType(storage.get("storage", "")),
            "node": celtypes.StringType(node),
            "storageType": celtypes.StringType(storage.get("type", "")),
            "availableSpace": celtypes.UintType(max(int(storage.get("avail", 0) or 0), 0))}


@lru_cache(maxsize=None)
def _cel_program(selector: str):
    environment = celpy.Environment()
    return environment.program(environment.compile(selector))


def first_matching_storage(selector: str, node: str, storages) -> dict | None:
    """The provider's choice: the first storage of the node, in order, whose selector is true."""
    program = _cel_program(selector)  # compiled once per selector, evaluated per node and storage
    for storage in storages:
        result = program.evaluate(_activation(storage, node))
        if isinstance(result, celtypes.BoolType) and bool(result):
            return storage
    return None


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def run_preflight(spec: Spec, facts: dict[str, NodeFacts]) -> Report:
    report = Report()
    online = sorted(n for n in spec.proxmox.nodes if n in facts and facts[n].online)
    for node in spec.proxmox.nodes:
        if node not in facts:
            report.errors.append(f"node {node}: named in the spec but not in the Proxmox cluster "
                                 f"(it has: {', '.join(sorted(facts)) or 'no nodes'})")
        elif not facts[node].online:
            report.errors.append(f"node {node}: offline")

    _check_dns(spec, facts, online, report)

    need_by_storage: dict[tuple, dict] = {}  # (storage, node or "shared") -> {"need_gb", "avail_gb"}
    for class_id, cls in spec.machine_classes.items():
        data = cls.provider_data
        if data.node is not None:
            if data.node not in online:
                continue  # already reported as missing or offline
            candidates = [data.node]
        else:
            candidates = online
        chosen = report.storage_by_class.setdefault(class_id, {})
        machines = _machines_of_class(spec, class_id)
        counted_shared: set[str] = set()
        for node in candidates:
            storage = first_matching_storage(data.storage_selector, node, facts[node].storages)
            where = f"class {class_id} on node {node}"
            if storage is None:
                report.errors.append(f"{where}: no storage matches selector {data.storage_selector!r} "
                                     "(the provider fails with \"no matches for the condition\")")
                continue
            chosen[node] = storage["storage"]
            if not int(storage.get("enabled", 1)):
                report.errors.append(f"{where}: selector picks storage {storage['storage']}, which is disabled "
                                     "on this node (storage.cfg `disable`, or a `nodes` list without it)")
            elif not int(storage.get("active", 0)):
                report.errors.append(f"{where}: selector picks storage {storage['storage']}, which is inactive "
                                     "(for Ceph RBD: is the Ceph cluster healthy?)")
            if "images" not in str(storage.get("content", "")).split(","):
                report.errors.append(f"{where}: selector picks storage {storage['storage']}, which does not "
                                     "hold VM disk images (content lacks `images`)")
            shared = bool(int(storage.get("shared", 0)))
            slot = need_by_storage.setdefault((storage["storage"], "shared" if shared else node),
                                              {"need_gb": 0, "avail_gb": int(storage.get("avail", 0)) // GIB})
            # The provider spreads a class over its nodes evenly; a shared storage sees them all once.
            if not shared:
                slot["need_gb"] += -(-machines // len(candidates)) * data.disk_size
            elif storage["storage"] not in counted_shared:
                counted_shared.add(storage["storage"])
                slot["need_gb"] += machines * data.disk_size
            for bridge in [data.network_bridge] + [nic.bridge for nic in data.additional_nics or []]:
                if bridge and bridge not in facts[node].bridges:
                    report.errors.append(f"{where}: bridge {bridge} does not exist on {node}")

    _check_capacity(spec, facts, online, need_by_storage, report)
    _check_control_plane_spread(spec, online, report)
    _check_provider_lxc(spec, facts, online, report)
    return report


def _check_provider_lxc(spec: Spec, facts: dict[str, NodeFacts], online: list[str], report: Report) -> None:
    """Where the provider LXC goes: its bridge (L2-adjacent to the Talos VMs), root disk storage and template."""
    lxc = spec.provider_lxc
    if lxc is None or lxc.node not in online:
        return  # a missing or offline node is already reported
    where, node = f"provider LXC {lxc.vmid} on node {lxc.node}", facts[lxc.node]
    if lxc.network.bridge not in node.bridges:
        report.errors.append(f"{where}: bridge {lxc.network.bridge} does not exist on {lxc.node}")
    storages = {s.get("storage"): s for s in node.storages}
    template_storage = lxc.os_template.split(":", 1)[0]
    for storage_id, content, what in ((lxc.root_disk.storage, "rootdir", "root disk"),
                                      (template_storage, "vztmpl", "template")):
        storage = storages.get(storage_id)
        if storage is None:
            report.errors.append(f"{where}: {what} storage {storage_id} does not exist on {lxc.node}")
        elif not int(storage.get("enabled", 1)) or not int(storage.get("active", 0)):
            report.errors.append(f"{where}: {what} storage {storage_id} is disabled or inactive on {lxc.node}")
        elif content not in str(storage.get("content", "")).split(","):
            report.errors.append(f"{where}: {what} storage {storage_id} does not hold `{content}` content")


def _machines_of_class(spec: Spec, class_id: str) -> int:
    return sum(size for cluster in spec.clusters.values() for _, pool, size in cluster.pools()
               if pool.machine_class == class_id and size != "unlimited")


def _check_dns(spec: Spec, facts: dict[str, NodeFacts], online: list[str], report: Report) -> None:
    expected = [str(a) for a in spec.proxmox.dns_resolvers or []]
    for node in online:
        resolvers = list(facts[node].resolvers)
        public = [r for r in resolvers if _is_public(r)]
        if public:
            report.errors.append(
                f"node {node}: public DNS resolver {', '.join(public)}; Talos VMs inherit the node's resolvers "
                "and must resolve Omni's split-horizon name to its LAN address, or SideroLink registration "
                "fails silently: use the LAN resolver")
        elif expected and resolvers != expected:
            report.errors.append(f"node {node}: DNS resolvers {resolvers}, expected {expected} (proxmox.dns_resolvers)")


def _check_capacity(spec: Spec, facts, online, need_by_storage, report: Report) -> None:
    totals = spec.totals
    report.requested = totals.model_dump()
    free_nodes = {n: {"cores": facts[n].maxcpu, "memory_mb": facts[n].free_memory_mb} for n in online}
    report.free = {"nodes": free_nodes,
                   "storages": {f"{s}@{scope}": v["avail_gb"] for (s, scope), v in sorted(need_by_storage.items())}}
    cores = sum(v["cores"] for v in free_nodes.values())
    memory = sum(v["memory_mb"] for v in free_nodes.values())
    if totals.cores > cores:
        report.errors.append(f"capacity: the spec asks for {totals.cores} cores, the online nodes have "
                             f"{cores}: {totals.cores - cores} missing")
    if totals.memory_mb > memory:
        report.errors.append(f"capacity: the spec asks for {totals.memory_mb} MB of memory, the online nodes "
                             f"have {memory} MB free: {totals.memory_mb - memory} MB missing")
    for (storage, scope), v in sorted(need_by_storage.items()):
        if v["need_gb"] > v["avail_gb"]:
            where = storage if scope == "shared" else f"{storage} on {scope}"
            report.errors.append(f"capacity: storage {where} needs {v['need_gb']} GB, has {v['avail_gb']} GB "
                                 f"free: {v['need_gb'] - v['avail_gb']} GB missing")
    # Pinned classes must fit on their own node.
    for node in online:
        pinned = [(cid, c.provider_data) for cid, c in spec.machine_classes.items() if c.provider_data.node == node]
        need_mem = sum(_machines_of_class(spec, cid) * d.memory for cid, d in pinned)
        if need_mem > free_nodes[node]["memory_mb"]:
            report.errors.append(f"capacity: classes pinned to {node} ask for {need_mem} MB of memory, it has "
                                 f"{free_nodes[node]['memory_mb']} MB free: "
                                 f"{need_mem - free_nodes[node]['memory_mb']} MB missing")


def _check_control_plane_spread(spec: Spec, online: list[str], report: Report) -> None:
    for name, cluster in spec.clusters.items():
        size = cluster.control_plane.size
        if size < 2:
            continue
        pinned = spec.machine_classes[cluster.control_plane.machine_class].provider_data.node
        if pinned is not None:
            report.warnings.append(f"cluster {name}: all {size} control planes are pinned to {pinned}; "
                                   "the cluster does not survive the loss of that node")
        elif len(online) < size:
            report.warnings.append(f"cluster {name}: {size} control planes on {len(online)} online node(s); "
                                   "some node will hold more than one, and losing it loses quorum")
