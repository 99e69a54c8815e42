"""Starting the lab's servers: each its own session (a signal to the lab's shell does not reach it), its
output in DIR/NAME.log, no stdin."""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# unshare(2)/setns(2) and mount(2) flags (the os module has no unshare or mount before Python 3.12)
CLONE_NEWNET, CLONE_NEWNS = 0x40000000, 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
LIBC = ctypes.CDLL(None, use_errno=True)


def checked_call(result: int, who: str, what: str, needs: str) -> None:
    """A libc call's result: on failure, the lab stops saying what it could not do, why, and what it needs."""
    if result != 0:
        raise SystemExit(f"{who}: cannot {what}: {os.strerror(ctypes.get_errno())} ({needs})")


def spawn(directory: Path, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    with open(directory / f"{name}.log", "ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )


def pid_alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child (started in this process), or it lingers as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # Exited but not reaped (its parent is gone and nobody reaps orphans here): a zombie is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def started_at(pid: int) -> int | None:
    """When the process started (clock ticks since boot). With its pid, what tells it from a later process that was
    given the same pid once it had gone: pids wrap (at 32768 here), and a long lab run starts many processes."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def still_running(pid: int | None, started: int | None) -> bool:
    """The process recorded as (pid, started) runs: alive, and not another that took its pid (a record without
    `started` is taken at its pid's word)."""
    return bool(pid) and pid_alive(pid) and (started is None or started_at(pid) == started)


def terminate(pid: int, grace_seconds: float = 10, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after grace_seconds (at once when 0); returns when the process is gone. With group,
    its whole process group (a session leader's, e.g. a container's supervising shell and what it runs)."""
    if not pid_alive(pid):
        return
    kill = os.killpg if group else os.kill
    kill(pid, signal.SIGTERM if grace_seconds > 0 else signal.SIGKILL)
    deadline = time.monotonic() + grace_seconds
    while pid_alive(pid):
        if time.monotonic() > deadline:
            kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.02)


def write_file_atomically(path: str | Path, data: bytes | str, mode: int = 0o600) -> None:
    """Atomically (readers see the whole file or none; a temporary file in the same directory, then a
    rename), with mode: the owner's only by default, as the file may hold secrets."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # made 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        if mode != 0o600:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_private_json(path: str | Path, data: dict | list) -> None:
    write_file_atomically(path, json.dumps(data, indent=2))


def wait_until(condition, proc: subprocess.Popen | None, what: str, log: Path, deadline_s: float = 60):
    """Polls condition() until it returns something true, and returns that; fails at once if proc (the
    process being waited on) exits first, and after deadline_s otherwise."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"lab: {what} exited with {proc.returncode}; see {log}")
        time.sleep(0.05)  # another process's progress: nothing to wait on but what it writes or answers
    raise SystemExit(f"lab: {what} was not ready within {deadline_s:g}s; see {log}")


def request_and_await(pid: int, request: Path, done: Path, payload: dict, what: str, log: Path) -> None:
    """Hands a running lab process a request (the file `request`, then SIGUSR1) and returns once it has
    acted on it: it writes `done` with the request's sequence number."""
    seq = time.monotonic_ns()
    write_private_json(request, {"seq": seq, **payload})
    os.kill(pid, signal.SIGUSR1)
    wait_until(lambda: done.exists() and json.loads(done.read_text()).get("seq") == seq, None, what, log, 30)


def bind_below_ephemeral(sock: socket.socket, host: str = "127.0.0.1") -> int:
    """Binds sock to a free port on host below the kernel's ephemeral range, and returns it. The kernel gives
    ports from that range to every outgoing connection (and to an embedded etcd in Omni's namespace): one picked
    there and taken by a server a moment later may meanwhile be a connection's (seen: "bind: address already in use",
    more often with labs side by side). Below it, only another lab's own pick could take it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for candidate in candidates:
        try:
            sock.bind((host, candidate))
            return candidate
        except OSError:
            continue
    raise SystemExit(f"lab: no free port on {host} below the ephemeral range ({low})")


def free_port_below_ephemeral(host: str = "127.0.0.1") -> int:
    """A port a server started next is to take (etcd, kube-apiserver take a number, not a socket)."""
    with socket.socket() as probe:
        return bind_below_ephemeral(probe, host)
