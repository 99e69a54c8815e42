"""Storage preflight: predict, from what the Proxmox API says now, what the infra provider
will do with each MachineClass, and list every reason it would fail, before anything is applied.

Pure: facts in, a report out. The placement rules are the provider's (its pickNode and pickStorage
steps): a VM lands on its class's pinned node, or on the online node with the fewest VMs of its
machine request set, then the largest share of free memory; on that node the provider walks the
node's storages in order and takes the first whose CEL selector is true.

The report keeps apart what it concluded (the judgement: problems, warnings, the storage chosen per
class per node, the totals the spec asks for) and what it measured (the readings: free memory, cores
and space, the VMs per set), because readings move by the minute on a live cluster.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from components.core.spec import ProviderData, Spec
from components.core.storage_selector import SelectorError, matches
from components.proxmox.client import ClusterFacts, Guest, NodeFacts, PoolFacts

GIB = 1024**3


# The Proxmox tag the infra provider puts on every VM it makes for a MachineRequestSet (its syncVM step:
# "machine-request." + the set id); the set id is the MachineSet's (spec.machine_set_id).
MACHINE_REQUEST_TAG = "machine-request.{}"


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    storage_by_class: dict[str, dict[str, str]] = field(default_factory=dict)
    requested: dict = field(default_factory=dict)
    # What the estate measures now (free memory, cores, storage, the VMs per set): for people to read, never
    # compared, because it moves by the minute on a live cluster.
    readings: dict = field(default_factory=dict)

    def judgement(self) -> dict:
        """What the preflight concluded: stable while the infrastructure and the spec are, so it is what
        `diff` compares (a storage gone, another storage chosen, a new warning)."""
        return {"storage_by_class": self.storage_by_class, "requested": self.requested, "warnings": self.warnings}


def matching_storages(selector: str, node: str, storages) -> list[dict]:
    """Every storage of the node, in the order listed, whose selector is true: the provider takes the first."""
    return [
        s for s in storages if matches(selector, s.get("storage", ""), s.get("type", ""), s.get("avail", 0) or 0, node)
    ]


def has_iso_storage(storages) -> bool:
    """The provider downloads the Talos ISO to, and uploads each VM's cloud-init ISO to, the node's first
    enabled storage whose content includes `iso`."""
    return any(int(s.get("enabled", 1)) and "iso" in str(s.get("content", "")).split(",") for s in storages)


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def run_preflight(spec: Spec, facts: ClusterFacts) -> Report:
    report = Report()
    nodes = facts.nodes
    # The provider's candidates are every online node of the Proxmox cluster, not only those the spec names.
    online = sorted(n for n, f in nodes.items() if f.online)
    for node in spec.proxmox.nodes:
        if node not in nodes:
            report.errors.append(
                f"node {node}: named in the spec but not in the Proxmox cluster "
                f"(it has: {', '.join(sorted(nodes)) or 'no nodes'})"
            )
        elif not nodes[node].online:
            report.errors.append(f"node {node}: offline")

    _check_dns(spec, nodes, online, report)

    disk_storages: dict[tuple[str, str], list] = {}  # (class, node) -> the storage of each disk, or None
    for class_id, cls in spec.machine_classes.items():
        data = cls.provider_data
        if data is None:
            continue  # it selects machines already registered with Omni: no VM to place, no storage to pick
        if data.node is not None:
            if data.node not in online:
                continue  # already reported as missing or offline
            candidates = [data.node]
        else:
            candidates = online
        chosen = report.storage_by_class.setdefault(class_id, {})
        selectors = [("", data.storage_selector)] + [
            (f"additional_disks[{i}]: ", disk.storage_selector) for i, disk in enumerate(data.additional_disks or [])
        ]
        for node in candidates:
            where = f"class {class_id} on node {node}"
            picked = disk_storages.setdefault((class_id, node), [])
            for label, selector in selectors:
                try:
                    matched = matching_storages(selector, node, nodes[node].storages)
                except SelectorError as exc:  # an evaluation error stops the provider's provisioning too
                    picked.append(None)
                    report.errors.append(f"{where}: {label}selector fails: {exc}")
                    continue
                if len(matched) > 1:
                    # PVE builds a node's storage list from a hash: its order, and so the provider's pick, can
                    # change from one call to the next.
                    report.warnings.append(
                        f"{where}: {label}selector {selector!r} matches {len(matched)} storages "
                        f"({', '.join(s['storage'] for s in matched)}); Proxmox lists them in no fixed order, so "
                        "the provider may pick any of them: make the selector match one"
                    )
                storage = matched[0] if matched else None
                picked.append(storage)
                if storage is None:
                    report.errors.append(
                        f"{where}: {label}no storage matches selector {selector!r} "
                        '(the provider fails with "no matches for the condition")'
                    )
                    continue
                if not label:
                    chosen[node] = storage["storage"]
                report.errors += [f"{where}: {label}{p}" for p in _storage_problems(storage)]
            for bridge in [data.network_bridge] + [nic.bridge for nic in data.additional_nics or []]:
                if bridge and bridge not in nodes[node].bridges:
                    report.errors.append(f"{where}: bridge {bridge} does not exist on {node}")

    for node in sorted({node for (_class, node) in disk_storages}):
        if not has_iso_storage(nodes[node].storages):
            report.errors.append(
                f"node {node}: no enabled storage with `iso` content (the provider puts the Talos image and "
                "each VM's cloud-init ISO there)"
            )

    _check_capacity(spec, facts, online, disk_storages, report)
    _check_control_plane_spread(spec, facts, online, report)
    _check_provider_lxc(spec, nodes, online, report)
    _check_pools(spec, facts, report)
    return report


class MachineSetToBuild(NamedTuple):
    set_id: str
    class_id: str
    data: ProviderData
    wanted: int | str
    existing: int  # the VMs the provider made for the set already (by its tag)
    to_build: int


def machine_sets_to_build(spec: Spec, guests: tuple[Guest, ...]) -> list[MachineSetToBuild]:
    """Every machine set of every cluster whose VMs the provider makes, with the VMs it has made and those still to
    build."""
    tagged = Counter(tag for g in guests if g.kind == "qemu" for tag in g.tags)
    sets = []
    for cluster_name, cluster in spec.clusters.items():
        for set_id, pool, size in cluster.machine_sets(cluster_name):
            data = spec.machine_classes[pool.machine_class].provider_data
            if data is None:
                continue  # a class of machines already registered with Omni: the provider makes none
            existing = tagged[MACHINE_REQUEST_TAG.format(set_id)]
            to_build = max((size if isinstance(size, int) else 0) - existing, 0)
            sets.append(MachineSetToBuild(set_id, pool.machine_class, data, size, existing, to_build))
    return sets


def pools_to_fill(spec: Spec, guests: tuple[Guest, ...]) -> dict[tuple[str, str], list[str]]:
    """(class, Proxmox pool) -> the machine sets whose VMs still to build go into that pool. The provider's syncVM
    puts every VM in the class's `pool`, or, unset, in the pool named after the VM's machine request set; it does
    so only when it makes a VM, so a set with nothing left to build needs nothing of the pools."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for machine_set in machine_sets_to_build(spec, guests):
        if machine_set.to_build:
            pool = machine_set.data.pool or machine_set.set_id
            wanted.setdefault((machine_set.class_id, pool), []).append(machine_set.set_id)
    return wanted


