"""Serve a fake Proxmox VE API (fakepve) shaped like the operator's "Matrix" cluster, on loopback only.

    python -m lab.fakepve_lab --state-dir DIR [--host 127.0.0.1] [--port 0] [--time-scale 0] [--seed 1] [--still]
                              [--container-hook LXC_DIR]

Once listening it writes DIR/fakepve.json (url, api_url, token_id, token_secret, cafile, pid, root_password,
provider_token_id, provider_token_secret) and
removes it again on SIGTERM/SIGINT. Needs fakepve==0.5.0 with its crypto extra.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import random
import secrets
import signal
import sys
import time

from fakepve import routing, shapes
from fakepve.certs import make_cert
from fakepve.routing import split_list
from fakepve.storage import BLOCK_NAME, spec_of

from lab.fakepve_access import AccessControlledPve
from lab.processes import write_private_json

NODES = ("foxtrot", "golf", "hotel")
TOKEN_USER, TOKEN_NAME = "pulumi@pve", "omni-scale"
TOKEN_ID = f"{TOKEN_USER}!{TOKEN_NAME}"
# A token as an operator would have made one for the Omni Proxmox provider by hand (Administrator on /): what the
# provider-level tests hand the provider stand-in, and the lab reads the provider's VMs with. The lab stack does not
# use it: the program makes the provider's own identity (infra_provider.proxmox_identity).
PROVIDER_TOKEN_ID = "lab-provider@pve!provider"
# The container templates on 'local', as `pveam download` leaves them: the spec's provider_lxc names the first.
CT_TEMPLATES = (
    "vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
    "vztmpl/debian-13-standard_13.1-2_amd64.tar.zst",
    "vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
)
TiB, GiB = 1024**4, 1024**3
DEFAULT_DNS = {"search": "matrix.lan", "dns1": "127.0.0.53"}
FILL_VMID = 999999999  # fill_storage()'s filler volume is named for the highest VMID PVE allows: no guest has it


# What a Matrix node runs besides its guests (PVE itself, Ceph's OSD and monitor), and its capacity.
HOST_MEMORY = 8 * GiB
NODE_CAPACITY = {"maxcpu": 32, "maxmem": 128 * GiB, "host_mem": HOST_MEMORY}


class LiveReadings:
    """A live cluster's readings move by the minute: each node's memory in use and CPU load, and each storage's
    used space, walk randomly between requests, seeded (one seed, one sequence of answers) and bounded (never
    more than the bound away from what the guests and volumes account for)."""

    def __init__(self, seed=1, memory_bytes=2 * GiB, storage_bytes=16 * GiB, cpu=0.2):
        self.rng = random.Random(seed)
        self.bounds = {"memory": memory_bytes, "storage": storage_bytes, "cpu": cpu}
        self.offsets = {}

    def step(self, kind, key):
        """Moves (kind, key)'s offset by up to a quarter of its bound, within [-bound, bound]; returns it."""
        bound = self.bounds[kind]
        offset = self.offsets.get((kind, key), 0) + self.rng.uniform(-bound / 4.0, bound / 4.0)
        self.offsets[(kind, key)] = max(-bound, min(bound, offset))
        return self.offsets[(kind, key)]


