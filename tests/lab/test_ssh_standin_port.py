"""The lab SSH server's port while its container is not there: refused, as connecting to a CT that does not exist
is, and kept, so that another lab running beside it (make test runs test files side by side) cannot take it and
leave the container nowhere to listen when it is created."""

import errno
import socket

import pytest

from tests.lxc_host import running_lxc_host


def answers_ssh(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return conn.recv(8).startswith(b"SSH-2.0")


def refused_and_kept(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10)
    with socket.socket() as other, pytest.raises(OSError) as taken:
        other.bind(("127.0.0.1", port))
    assert taken.value.errno == errno.EADDRINUSE


def test_the_port_is_refused_and_kept_while_no_container_is_there(tmp_path):
    with running_lxc_host(tmp_path, container_file=True, created=False) as host:
        port = host["port"]
        refused_and_kept(port)  # before the first container: the CI failure this guards against
        host["create_container"]()
        assert host["port"] == port and answers_ssh(port)
        host["destroy_container"]()
        refused_and_kept(port)
        host["create_container"]()
        assert host["port"] == port and answers_ssh(port)
