"""The provider LXC's SSH server, for the lab: asyncssh on 127.0.0.1, commands run by bash in a directory
that plays the container's root home, with the lab's `docker` stand-in (lab/docker_standin.py) first on PATH.
Keys are checked as sshd checks them: the client's against ~/.ssh/authorized_keys, read at each login.

    python -m lab.ssh_standin --state-dir DIR [--port 0] [--container-file FILE]

Without --container-file the container is simply there: a host key and an authorized client key made per
start. With it, the server is the container that file describes (lab/fakepve_lab.py writes it when the CT is
created through the Proxmox API and removes it when the CT is destroyed, then sends SIGUSR1): while there is
no such container nothing listens (connection refused); a new container (a new `generation`) starts with an
empty root home, its own new host key, and the creation's `ssh-public-keys` as root's authorized_keys, as a
freshly created PVE container does; whatever the old one ran (the docker stand-in's containers) is stopped.

The container's own absolute directories, /opt, /srv and /var/lib (an operator's app directory may be
/opt/omni-provider), are overlays in this server's private mount namespace: the host's files show through, what
the container writes lands in DIR/rootfs/, and a new container starts with them empty. Needs root, or
CAP_SYS_ADMIN, as the lab's Omni does. A root that holds the lab itself or this interpreter is not overlaid.

Once listening it writes DIR/ssh.json (host, port, user, host_key, private_key_file, home, pid), mode 0600, and
rewrites it when the container changes; it removes it on SIGTERM/SIGINT. What it does not model: users (any
name logs in as the one home), PTYs, port forwarding, SFTP; the program needs none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import asyncssh

from lab.docker_standin import running_service_pids
from lab.processes import (
    CLONE_NEWNS,
    LIBC,
    MS_PRIVATE,
    MS_REC,
    checked_call,
    terminate,
    write_file_atomically,
    write_private_json,
)

HOST = "127.0.0.1"
RELOADED = "ssh.reloaded"  # the generation of the container now served, written once a SIGUSR1 is acted on
CONTAINER_ROOTS = ("/opt", "/srv", "/var/lib")
MNT_DETACH = 2


def _checked(result: int, what: str) -> None:
    checked_call(result, "lab ssh", what, "the lab needs root, or CAP_SYS_ADMIN")


def private_mount_namespace() -> None:
    """This process's own mount namespace, so the container's overlays are seen by its commands alone. Called
    before any thread starts: unshare(CLONE_NEWNS) refuses a process whose threads share its filesystem."""
    _checked(LIBC.unshare(CLONE_NEWNS), "create a mount namespace")
    _checked(LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make the mount namespace private")


def container_roots(state_dir: Path) -> list[str]:
    """The roots overlaid for the container: never one that holds the lab's state or the interpreter, whose
    files the host side must keep seeing and writing."""
    ours = [state_dir.resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve()]
    return [root for root in CONTAINER_ROOTS if not any(p.is_relative_to(root) for p in ours)]


def docker_wrapper(bin_dir: Path) -> None:
    """`docker` on the container's PATH: this interpreter running the stand-in."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "docker"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -P -m lab.docker_standin "$@"\n')
    wrapper.chmod(0o755)


def stop_containers(home: Path) -> None:
    """What the docker stand-in runs in this container (the provider), stopped with it."""
    for pid in running_service_pids(home):
        terminate(pid, group=True)