def build_matrix(pve, token_secret=None, readings=None, provider_token_secret=None):
    """Give a FakePve (not yet started) the Matrix shape; with token_secret, also the omni-scale API token, and
    with provider_token_secret the infra provider's own (the one in its config.yaml, allowed to make VMs).
    readings (a LiveReadings) makes node and storage readings move between requests; None keeps them still."""
    pve.cluster_name = "matrix"
    pve.nodes.clear()  # drop fakepve's default node pve1
    for node in NODES:
        pve.add_node(node)
    # The lab's own per-node state, read by the handlers below on every request (see the fault functions).
    pve.matrix = {"capacity": {}, "dns": {}, "removed_bridges": {}, "readings": readings, "absent_to_provider": set()}
    # fakepve 0.5.0 reports every node alike (4 CPUs, 8 GiB, 2 GiB in use whatever runs). A PVE node's `mem` is
    # what runs on it: these wrappers of the hand-written GET /nodes and /cluster/resources routes (bound when
    # start() builds the app, so in place before then) give each online node its capacity, its host's own use
    # plus the memory of its running guests, and the readings' drift.
    pve._nodes = _with_live_nodes(pve, pve._nodes)
    pve._resources = _with_live_nodes(pve, pve._resources)
    pve._space = _with_live_space(pve, pve._space)
    pve._record = _with_caller(pve, pve._record)
    pve._permissions = _with_audit_for_others(pve, pve._permissions)
    # local (dir) and local-lvm (lvmthin) are fakepve defaults; storages apply to every node.
    pve.add_ceph_storage("vm_ssd", pool="vm_ssd")
    pve.storages["vm_ssd"]["total"] = 4 * TiB  # no 'avail' key: fakepve derives avail = total - used
    # Not modelled by fakepve (generic schema answers); added through its route tables (see fakepve.routing),
    # so the schema's parameter and permission checks still apply.
    pve._routes_matrix = lambda: [
        ("GET", "/nodes/{node}/dns", _dns_handler(pve)),
        ("GET", "/nodes/{node}/network", _network_handler(pve)),
    ]
    for template in CT_TEMPLATES:
        pve.storages["local"].setdefault("volumes", {})[template] = {
            "content": "vztmpl",
            "format": "tzst",
            "size": 126 * 1024**2,
            "ctime": 0,
        }
    if token_secret is not None:
        pve.apitokens[TOKEN_ID] = token_secret
        pve.grant(TOKEN_ID, "/", *shapes.ROLES["PVEAuditor"])  # read-only, as PVE's PVEAuditor role on /
    if provider_token_secret is not None:
        pve.apitokens[PROVIDER_TOKEN_ID] = provider_token_secret
        pve.grant(PROVIDER_TOKEN_ID, "/", *shapes.ROLES["Administrator"])
    return pve


def link_containers(pve, hook_dir):
    """A container created or destroyed through the API is one the lab's SSH server (lab/ssh_standin.py) becomes
    or stops being: DIR/ct-VMID.json describes it (a new generation per creation, its ssh-public-keys), and the
    SSH server, told with SIGUSR1, has acted on it before the API answers."""
    create, destroy = pve._lxc_create, pve._lxc_destroy

    async def created(user, v):
        upid = await create(user, v)
        tell_ssh_server(
            hook_dir,
            int(v["vmid"]),
            {"generation": secrets.token_hex(8), "node": v["node"], "ssh_public_keys": v.get("ssh-public-keys", "")},
        )
        return upid

    async def destroyed(user, v):
        upid = await destroy(user, v)
        tell_ssh_server(hook_dir, int(v["vmid"]), None)
        return upid

    pve._lxc_create, pve._lxc_destroy = created, destroyed


