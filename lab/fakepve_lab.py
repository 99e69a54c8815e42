"""Serve a fake Proxmox VE API (fakepve) shaped like the operator's "Matrix" cluster, on loopback only.

    python lab/fakepve_lab.py --state-dir DIR [--host 127.0.0.1] [--port 0] [--time-scale 0]

Once listening it writes DIR/fakepve.json (url, api_url, token_id, token_secret, cafile, pid) and
removes it again on SIGTERM/SIGINT. Needs fakepve==0.5.0 with its crypto extra.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import secrets
import signal
import sys
import tempfile

from fakepve import FakePve
from fakepve import shapes
from fakepve.certs import make_cert

NODES = ('foxtrot', 'golf', 'hotel')
TOKEN_USER, TOKEN_NAME = 'pulumi@pve', 'omni-scale'
TOKEN_ID = '{0}!{1}'.format(TOKEN_USER, TOKEN_NAME)
TiB, GiB = 1024 ** 4, 1024 ** 3


def build_matrix(pve, token_secret=None):
    """Give a FakePve (not yet started) the Matrix shape; with token_secret, also the omni-scale API token."""
    pve.cluster_name = 'matrix'
    pve.nodes.clear()  # drop fakepve's default node pve1
    for node in NODES:
        pve.add_node(node)
    # fakepve 0.5.0 has no setting for node capacity: /nodes and /cluster/resources take it from this
    # (private) hook, for every node alike. The default is 4 CPUs / 8 GiB.
    pve._node_stats = lambda online: dict(cpu=0.05, maxcpu=32, mem=24 * GiB, maxmem=128 * GiB, disk=8 * GiB,
                                          maxdisk=100 * GiB, uptime=86400) if online else {}
    # local (dir) and local-lvm (lvmthin) are fakepve defaults; storages apply to every node.
    pve.add_ceph_storage('vm_ssd', pool='vm_ssd')
    pve.storages['vm_ssd']['total'] = 4 * TiB  # no 'avail' key: fakepve derives avail = total - used
    # Not modelled by fakepve (generic schema answers); added through its route tables (see fakepve.routing),
    # so the schema's parameter and permission checks still apply.
    pve._routes_matrix = lambda: [('GET', '/nodes/{node}/dns', _dns), ('GET', '/nodes/{node}/network', _network)]
    if token_secret is not None:
        pve.apitokens[TOKEN_ID] = token_secret
        pve.grant(TOKEN_ID, '/', *shapes.ROLES['PVEAuditor'])  # read-only, as PVE's PVEAuditor role on /
    return pve


async def _dns(values, user):
    # fakepve's generic answer is 192.0.2.53 / example.org; a fake's resolver stays on loopback.
    return {'search': 'matrix.lan', 'dns1': '127.0.0.53'}


async def _network(values, user):
    # fakepve's generic answer (vmbr0 on eno1), with the ?type= filter PVE applies and fakepve does not.
    kind = values.get('type')
    wanted = ('bridge', 'OVSBridge') if kind in ('any_bridge', 'any_local_bridge') else (kind,)
    return [iface for iface in shapes.networks({}) if kind is None or iface['type'] in wanted]


def is_loopback(host):
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network('127.0.0.0/8')
    except ValueError:
        return False


def write_private_json(path, data):
    """Write atomically (temp file in the same directory, then rename); mkstemp makes it 0600."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.fakepve-', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as out:
            json.dump(data, out, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


async def serve(args):
    state_dir = os.path.abspath(args.state_dir)
    os.makedirs(state_dir, exist_ok=True)
    # 'localhost' may resolve to ::1 too, which with port 0 would get a second, different port.
    host = '127.0.0.1' if args.host == 'localhost' else args.host
    certfile, keyfile, _ = make_cert(state_dir, hosts=(host,))
    token_secret = secrets.token_hex(16)
    # Nobody needs the password login; a random one closes fakepve's public default (root@pam / secret).
    pve = build_matrix(FakePve(password=secrets.token_hex(16), host=host, port=args.port), token_secret)
    pve.time_scale = args.time_scale
    await pve.start(certfile, keyfile)
    os.remove(keyfile)  # loaded; no need to leave it on disk
    info_path = os.path.join(state_dir, 'fakepve.json')
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        write_private_json(info_path, {'url': pve.url, 'api_url': pve.url + '/api2/json', 'token_id': TOKEN_ID,
                                       'token_secret': token_secret, 'cafile': certfile, 'pid': os.getpid()})
        print('fakepve listening on ' + pve.url, flush=True)
        await stop.wait()
    finally:
        if os.path.exists(info_path):
            os.remove(info_path)
        await pve.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--state-dir', required=True)
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0, help='0 picks a free port')
    parser.add_argument('--time-scale', type=float, default=0.0, help='real seconds per PVE second; 0: instant tasks')
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        print('fakepve_lab: refusing --host {0}: only 127.0.0.0/8 or localhost'.format(args.host), file=sys.stderr)
        return 2
    asyncio.run(serve(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
