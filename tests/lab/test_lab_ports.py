"""The port a lab server is started on (etcd, kube-apiserver, Omni's forward take a number) is found free below the
kernel's ephemeral range: an outgoing connection, made by any test running beside it, is never given one there."""

import socket
from pathlib import Path

from lab.processes import free_port_below_ephemeral


def test_a_servers_port_is_free_and_below_the_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port_below_ephemeral() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    assert len(ports) > 1  # picked at random: two labs starting together rarely pick the same
    with socket.socket() as server:
        server.bind(("127.0.0.1", ports.pop()))  # free: the probe let it go
