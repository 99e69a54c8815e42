"""The provider LXC's SSH server, for the lab: asyncssh on 127.0.0.1, a host key and an authorized
client key made per start, and commands run by bash in a directory that plays the container's root
home, with the lab's `docker` stand-in (lab/docker_standin.py) first on PATH.

    python lab/ssh_standin.py --state-dir DIR [--port 0]

Once listening it writes DIR/ssh.json (host, port, user, host_key, private_key_file, home, pid), mode
0600, and removes it on SIGTERM/SIGINT. What it does not model: users (any name logs in as the one
home), PTYs, port forwarding, SFTP; the program needs none of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncssh

if __package__ in (None, ""):  # run as a script by lab.ctl
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.processes import write_file_atomically, write_private_json  # noqa: E402

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"


def docker_wrapper(bin_dir: Path) -> None:
    """`docker` on the container's PATH: this interpreter running the stand-in."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / "docker"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'docker_standin.py'} \"$@\"\n")
    wrapper.chmod(0o755)


async def serve(state_dir: Path, port: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    home = state_dir / "root"
    home.mkdir(exist_ok=True)
    bin_dir = state_dir / "bin"
    docker_wrapper(bin_dir)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    private_key_file = state_dir / "client_key"
    write_file_atomically(private_key_file, client_key.export_private_key())
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "OMNI_SCALE_COMPOSE_SCHEMA": os.environ.get("OMNI_SCALE_COMPOSE_SCHEMA", "")}

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        if not process.command:
            process.stderr.write("lab ssh: interactive shells are not served\n")
            process.exit(1)
            return
        with open(state_dir / "commands.log", "a") as log:  # what ran, for tests (stdin is not logged)
            log.write(json.dumps(process.command) + "\n")
        # Whole stdin first, then the command: the program always sends its input and EOF at once, and
        # streaming both ways races a fast command's exit against the EOF (a broken pipe drops the session).
        stdin = await process.stdin.read()
        local = await asyncio.create_subprocess_exec(
            "bash", "-c", process.command, cwd=home, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await local.communicate(stdin)
        process.stdout.write(stdout)
        process.stderr.write(stderr)
        process.exit(local.returncode)

    server = await asyncssh.listen(HOST, port, server_host_keys=[host_key], authorized_client_keys=authorized,
                                   process_factory=handle, encoding=None, allow_scp=False, sftp_factory=None,
                                   agent_forwarding=False, x11_forwarding=False, allow_pty=False)
    bound_port = server.sockets[0].getsockname()[1]
    info_path = state_dir / "ssh.json"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        write_private_json(info_path, {
            "host": HOST, "port": bound_port, "user": "root", "pid": os.getpid(), "home": str(home),
            "host_key": host_key.export_public_key().decode().strip(),
            "private_key_file": str(private_key_file)})
        print(f"lab ssh listening on {HOST}:{bound_port}", flush=True)
        await stop.wait()
    finally:
        info_path.unlink(missing_ok=True)
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(serve(Path(args.state_dir).resolve(), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
