"""The lab's Omni: the real Omni server (built by tools/bootstrap.sh from github.com/siderolabs/omni) on
loopback, started per lab with a throwaway identity.

    start(directory, spec) -> {"endpoint", "service_account_key", "ca_file", "pids"}

What it is started with:
- a self-signed certificate for 127.0.0.1 (clients trust it through omni-scale:omniCaFile);
- a passphrase-less OpenPGP key made per start by gpg, which Omni encrypts its etcd data with;
- embedded etcd and its SQLite store in the lab's directory;
- the initial service account (role Admin), whose key Omni writes to a file the lab reads;
- Auth0 "enabled" with a domain nobody contacts: Omni refuses to start without an auth provider, and
  only a browser login (never made here) would use it, so no OIDC stand-in is needed;
- every listener on 127.0.0.1 (API, machine API, Kubernetes proxy, metrics, SideroLink WireGuard).

Why a network namespace of its own: SideroLink cannot be switched off, and at start it always creates a
WireGuard interface named `siderolink` (kernel, or userspace on /dev/net/tun). In the host namespace that
would change this machine's network, and two labs would fight over the name (and over userspace
WireGuard's control socket, /run/wireguard/siderolink.sock). So this module, run as a script, is a helper
that creates a private network namespace and a mount namespace with its own /run/wireguard, and holds
them; Omni is started inside both with `nsenter`, and the helper forwards one host port, 127.0.0.1:P, to
Omni's API at 127.0.0.1:P inside.

The helper also serves, inside the namespace, the one outside service Omni's start needs (the
stand-in, kept minimal):
- Image Factory: GET /versions (the Talos versions), GET /version/V/extensions/official (the system
  extensions), GET /version/V/overlays/official (none), POST /schematics (id = sha256 of the body);
- the OCI registry Omni lists kubelet tags from: GET /v2/ and GET /v2/REPO/tags/list (the Kubernetes
  versions).
Without them Omni knows no Talos or Kubernetes version and refuses every cluster template. The versions
served are the spec's (so templates sync) plus a few neighbours (so tests can move a version).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lab.processes import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    LIBC,
    MS_BIND,
    MS_PRIVATE,
    MS_REC,
    bind_below_ephemeral,
    checked_call,
    spawn,
    terminate,
    wait_until,
    write_file_atomically,
    write_private_json,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]

TOOLS = PROJECT_ROOT / ".tools" / "bin"
HOST = "127.0.0.1"
FACTORY_PORT = 18080  # inside the namespace: nothing else listens there
ACCOUNT_ID = "ac000000-0000-0000-0000-000000000000"
# Omni's Talos-compatibility matrix decides which Kubernetes versions a Talos version accepts; these
# neighbours of the spec's versions let tests move a version without editing the lab.
# A Talos and a Kubernetes minor past the seed's too, to upgrade to (Talos 1.12 runs Kubernetes 1.30 to 1.35).
TALOS_VERSIONS = ["v1.10.7", "v1.11.5", "v1.11.6", "v1.12.1"]
KUBERNETES_VERSIONS = ["v1.32.9", "v1.33.5", "v1.33.6", "v1.34.1", "v1.34.3", "v1.35.0"]
EXTENSIONS = [
    "siderolabs/qemu-guest-agent",
    "siderolabs/iscsi-tools",
    "siderolabs/util-linux-tools",
    "siderolabs/nvidia-container-toolkit-production",
]


# --- the helper, inside the namespace -------------------------------------------------------------


def _new_namespaces(wireguard_dir: Path) -> None:
    """A network and a mount namespace for this process (os.unshare is Python 3.12+), loopback up, and
    a private /run/wireguard: userspace WireGuard keeps its control socket there, by interface name,
    and every Omni calls its interface `siderolink`."""
    runtime = Path(os.path.realpath("/var/run/wireguard"))
    runtime.mkdir(parents=True, exist_ok=True)
    wireguard_dir.mkdir(mode=0o700, exist_ok=True)

    def check(result: int, what: str) -> None:
        checked_call(result, "omni lab", what, "the lab's Omni needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN")

    check(LIBC.unshare(CLONE_NEWNET | CLONE_NEWNS), "create network and mount namespaces")
    check(LIBC.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make the new mount namespace private")
    check(
        LIBC.mount(str(wireguard_dir).encode(), str(runtime).encode(), None, MS_BIND, None),
        f"bind {wireguard_dir} over {runtime}",
    )
    # Omni binds its SideroLink address the moment it assigns it; with duplicate-address detection on
    # (a new namespace's default) the address is still "tentative" then and the bind fails.
    for scope in ("all", "default"):
        Path(f"/proc/sys/net/ipv6/conf/{scope}/accept_dad").write_text("0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # SIOCGIFFLAGS / SIOCSIFFLAGS on "lo"
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))


def _factory_handler(talos: list[str], kubernetes: list[str], extensions: list[str]):
    schematics: dict[str, bytes] = {}

    class Factory(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.path.startswith("/v2"):
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?")[0]
            if path == "/versions":
                return self._send(200, talos)
            if re.fullmatch(r"/version/[^/]+/extensions/official", path):
                return self._send(
                    200,
                    [
                        {
                            "name": name,
                            "ref": f"ghcr.io/{name}:lab",
                            "digest": "sha256:" + "0" * 64,
                            "author": "Sidero Labs",
                            "description": "lab stand-in",
                        }
                        for name in extensions
                    ],
                )
            if re.fullmatch(r"/version/[^/]+/overlays/official", path):
                return self._send(200, [])
            if path in ("/v2", "/v2/"):
                return self._send(200, {})
            repo = re.fullmatch(r"/v2/(.+)/tags/list", path)
            if repo:
                return self._send(200, {"name": repo.group(1), "tags": kubernetes})
            schematic = re.fullmatch(r"/schematics/([0-9a-f]+)", path)
            if schematic and schematic.group(1) in schematics:
                return self._send(200, schematics[schematic.group(1)], "application/yaml")
            return self._send(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.split("?")[0] != "/schematics":
                return self._send(404, {"error": "not found"})
            schematic_id = hashlib.sha256(body).hexdigest()
            schematics[schematic_id] = body
            return self._send(201, {"id": schematic_id})

        def log_message(self, fmt: str, *args) -> None:
            print(f"factory: {fmt % args}", file=sys.stderr, flush=True)

    return Factory


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _forward(first: socket.socket, listen, port: int) -> None:
    """Host 127.0.0.1:port -> Omni at 127.0.0.1:port in here. SIGUSR1 closes the host port (Omni looks
    down: connection refused), SIGUSR2 opens it again."""

    async def connection(host_reader, host_writer):
        try:
            inner_reader, inner_writer = await asyncio.open_connection(HOST, port)  # inside the namespace
        except OSError:
            host_writer.close()  # Omni is not (yet, or any more) listening: the client sees the connection drop
            return
        await asyncio.gather(_pipe(host_reader, inner_writer), _pipe(inner_reader, host_writer))

    loop = asyncio.get_running_loop()
    servers = [await asyncio.start_server(connection, sock=first)]

    def down() -> None:
        while servers:
            servers.pop().close()

    async def up() -> None:
        if not servers:
            servers.append(await asyncio.start_server(connection, sock=listen()))

    loop.add_signal_handler(signal.SIGUSR1, down)
    loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(up()))
    await asyncio.Event().wait()


def helper_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the lab Omni's network namespace, port forward and factory")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--talos", nargs="+", required=True)
    parser.add_argument("--kubernetes", nargs="+", required=True)
    parser.add_argument("--extensions", nargs="+", required=True)
    args = parser.parse_args(argv)
    host_namespace = os.open("/proc/self/ns/net", os.O_RDONLY)  # kept: the host port is reopened from it
    port = 0

    def listen() -> socket.socket:
        """A listening socket on the host's loopback (made there, from inside the namespace)."""
        nonlocal port
        inner = os.open("/proc/self/ns/net", os.O_RDONLY)
        LIBC.setns(host_namespace, CLONE_NEWNET)
        try:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if port:
                sock.bind((HOST, port))
            else:
                port = bind_below_ephemeral(sock)  # Omni binds the same number inside its namespace
            sock.listen(64)
            return sock
        finally:
            LIBC.setns(inner, CLONE_NEWNET)
            os.close(inner)

    first = listen()  # picks the port, kept from now on
    _new_namespaces(args.state_dir / "wireguard")
    factory = ThreadingHTTPServer((HOST, FACTORY_PORT), _factory_handler(args.talos, args.kubernetes, args.extensions))
    threading.Thread(target=factory.serve_forever, daemon=True).start()
    write_private_json(args.state_dir / "netns.json", {"pid": os.getpid(), "api_port": port})
    asyncio.run(_forward(first, listen, port))
    return 0