def tell_ssh_server(hook_dir, vmid, described):
    path = os.path.join(hook_dir, f"ct-{vmid}.json")
    if described is None:
        if os.path.exists(path):
            os.remove(path)
    else:
        write_private_json(path, described)
    info = os.path.join(hook_dir, "ssh.json")
    if not os.path.exists(info):
        return  # no SSH server plays this container
    with open(info) as f:
        pid = json.load(f)["pid"]
    done = os.path.join(hook_dir, "ssh.reloaded")
    if os.path.exists(done):
        os.remove(done)
    os.kill(pid, signal.SIGUSR1)
    generation = described and described["generation"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # another process acting on the signal: nothing to wait on but its answer
        if os.path.exists(done):
            with open(done) as f:
                if json.load(f).get("generation") == generation:
                    return
        time.sleep(0.02)
    raise RuntimeError("the lab SSH server did not take the new container within 10s")


def guest_memory(pve, node):
    """Bytes of memory the running guests of a node hold: a VM's or container's configured memory (MB)."""
    total = 0
    for guest in list(pve.vms) + list(pve.cts):
        if guest.node == node and guest.status == "running":
            total += int(str(guest.config.get("memory", 512)).split("=")[-1]) * 1024 * 1024
    return total


def node_stats(pve, node):
    """What GET /nodes and /cluster/resources say of an online node now."""
    capacity = dict(NODE_CAPACITY, **pve.matrix["capacity"].get(node, {}))
    readings = pve.matrix["readings"]
    running = sum(1 for g in list(pve.vms) + list(pve.cts) if g.node == node and g.status == "running")
    mem = capacity["host_mem"] + guest_memory(pve, node) + (readings.step("memory", node) if readings else 0)
    cpu = 0.03 + 0.02 * running + (readings.step("cpu", node) if readings else 0)
    return {
        "maxcpu": capacity["maxcpu"],
        "maxmem": capacity["maxmem"],
        "mem": int(max(0, min(capacity["maxmem"], mem))),
        "cpu": round(max(0.0, min(1.0, cpu)), 4),
    }


def _with_live_nodes(pve, handler):
    """Wrap fakepve's GET /nodes or /cluster/resources handler: online node items get node_stats(); a node absent
    for the infra provider (node-absent-at-provisioning) is left out of its answers only."""

    async def serve(request):
        response = await handler(request)
        if response.status != 200:
            return response
        data = json.loads(response.text)["data"]
        if is_providers(caller_of(request)):
            data = [
                item
                for item in data
                if item.get("type", "node") != "node" or item.get("node") not in pve.matrix["absent_to_provider"]
            ]
        for item in data:
            if item.get("type") == "node" and item.get("status") == "online":
                item.update(node_stats(pve, item["node"]))
        return routing.ok(data)

    return serve


def node_absent_at_provisioning(pve, node, absent="1"):
    """The node is not a cluster member when the infra provider places VMs (taken out for a reinstall, then
    re-added), and is there for everyone else: the provider spreads over the nodes it is shown. (A node that is
    listed but offline does not crowd the others: the provider's pickNode reads every listed node's VMs and fails,
    to be retried, while one does not answer.) The window between the program's preflight, which saw every node,
    and the provider's placement, made deterministic. 'node-absent-at-provisioning NODE 0' ends it."""
    _need_node(pve, node)
    (pve.matrix["absent_to_provider"].add if absent == "1" else pve.matrix["absent_to_provider"].discard)(node)


def caller_of(request) -> str:
    """Who asked: an API token's id, or "ticket" for a login (root@pam's)."""
    auth = request.headers.get("Authorization", "")
    return auth[len("PVEAPIToken=") :].partition("=")[0] if auth.startswith("PVEAPIToken=") else "ticket"


def is_providers(caller: str) -> bool:
    """The infra provider's requests: any token but the program's read-only one (the provider runs on the token the
    program made for it, or on the lab's hand-made one); the program's are that token's and root@pam's login's."""
    return caller not in (TOKEN_ID, "ticket")


def _with_caller(pve, record):
    """fakepve's request log, with who asked (an API token's id, or a login's ticket): the program's requests
    and the infra provider's, which the lab also runs, are told apart when they are counted."""
    pve.matrix["callers"] = []

    def recorded(request, body):
        record(request, body)
        pve.matrix["callers"].append(caller_of(request))
        del pve.matrix["callers"][: max(0, len(pve.matrix["callers"]) - len(pve.requests))]

    return recorded


def _with_live_space(pve, space):
    """Wrap fakepve's (total, used, avail) of a storage: used moves with the readings (other writers, thin
    provisioning, Ceph's own accounting), within the storage's size."""

    def live(store):
        total, used, avail = space(store)
        readings = pve.matrix["readings"]
        if not readings or not total:
            return total, used, avail
        name = next((n for n, s in pve.storages.items() if s is store), "")
        shift = int(readings.step("storage", name))
        shift = max(-used, min(avail, shift))  # never below empty, never beyond full
        return total, used + shift, avail - shift

    return live


def _with_audit_for_others(pve, handler):
    """GET /access/permissions as PVE answers it: anyone may read their own permissions (a user also its tokens'),
    another's need Sys.Audit on /access; fakepve 0.5.0 answers anyone."""

    async def permissions(values, user):
        asked = values.get("userid")
        if asked and asked != user and asked.split("!")[0] != user:
            pve.require(user, "/access", "Sys.Audit")
        return await handler(values, user)

    return permissions


def _dns_handler(pve):
    async def dns(values, user):
        # fakepve's generic answer is 192.0.2.53 / example.org; a fake's resolver stays on loopback.
        return pve.matrix["dns"].get(values["node"], DEFAULT_DNS)

    return dns


def _network_handler(pve):
    async def network(values, user):
        # fakepve's generic answer (vmbr0 on eno1), with the ?type= filter PVE applies and fakepve does not,
        # less the bridges remove_bridge() took off this node.
        kind = values.get("type")
        wanted = ("bridge", "OVSBridge") if kind in ("any_bridge", "any_local_bridge") else (kind,)
        gone = pve.matrix["removed_bridges"].get(values["node"], ())
        return [
            iface
            for iface in shapes.networks({})
            if iface["iface"] not in gone and (kind is None or iface["type"] in wanted)
        ]

    return network


# ---------------------------------------------------------------- faults
#
# Each changes a FakePve built by build_matrix, before or after start(); the next API answer shows it (the
# handlers read this state per request). On a running server, call them on its event loop (see
# tests/fakepve_matrix.py: Matrix.call) so no request sees a half-made change.


def _need_node(pve, node):
    if node not in pve.nodes:
        raise KeyError(f"no node {node!r} in the fake cluster")


def take_node_offline(pve, node):
    """GET /nodes: the node has status 'offline' and no cpu/maxcpu/mem/maxmem fields; any /nodes/{node}/...
    request answers HTTP 595 'No route to host'."""
    _need_node(pve, node)
    pve.set_node_offline(node)


def remove_storage_from_node(pve, storage, node):
    """PVE's storage.cfg `nodes` restriction (fakepve models it): on that node GET /nodes/{node}/storage still
    lists the storage, as real PVE does, but with enabled 0, active 0, total/used/avail 0; with ?content=images it
    is left out. The other nodes are unchanged."""
    _need_node(pve, node)
    store = pve.storages[storage]
    keep = [n for n in (split_list(store.get("nodes")) or sorted(pve.nodes)) if n != node]
    if not keep:
        raise ValueError("an empty nodes list means every node in PVE; use disable_storage()")
    store["nodes"] = ",".join(keep)


def ceph_down(pve):
    """fakepve's own Ceph-down fault. GET /nodes/{n}/storage then still lists vm_ssd (no error) with enabled 1,
    active 0, total 0, used 0, avail 0 (and no used_fraction), on every node; its content listing answers 500
    'rbd error: rbd: listing images failed: (110) Connection timed out', /cluster/ceph/status 500
    'rados_connect failed - Connection timed out'; RBD-backed VM starts and disk changes end in TASK ERROR."""
    pve.ceph_down()


def fill_storage(pve, storage, avail_bytes=0):
    """GET /nodes/{n}/storage: the storage keeps its total, avail is avail_bytes and used = total - avail (a filler
    volume, vm-999999999-disk-fill, takes the space); new disks beyond avail_bytes fail 'No space left on device'."""
    store = pve.storages[storage]
    total = pve._space(store)[0]  # fakepve's own (total, used, avail) arithmetic
    volumes = store.setdefault("volumes", {})
    filler = ("vm-{0}-disk-fill" if store.get("type") in BLOCK_NAME else "{0}/vm-{0}-disk-fill.raw").format(FILL_VMID)
    volumes.pop(filler, None)
    size = total - sum(int(vol.get("size") or 0) for vol in volumes.values()) - avail_bytes
    if size < 0:
        raise ValueError(f"{storage} has less than {avail_bytes} bytes free already")
    volumes[filler] = {"content": "images", "format": "raw", "size": size, "ctime": int(time.time())}
    store.update(total=total, avail=avail_bytes)


def remove_bridge(pve, node, bridge):
    """GET /nodes/{node}/network (any ?type=) no longer lists the bridge on that node; other nodes still do."""
    _need_node(pve, node)
    pve.matrix["removed_bridges"].setdefault(node, set()).add(bridge)


def set_node_dns(pve, node, servers):
    """GET /nodes/{node}/dns answers {'search': 'matrix.lan', 'dns1': servers[0], ...} (1 to 3 resolvers, unset
    ones absent, as PVE) on that node only. The addresses are data the fake returns; nothing contacts them."""
    _need_node(pve, node)
    if not 1 <= len(servers) <= 3:
        raise ValueError("PVE has dns1..dns3: give 1 to 3 resolvers")
    pve.matrix["dns"][node] = dict(
        {"search": DEFAULT_DNS["search"]}, **{f"dns{i}": str(s) for i, s in enumerate(servers, 1)}
    )


def set_node_capacity(pve, node, maxcpu, maxmem, host_mem):
    """GET /nodes and /cluster/resources?type=node: this node (while online) has maxcpu CPUs and maxmem bytes, of
    which its host uses host_mem besides its running guests; the others keep the Matrix default (32 CPUs,
    128 GiB, 8 GiB for the host)."""
    _need_node(pve, node)
    if not 0 <= host_mem <= maxmem:
        raise ValueError("host_mem must be between 0 and maxmem")
    pve.matrix["capacity"][node] = {"maxcpu": int(maxcpu), "maxmem": int(maxmem), "host_mem": int(host_mem)}


def disable_storage(pve, storage):
    """storage.cfg `disable`: on every node GET /nodes/{n}/storage lists it with enabled 0, active 0,
    total/used/avail 0; ?enabled=1 or ?content=... leave it out."""
    pve.storages[storage]["disable"] = 1


def set_storage_content(pve, storage, content):
    """storage.cfg `content` (e.g. 'rootdir': no 'images'); shown on every node in GET /nodes/{n}/storage's
    content field, and ?content=images leaves the storage out. Types the storage's plugin lacks are refused."""
    store = pve.storages[storage]
    wanted = split_list(content if isinstance(content, str) else ",".join(content))
    bad = [c for c in wanted if c not in spec_of(store)["content"]]
    if bad or not wanted:
        raise ValueError("{} ({}) cannot hold content {}".format(storage, store.get("type"), bad or "''"))
    store["content"] = ",".join(wanted)


def add_pool(pve, name):
    """`pveum pool add NAME`: GET /pools lists it (for a token with Pool.Audit on it), and VMs may be created in it."""
    if name in pve.pools:
        raise ValueError(f"pool {name!r} exists already")
    pve.pools[name] = set()
    pve.pool_info[name] = {"comment": None, "storage": set()}


def revoke(pve, token_id, *privileges):
    """The token no longer holds these privileges on any path (an operator gave it a narrower role): what PVE then
    refuses it, and what GET /access/permissions says of it, follow."""
    for _path, held in pve.acl.get(token_id, []):
        held.difference_update(privileges)


def ceph_up(pve):
    """Undo ceph_down(): Ceph healthy, RBD storages active again."""
    pve.ceph.update(down=False, health="HEALTH_OK")
    for store in pve.storages.values():
        if store.get("type") == "rbd":
            store["active"] = 1


# What `python -m lab.ctl fault NAME ARGS...` may ask of a running lab fakepve (see apply_faults).
FAULTS = {
    "node-offline": take_node_offline,
    "node-online": lambda pve, node: pve.set_node_offline(node, False),
    "node-absent-at-provisioning": node_absent_at_provisioning,
    "ceph-down": ceph_down,
    "ceph-up": ceph_up,
    "storage-full": lambda pve, storage: fill_storage(pve, storage),  # no size: full
    "storage-free": lambda pve, storage, avail_gib: fill_storage(pve, storage, int(avail_gib) * GiB),
    "flaky-network": lambda pve, drop_rate: pve.flaky_network(drop_rate=float(drop_rate), seed=7),
    "token-expired": lambda pve: pve.apitokens.pop(TOKEN_ID, None),
    "pool-add": add_pool,
    "provider-token-without": lambda pve, *privileges: revoke(pve, PROVIDER_TOKEN_ID, *privileges),
    "node-capacity": lambda pve, node, maxcpu, maxmem_gib, host_gib: set_node_capacity(
        pve, node, int(maxcpu), int(maxmem_gib) * GiB, int(host_gib) * GiB
    ),
}


def apply_faults(pve, state_dir):
    """SIGUSR1: apply the faults listed in state_dir/faults.json ([[name, arg...], ...]), then write their
    sequence number to state_dir/faults.done, which is what the caller waits for."""
    path = os.path.join(state_dir, "faults.json")
    with open(path) as f:
        request = json.load(f)
    for name, *args in request["faults"]:
        if name == "dump-requests":  # not a fault: what the fake was asked so far, for benchmarks and tests
            write_private_json(
                os.path.join(state_dir, "requests.json"),
                [
                    [method, path, caller]
                    for (method, path, _body), caller in zip(pve.requests, pve.matrix["callers"], strict=True)
                ],
            )
            continue
        FAULTS[name](pve, *args)
    write_private_json(os.path.join(state_dir, "faults.done"), {"seq": request["seq"]})


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        return False


async def serve(args):
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    # 'localhost' may resolve to ::1 too, which with port 0 would get a second, different port.
    host = "127.0.0.1" if args.host == "localhost" else args.host
    certfile, keyfile, _ = make_cert(state_dir, hosts=(host,))
    token_secret, provider_token_secret = secrets.token_hex(16), secrets.token_hex(16)
    # root@pam creates the provider LXC (keyctl and device passthrough are root-only in PVE); a random
    # password per start closes fakepve's public default (root@pam / secret).
    root_password = secrets.token_hex(16)
    readings = None if args.still else LiveReadings(seed=args.seed)
    pve = build_matrix(
        AccessControlledPve(password=root_password, host=host, port=args.port),
        token_secret,
        readings,
        provider_token_secret,
    )
    if args.container_hook:
        link_containers(pve, os.path.abspath(args.container_hook))
    pve.time_scale = args.time_scale
    pve.max_requests = 200_000  # keep a whole benchmark run: it counts them
    await pve.start(certfile, keyfile)
    os.remove(keyfile)  # loaded; no need to leave it on disk
    info_path = os.path.join(state_dir, "fakepve.json")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Handled on the server's loop, between two requests, like every other change to the fake.
    loop.add_signal_handler(signal.SIGUSR1, apply_faults, pve, state_dir)
    try:
        write_private_json(
            info_path,
            {
                "url": pve.url,
                "api_url": pve.url + "/api2/json",
                "token_id": TOKEN_ID,
                "token_secret": token_secret,
                "cafile": certfile,
                "pid": os.getpid(),
                "root_password": root_password,
                "provider_token_id": PROVIDER_TOKEN_ID,
                "provider_token_secret": provider_token_secret,
            },
        )
        print("fakepve listening on " + pve.url, flush=True)
        await stop.wait()
    finally:
        if os.path.exists(info_path):
            os.remove(info_path)
        await pve.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--time-scale", type=float, default=0.0, help="real seconds per PVE second; 0: instant tasks")
    parser.add_argument("--seed", type=int, default=1, help="the moving readings' random seed")
    parser.add_argument("--still", action="store_true", help="readings that never move (a kinder lab than Matrix)")
    parser.add_argument("--container-hook", help="the lab SSH server's directory: containers made here are it")
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        print(f"fakepve_lab: refusing --host {args.host}: only 127.0.0.0/8 or localhost", file=sys.stderr)
        return 2
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