def privileges_on(permissions: dict[str, dict[str, int]], path: str) -> frozenset[str]:
    """What a GET /access/permissions answer says its token holds on path: the answer's entry for the path, else
    what the nearest listed path above it hands down (the privileges whose propagate flag is set). PVE lists
    every existing pool's path; one not made yet inherits from /pool or /."""
    if path in permissions:
        return frozenset(permissions[path])
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        if path in permissions:
            return frozenset(p for p, propagates in permissions[path].items() if propagates)
    return frozenset()


def _check_pools(spec: Spec, facts: ClusterFacts, report: Report) -> None:
    """What the provider needs of the pool each VM still to build goes into (its ensurePool, then the VM's create
    with `pool`): it lists the pools its token may see (Pool.Audit on /pool/<pool>); a pool it does not see it
    creates (Pool.Allocate on /pool/<pool>) if the pool is named after the machine request set (`pool` unset,
    or set to that name), and otherwise fails with "does not exist"."""
    wanted = pools_to_fill(spec, facts.guests)
    if not wanted or facts.pools is None:
        return
    pools: PoolFacts = facts.pools
    token = pools.provider_token
    unchecked: list[str] = []
    for (class_id, pool), set_ids in sorted(wanted.items()):
        where = f"machine_classes.{class_id}.provider_data.pool"
        creatable = pool in set_ids
        exists = pool in pools.existing
        path = f"/pool/{pool}"
        if not creatable and not exists:
            report.errors.append(
                f"{where}: pool {pool!r} does not exist; the provider creates only the pool named after a machine "
                f"request set, so create it in Proxmox (pveum pool add {pool}) or leave `pool` unset"
            )
            continue
        if pools.provider_permissions is None:
            unchecked.append(pool)
            continue
        held = privileges_on(pools.provider_permissions, path)
        may_see, may_create = "Pool.Audit" in held, "Pool.Allocate" in held
        named_in_class = getattr(spec.machine_classes[class_id].provider_data, "pool", None)
        label = f"pool {pool!r}" + ("" if pool == named_in_class else " (`pool` unset: its machine request set's)")
        if not exists and not may_create:
            needs = "Pool.Allocate" if may_see else "Pool.Allocate and Pool.Audit"
            why = "" if may_see else ": to create the pool, then to find it when it lists pools"
            report.errors.append(
                f"{where}: {label} does not exist and the provider's token {token} may not create it "
                f"(needs {needs} on {path}{why})"
            )
        elif not may_see:
            failure = '"already exists" when it tries to create it' if creatable else '"does not exist"'
            report.errors.append(
                f"{where}: the provider's token {token} may not see {label} (needs Pool.Audit on {path}): it finds "
                f"the pool by listing pools, and fails with {failure}"
            )
    if unchecked:
        why = (
            f"the preflight's token may not read its permissions ({pools.unread_because}; reading another token's "
            "needs Sys.Audit on /access, as PVEAuditor on / gives)"
            if token
            else "omni-scale:providerProxmoxTokenId is not set"
        )
        report.warnings.append(
            f"pools {', '.join(repr(p) for p in unchecked)}: the provider's token is not checked: {why}; the "
            "provider needs Pool.Audit on each pool to find it, and Pool.Allocate to create its machine request "
            "set's pool"
        )