class Container:
    """The container being served: its root home, host key and SSH listener."""

    def __init__(self, state_dir: Path, port: int, container_file: Path | None):
        self.state_dir, self.container_file = state_dir, container_file
        self.home = state_dir / "root"
        self.bin_dir = state_dir / "bin"
        self.port = port
        # While no container listens, the port stays bound (not listening: a connection is refused, as to a CT that
        # is not there) so that nothing else on this machine takes it meanwhile: labs run side by side (make test).
        self.reservation: socket.socket | None = None
        if container_file is not None:
            self._reserve()
        self.overlaid = container_roots(state_dir)
        self.mounted = False
        self.server = None
        self.generation = None
        self.host_key = None
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.private_key_file = state_dir / "client_key"
        write_file_atomically(self.private_key_file, client_key.export_private_key())
        self.client_public_key = client_key.export_public_key().decode().strip()
        self.env = {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "OMNI_SCALE_COMPOSE_SCHEMA": os.environ.get("OMNI_SCALE_COMPOSE_SCHEMA", ""),
            # What the docker stand-in runs as containers (lab/provider_standin.py: containers()).
            "OMNI_SCALE_LAB_CONTAINERS": os.environ.get("OMNI_SCALE_LAB_CONTAINERS", ""),
        }

    def _new_root(self, authorized_keys: str) -> None:
        if self.home.exists():
            stop_containers(self.home)
            shutil.rmtree(self.home)
        self._new_filesystem()
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        write_file_atomically(self.home / ".ssh" / "authorized_keys", authorized_keys.strip() + "\n")
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")

    def _new_filesystem(self) -> None:
        """Fresh, empty overlays over the container's own roots (the old container's files go with it)."""
        rootfs = self.state_dir / "rootfs"
        if self.mounted:  # the old container's
            for root in self.overlaid:
                _checked(LIBC.umount2(root.encode(), MNT_DETACH), f"unmount the old container's {root}")
        if rootfs.exists():
            shutil.rmtree(rootfs)
        for root in self.overlaid:
            upper, work = rootfs / root.strip("/") / "upper", rootfs / root.strip("/") / "work"
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            options = f"lowerdir={root},upperdir={upper},workdir={work}"
            _checked(LIBC.mount(b"overlay", root.encode(), b"overlay", 0, options.encode()), f"overlay {root}")
        self.mounted = True

    async def _listen(self) -> None:
        server = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                # sshd reads authorized_keys at each login: a key written there a moment ago is accepted now.
                try:
                    keys = asyncssh.read_authorized_keys(str(server.home / ".ssh" / "authorized_keys"))
                except (OSError, ValueError):
                    return False
                return keys.validate(key, "", "127.0.0.1") is not None

        sock, self.reservation = self.reservation or self._bound(), None
        self.port = sock.getsockname()[1]
        self.server = await asyncssh.listen(
            sock=sock,
            server_factory=Server,
            server_host_keys=[self.host_key],
            process_factory=self.handle,
            encoding=None,
            allow_scp=False,
            sftp_factory=None,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
        )

    def _bound(self) -> socket.socket:
        sock = socket.socket()
        # The port again after a container is gone, while its closed connections linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        return sock

    def _reserve(self) -> None:
        self.reservation = self._bound()
        self.port = self.reservation.getsockname()[1]

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
            if self.container_file is not None:
                self._reserve()

    async def handle(self, process: asyncssh.SSHServerProcess) -> None:
        if not process.command:
            process.stderr.write("lab ssh: interactive shells are not served\n")
            process.exit(1)
            return
        with open(self.state_dir / "commands.log", "a") as log:  # what ran, for tests (stdin is not logged)
            log.write(json.dumps(process.command) + "\n")
        # Whole stdin first, then the command: the program always sends its input and EOF at once, and
        # streaming both ways races a fast command's exit against the EOF (a broken pipe drops the session).
        stdin = await process.stdin.read()
        local = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            process.command,
            cwd=self.home,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await local.communicate(stdin)
        process.stdout.write(stdout)
        process.stderr.write(stderr)
        process.exit(local.returncode)

    async def start(self) -> None:
        docker_wrapper(self.bin_dir)
        if self.container_file is None:
            self._new_root(self.client_public_key)  # a container made with the lab's client key
            await self._listen()
        else:
            await self.reload()
        self.write_info()

    async def reload(self) -> None:
        """The container the file describes now: gone (nothing listens), the same, or a new one."""
        described = json.loads(self.container_file.read_text()) if self.container_file.exists() else None
        generation = described and described["generation"]
        if generation != self.generation:
            await self._close()
            if described is not None:
                self._new_root(described.get("ssh_public_keys", ""))
                await self._listen()
            elif self.home.exists():
                stop_containers(self.home)
            self.generation = generation
        self.write_info()
        write_private_json(self.state_dir / RELOADED, {"generation": generation})

    def write_info(self) -> None:
        write_private_json(
            self.state_dir / "ssh.json",
            {
                "host": HOST,
                "port": self.port,
                "user": "root",
                "pid": os.getpid(),
                "home": str(self.home),
                "host_key": self.host_key.export_public_key().decode().strip() if self.host_key else "",
                "private_key_file": str(self.private_key_file),
                "generation": self.generation,
            },
        )


async def serve(state_dir: Path, port: int, container_file: Path | None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    container = Container(state_dir, port, container_file)
    await container.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(container.reload()))
    print(f"lab ssh on {HOST}:{container.port}", flush=True)
    try:
        await stop.wait()
    finally:
        (state_dir / "ssh.json").unlink(missing_ok=True)
        await container._close()
        if container.home.exists():
            stop_containers(container.home)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--container-file",
        type=Path,
        default=None,
        help="the CT this server is (written by lab/fakepve_lab.py); none: always there",
    )
    args = parser.parse_args(argv)
    private_mount_namespace()
    asyncio.run(serve(Path(args.state_dir).resolve(), args.port, args.container_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