# --- the lab side ---------------------------------------------------------------------------------


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from lab.kube_lab import certificate, loopback_names, pem_key, write_certificate

    key = ec.generate_private_key(ec.SECP256R1())
    cert_file, key_file = directory / "omni-cert.pem", directory / "omni-key.pem"
    # A CA certificate too: omnictl trusts it as its own root (SSL_CERT_FILE).
    write_certificate(cert_file, certificate("omni-lab", key, sans=loopback_names(), ca=True))
    write_file_atomically(key_file, pem_key(key))
    return cert_file, key_file


def _gpg_key(directory: Path) -> Path:
    """The passphrase-less OpenPGP key (ed25519, with a cv25519 encryption subkey) Omni's etcd is encrypted with."""
    target = directory / "omni.asc"
    with tempfile.TemporaryDirectory(prefix="omni-lab-gpg-") as home:
        env = {**os.environ, "GNUPGHOME": home}
        gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        try:
            subprocess.run(
                [*gpg, "--quick-gen-key", "Omni lab <omni-lab@example.invalid>", "ed25519", "cert", "never"],
                env=env,
                check=True,
                capture_output=True,
            )
            fingerprint = re.search(
                r"^fpr:+([0-9A-F]+):",
                subprocess.run(
                    ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout,
                re.M,
            ).group(1)
            subprocess.run(
                [*gpg, "--quick-add-key", fingerprint, "cv25519", "encr", "never"],
                env=env,
                check=True,
                capture_output=True,
            )
            armored = subprocess.run(
                [*gpg, "--armor", "--export-secret-keys", fingerprint], env=env, check=True, capture_output=True
            ).stdout
        except FileNotFoundError:
            raise SystemExit("omni lab: gpg is not installed (Debian: apt-get install gnupg)") from None
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"omni lab: gpg failed: {exc.stderr.decode(errors='replace').strip()}") from None
        finally:
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)  # it outlives gpg
    write_file_atomically(target, armored)
    return target