def _storage_problems(storage: dict) -> list[str]:
    problems = []
    if not int(storage.get("enabled", 1)):
        problems.append(
            f"selector picks storage {storage['storage']}, which is disabled on this node "
            "(storage.cfg `disable`, or a `nodes` list without it)"
        )
    elif not int(storage.get("active", 0)):
        problems.append(
            f"selector picks storage {storage['storage']}, which is inactive "
            "(for Ceph RBD: is the Ceph cluster healthy?)"
        )
    if "images" not in str(storage.get("content", "")).split(","):
        problems.append(
            f"selector picks storage {storage['storage']}, which does not hold VM disk images (content lacks `images`)"
        )
    return problems


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
    for storage_id, content, what in (
        (lxc.root_disk.storage, "rootdir", "root disk"),
        (template_storage, "vztmpl", "template"),
    ):
        storage = storages.get(storage_id)
        if storage is None:
            report.errors.append(f"{where}: {what} storage {storage_id} does not exist on {lxc.node}")
        elif not int(storage.get("enabled", 1)) or not int(storage.get("active", 0)):
            report.errors.append(f"{where}: {what} storage {storage_id} is disabled or inactive on {lxc.node}")
        elif content not in str(storage.get("content", "")).split(","):
            report.errors.append(f"{where}: {what} storage {storage_id} does not hold `{content}` content")


def _check_dns(spec: Spec, facts: dict[str, NodeFacts], online: list[str], report: Report) -> None:
    expected = [str(a) for a in spec.proxmox.dns_resolvers or []]
    for node in online:
        resolvers = list(facts[node].resolvers)
        public = [r for r in resolvers if _is_public(r)]
        if public:
            report.errors.append(
                f"node {node}: public DNS resolver {', '.join(public)}; Talos VMs inherit the node's resolvers "
                "and must resolve Omni's split-horizon name to its LAN address, or SideroLink registration "
                "fails silently: use the LAN resolver"
            )
        elif expected and resolvers != expected:
            report.errors.append(f"node {node}: DNS resolvers {resolvers}, expected {expected} (proxmox.dns_resolvers)")


def _check_capacity(spec: Spec, facts: ClusterFacts, online: list[str], disk_storages: dict, report: Report) -> None:
    """Only what is still to be built needs room: per machine set, the machines the spec asks for less the VMs
    the provider already made for it (by its tag), placed one at a time as the provider would place them
    (a pinned node; otherwise the node with the fewest VMs of the set, then the largest share of free memory),
    each node's memory and cores and each storage's space compared with what is free now."""
    nodes = facts.nodes
    report.requested = spec.totals.model_dump()
    running = [g for g in facts.guests if g.running]
    free_memory = {n: nodes[n].free_memory_mb for n in online}
    free_cores = {n: nodes[n].maxcpu - sum(g.vcpus for g in running if g.node == n) for n in online}
    memory_share = {n: nodes[n].free_memory_fraction for n in online}
    of_set = Counter((tag, g.node) for g in facts.guests if g.kind == "qemu" for tag in g.tags)
    vms_on = Counter(g.node for g in facts.guests if g.kind == "qemu")
    free_disk: dict[tuple[str, str], int] = {}  # (storage, node or "shared") -> GB free
    readings: dict[tuple[str, str], list[tuple[bool, int]]] = {}
    for (_class, node), storages in sorted(disk_storages.items()):
        for storage in filter(None, storages):
            usable = bool(int(storage.get("enabled", 1)) and int(storage.get("active", 0)))
            readings.setdefault(_disk_slot(storage, node), []).append(
                (usable, int(storage.get("avail", 0) or 0) // GIB)
            )
    for slot, seen in readings.items():
        # A shared storage has one free space, which a node that has it disabled or excluded reports as 0:
        # read it where it is in use.
        free_disk[slot] = max(seen)[1]
    # memory and cores per node; disk per (storage, node or "shared") slot
    needs: dict[str, Counter] = {"memory": Counter(), "cores": Counter(), "disk": Counter()}
    sets_on: dict[object, Counter] = {}  # node or disk slot -> set id -> VMs still to build there
    machine_sets = {}
    for set_id, class_id, data, size, existing, to_build in machine_sets_to_build(spec, facts.guests):
        tag = MACHINE_REQUEST_TAG.format(set_id)
        placement: Counter = Counter()
        # With `ha`, the provider leaves existing VMs out of its counts (Proxmox HA owns placement); the ones it
        # is placing now still count (its reservations).
        counted = Counter() if data.ha is not None else of_set
        for _ in range(to_build):
            room = {n: free_memory[n] - needs["memory"][n] for n in online}
            node = _place(data, tag, online, counted, vms_on, memory_share, room)
            if node is None:
                break  # its node is missing or offline: reported already
            of_set[(tag, node)] += 1
            if counted is not of_set:
                counted[(tag, node)] += 1
            vms_on[node] += 1
            if nodes[node].maxmem:
                memory_share[node] -= data.memory * 1024 * 1024 / nodes[node].maxmem
            needs["memory"][node] += data.memory
            needs["cores"][node] += data.vcpus
            sets_on.setdefault(node, Counter())[set_id] += 1
            placement[node] += 1
            sizes = [data.disk_size] + [d.disk_size for d in data.additional_disks or []]
            for storage, gb in zip(disk_storages.get((class_id, node), []), sizes, strict=False):
                if storage is not None:
                    slot = _disk_slot(storage, node)
                    needs["disk"][slot] += gb
                    sets_on.setdefault(slot, Counter())[set_id] += 1
        machine_sets[set_id] = {
            "class": class_id,
            "wanted": size,
            "existing": existing,
            "to_build": to_build,
            "placement": dict(sorted(placement.items())),
        }
    report.readings = {
        "nodes": {n: {"free_memory_mb": free_memory[n], "free_cores": free_cores[n]} for n in online},
        "storages": {f"{s}@{scope}": gb for (s, scope), gb in sorted(free_disk.items())},
        "machine_sets": machine_sets,
    }
    for what, free, unit in (("memory", free_memory, "MB"), ("cores", free_cores, "cores")):
        short = [n for n in online if needs[what][n] > free[n]]
        if short:
            report.errors.append(
                f"capacity: not enough {what} for the VMs still to build: "
                + "; ".join(
                    f"{n} would get {_sets(sets_on[n])} ({needs[what][n]} {unit}) "
                    f"and has {max(free[n], 0)} {unit} free: "
                    f"{needs[what][n] - max(free[n], 0)} {unit} missing"
                    for n in short
                )
            )
    for slot in sorted(needs["disk"]):
        need, have = needs["disk"][slot], free_disk[slot]
        if need > have:
            storage_id, scope = slot
            where = storage_id if scope == "shared" else f"{storage_id} on {scope}"
            report.errors.append(
                f"capacity: storage {where} needs {need} GB for the VMs still to build "
                f"({_sets(sets_on[slot])}), has {have} GB free: {need - have} GB missing"
            )


def _place(
    data, tag: str, online: list[str], of_set: Counter, vms_on: Counter, memory_share: dict, room_mb: dict
) -> str | None:
    """The node the provider picks for one more VM of a set, by the class's placement strategy (its
    scheduler.selectNode; ties, which it leaves to its sort, by name)."""
    if data.node is not None:
        return data.node if data.node in online else None
    if not online:
        return None
    strategy = str(data.placement_strategy or "spread")
    if strategy == "fewer-vms":
        return min(online, key=lambda n: (vms_on[n], -memory_share[n], n))
    if strategy == "round-robin":
        return min(online, key=lambda n: (of_set[(tag, n)], n))
    if strategy == "binpack":
        fits = [n for n in online if room_mb[n] >= data.memory]
        if fits:
            return min(fits, key=lambda n: (room_mb[n], n))
        return min(online, key=lambda n: (-room_mb[n], n))
    return min(online, key=lambda n: (of_set[(tag, n)], -memory_share[n], n))


def _disk_slot(storage: dict, node: str) -> tuple[str, str]:
    """Where a disk's space comes from: a shared storage is one pool for every node."""
    return storage["storage"], "shared" if int(storage.get("shared", 0)) else node


def _sets(counts: Counter) -> str:
    return ", ".join(f"{count} VM{'s' if count != 1 else ''} of {set_id}" for set_id, count in sorted(counts.items()))


def _check_control_plane_spread(spec: Spec, facts: ClusterFacts, online: list[str], report: Report) -> None:
    """The prediction: where the control planes still to build would land (as the provider places them), with
    those that run already. Where they did land is ControlPlanePlacement's (components/proxmox/placement.py),
    after `up`."""
    for name, cluster in spec.clusters.items():
        size = cluster.control_plane.size
        if size < 2:
            continue
        data = spec.machine_classes[cluster.control_plane.machine_class].provider_data
        if data is None:
            continue  # machines already registered: the provider places none of them
        pinned = data.node
        if pinned is not None:
            report.warnings.append(
                f"cluster {name}: all {size} control planes are pinned to {pinned}; "
                "the cluster does not survive the loss of that node"
            )
            continue
        set_id = cluster.machine_sets(name)[0][0]
        planned = (report.readings.get("machine_sets") or {}).get(set_id) or {}
        if not planned.get("to_build"):
            continue  # nothing to place: what runs is reported after `up` and by the drift job
        tag = MACHINE_REQUEST_TAG.format(set_id)
        per_node = Counter(g.node for g in facts.guests if g.kind == "qemu" and tag in g.tags)
        per_node.update(planned.get("placement") or {})
        for node, count in sorted(per_node.items()):
            if count > (size - 1) // 2:
                report.warnings.append(
                    f"cluster {name}: {count} of its {size} control planes would run on {node} "
                    f"({len(online)} node(s) online); losing {node} would lose etcd quorum"
                )