def served_versions(spec) -> tuple[list[str], list[str]]:
    """The Talos and Kubernetes versions the factory stand-in serves: the spec's and their neighbours."""
    talos = set(TALOS_VERSIONS) | {c.talos_version for c in spec.clusters.values()}
    kubernetes = set(KUBERNETES_VERSIONS) | {c.kubernetes_version for c in spec.clusters.values()}
    return sorted(talos, key=_version_key), sorted(kubernetes, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def omni_argv(directory: Path, api_port: int, cert: Path, key: Path, gpg_key: Path) -> list[str]:
    """Every listener bound to 127.0.0.1 inside the namespace: Omni's defaults are 0.0.0.0."""
    api = f"{HOST}:{api_port}"
    return [
        str(TOOLS / "omni"),
        f"--account-id={ACCOUNT_ID}",
        "--name=omni-lab",
        f"--bind-addr={api}",
        f"--advertised-api-url=https://{api}/",
        f"--cert={cert}",
        f"--key={key}",
        f"--machine-api-bind-addr={HOST}:8090",
        f"--machine-api-advertised-url=grpc://{HOST}:8090",
        f"--k8s-proxy-bind-addr={HOST}:8095",
        f"--advertised-kubernetes-proxy-url=https://{HOST}:8095",
        f"--metrics-bind-addr={HOST}:2122",
        f"--debug-server-endpoint={HOST}:9988",
        f"--siderolink-wireguard-bind-addr={HOST}:50180",
        f"--siderolink-wireguard-advertised-addr={HOST}:50180",
        "--event-sink-port=8091",
        "--log-server-port=8092",
        "--local-resource-server-port=8081",
        "--embedded-discovery-service-port=8093",
        "--etcd-embedded",
        f"--etcd-embedded-db-path={directory / 'etcd'}",
        f"--etcd-endpoints=http://{HOST}:2379",
        f"--private-key-source=file://{gpg_key}",
        f"--sqlite-storage-path={directory / 'omni.sqlite'}",
        f"--image-factory-address=http://{HOST}:{FACTORY_PORT}",
        f"--image-factory-pxe-address=http://{HOST}:{FACTORY_PORT}/pxe",
        f"--kubernetes-registry={HOST}:{FACTORY_PORT}/siderolabs/kubelet",
        f"--talos-installer-registry={HOST}:{FACTORY_PORT}/siderolabs/installer",
        "--create-initial-service-account",
        f"--initial-service-account-key-path={directory / 'admin.key'}",
        # A year, as omnictl gives its keys: a fresh lab has no key due for renewal (keyExpiryWarningDays).
        "--initial-service-account-lifetime=8760h",
        "--initial-service-account-role=Admin",
        "--eula-accept-name=Omni Lab",
        "--eula-accept-email=omni-lab@example.invalid",
        "--auth-auth0-enabled",
        "--auth-auth0-domain=auth0.invalid",
        "--auth-auth0-client-id=omni-lab",
    ]


def lab_omnictl(info: dict, key: str | None = None):
    """The pinned omnictl, as the lab's admin (or as the holder of key), trusting the lab's certificate."""
    from components.omni.omnictl import Omnictl

    return Omnictl(
        binary=str(TOOLS / "omnictl"),
        endpoint=info["endpoint"],
        service_account_key=key or info["service_account_key"],
        ca_file=info["ca_file"],
    )


def start(directory: Path, spec) -> dict:
    """Starts Omni in a fresh state directory and returns once it knows the spec's Talos versions."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log_dir = directory.parent
    talos, kubernetes = served_versions(spec)
    helper = spawn(
        log_dir,
        "omni-netns",
        [
            sys.executable,
            "-m",
            "lab.omni_lab",
            "--state-dir",
            str(directory),
            "--talos",
            *talos,
            "--kubernetes",
            *kubernetes,
            "--extensions",
            *EXTENSIONS,
        ],
    )
    cert, key = _self_signed_certificate(directory)
    gpg_key = _gpg_key(directory)
    netns_file = directory / "netns.json"
    netns = wait_until(
        lambda: netns_file.exists() and json.loads(netns_file.read_text()),
        helper,
        "the Omni namespace helper",
        log_dir / "omni-netns.log",
        30,
    )
    (directory / "omnictl").mkdir()  # Omni serves omnictl downloads from ./omnictl/ and will not start without it
    omni = spawn(
        log_dir,
        "omni",
        [
            "nsenter",
            "-t",
            str(netns["pid"]),
            "-n",
            "-m",
            "--",
            "env",
            # With AWS_CA_BUNDLE set, Omni v1.7 fails every http:// S3 endpoint ("unable to add custom RootCAs
            # HTTPClient"): its S3 client brings an HTTP client of its own, which the SDK cannot give a CA bundle.
            "-u",
            "AWS_CA_BUNDLE",
            f"--chdir={directory}",
            *omni_argv(directory, netns["api_port"], cert, key, gpg_key),
        ],
    )
    info = {
        "endpoint": f"https://{HOST}:{netns['api_port']}",
        "ca_file": str(cert),
        "pids": [omni.pid, helper.pid],
        "netns_pid": netns["pid"],  # what a service Omni dials (the lab's S3) is started in
    }
    key_file = directory / "admin.key"
    info["service_account_key"] = wait_until(
        lambda: key_file.exists() and key_file.read_text().strip(), omni, "Omni", log_dir / "omni.log"
    )
    from components.core.retry import RetryPolicy

    client = dataclasses.replace(lab_omnictl(info), retry=RetryPolicy(attempts=1, first_delay_seconds=0.1))

    def knows_the_versions():
        from components.omni.omnictl import OmnictlError

        try:
            listed = client.run("get", "talosversions", "-o", "jsonpath={.metadata.id}")
        except OmnictlError:
            return False  # not serving yet
        return all(v.lstrip("v") in listed.split() for v in talos)

    wait_until(knows_the_versions, omni, "Omni's Talos versions", log_dir / "omni.log")
    return info


def stop(info: dict) -> None:
    """Omni first, then the namespace it ran in. Killed, not asked: a clean shutdown takes Omni 5 s, and
    its state is thrown away with the lab anyway."""
    for pid in info["pids"]:
        terminate(pid, grace_seconds=0)


def set_reachable(info: dict, reachable: bool) -> None:
    """Takes Omni off the network (its host port closed: connection refused) or puts it back; Omni
    itself keeps running. Returns once the port answers as asked."""
    helper = info["pids"][-1]
    os.kill(helper, signal.SIGUSR2 if reachable else signal.SIGUSR1)
    port = int(info["endpoint"].rsplit(":", 1)[1])

    def answers() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((HOST, port)) == 0

    wait_until(
        lambda: answers() == reachable,
        None,
        f"Omni's port {'opening' if reachable else 'closing'}",
        Path(info["ca_file"]).parent.parent / "omni-netns.log",
        10,
    )


def revoked_key(info: dict, name: str = "lab-revoked") -> str:
    """A well-formed service-account key Omni once issued and no longer accepts (its account is gone)."""
    admin = lab_omnictl(info)
    printed = admin.run("serviceaccount", "create", name)
    admin.run("serviceaccount", "destroy", name)
    return printed_key(printed)


def printed_key(printed: str) -> str:
    """The key `omnictl serviceaccount create` / `infraprovider create` print once, as an env assignment."""
    from components.omni.service_account_key import KeyUnreadable
    from components.omni.service_accounts import printed_key as parsed

    try:
        return parsed(printed)
    except KeyUnreadable:
        raise SystemExit("omni lab: omnictl printed no service-account key") from None


if __name__ == "__main__":
    sys.exit(helper_main(sys.argv[1:]))
