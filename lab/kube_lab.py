"""The lab's Kubernetes API: the new cluster's API server as far as the Tailscale operator release needs
it. A real kube-apiserver with a real etcd (both built by tools/bootstrap.sh from the Go module proxy),
on 127.0.0.1, with a CA, serving certificate, service-account key and admin token made per start; and
a Helm chart repository on loopback serving the lab's `tailscale-operator` chart (lab/charts).

A kube-controller-manager (from the same k8s.io/kubernetes module) runs the controllers deletion and a rollout need:
the namespace controller, which empties a deleted namespace and lets it go; the garbage collector, which ends a
foreground deletion (what pulumi-kubernetes asks for by default); and the deployment and replicaset controllers,
which make a Deployment's pods. lab/kubelet_standin.py is the one node they run on: it binds them and reports them
Ready (nothing runs in them), so a Helm release's objects become ready and pulumi-kubernetes' await ends as on a
real cluster. No other controller and no real scheduler or kubelet runs.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from . import kubelet_standin
from .processes import free_port_below_ephemeral, spawn, wait_until, write_file_atomically, write_private_json

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOOLS = PROJECT_ROOT / ".tools" / "bin"
CHARTS = PROJECT_ROOT / "lab" / "charts"
HOST = "127.0.0.1"
ADMIN_USER = "omni-scale"  # the service-account user `omnictl kubeconfig --service-account` is made for


def pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate(common_name: str, key, *, issuer=None, sans=(), ca: bool = False):
    """A week-long certificate for key; signed by issuer, a (certificate, key) pair, or self-signed."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


def loopback_names() -> list:
    return [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]


def write_certificate(path: Path, cert) -> None:
    write_file_atomically(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_pki(pki: Path) -> dict:
    """A CA, the API server's certificate for 127.0.0.1, a service-account signing key and an admin token."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("omni-scale-lab-kubernetes-ca", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        "kube-apiserver",
        key,
        issuer=(ca, ca_key),
        sans=loopback_names()
        + [
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ],
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = secrets.token_hex(32)
    write_certificate(pki / "ca.crt", ca)
    write_certificate(pki / "apiserver.crt", cert)
    write_file_atomically(pki / "apiserver.key", pem_key(key))
    write_file_atomically(pki / "sa.key", pem_key(sa_key))
    write_file_atomically(
        pki / "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )
    # The admin token is in system:masters: the kubeconfig Omni hands out for a service account is admin too.
    write_file_atomically(pki / "tokens.csv", f'{token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n'.encode())
    return {"token": token, "ca": str(pki / "ca.crt")}


def _wait_ready(
    url: str, proc: subprocess.Popen, what: str, log: Path, context=None, headers=None, deadline_s: float = 90
) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers or {}), timeout=2, context=context
            ) as answer:
                return answer.status == 200
        except OSError:
            return False

    wait_until(answers, proc, what, log, deadline_s)


def package_charts(out: Path, base_url: str) -> None:
    """`helm package` every chart under lab/charts into out/, with the index.yaml a repository serves."""
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(out / ".helm-cache"),
        "HELM_CONFIG_HOME": str(out / ".helm-config"),
        "HELM_DATA_HOME": str(out / ".helm-data"),
    }
    for chart in sorted(p for p in CHARTS.iterdir() if (p / "Chart.yaml").exists()):
        subprocess.run(
            [str(TOOLS / "helm"), "package", str(chart), "--destination", str(out)],
            check=True,
            capture_output=True,
            env=env,
        )
    subprocess.run(
        [str(TOOLS / "helm"), "repo", "index", str(out), "--url", base_url], check=True, capture_output=True, env=env
    )


def start(directory: Path) -> dict:
    """Starts etcd, kube-apiserver and the chart repository; returns what lab.json keeps of them."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool in ("etcd", "kube-apiserver", "kube-controller-manager", "helm"):
        if not (TOOLS / tool).exists():
            raise SystemExit(f"lab: {TOOLS / tool} is missing; run tools/bootstrap.sh")
    pki = make_pki(directory / "pki")
    etcd_port, peer_port, api_port, repo_port = (free_port_below_ephemeral(HOST) for _ in range(4))
    etcd = spawn(
        directory,
        "etcd",
        [
            str(TOOLS / "etcd"),
            "--name",
            "lab",
            "--data-dir",
            str(directory / "etcd"),
            "--listen-client-urls",
            f"http://{HOST}:{etcd_port}",
            "--advertise-client-urls",
            f"http://{HOST}:{etcd_port}",
            "--listen-peer-urls",
            f"http://{HOST}:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://{HOST}:{peer_port}",
            "--initial-cluster",
            f"lab=http://{HOST}:{peer_port}",
            "--listen-metrics-urls",
            "",
            "--log-level",
            "warn",
        ],
    )
    _wait_ready(f"http://{HOST}:{etcd_port}/health", etcd, "etcd", directory / "etcd.log")
    p = directory / "pki"
    apiserver = spawn(
        directory,
        "kube-apiserver",
        [
            str(TOOLS / "kube-apiserver"),
            f"--etcd-servers=http://{HOST}:{etcd_port}",
            f"--bind-address={HOST}",
            f"--advertise-address={HOST}",
            "--endpoint-reconciler-type=none",
            f"--secure-port={api_port}",
            f"--cert-dir={p}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--token-auth-file={p / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--anonymous-auth=false",
            "--allow-privileged=true",
            "--profiling=false",
            "--enable-priority-and-fairness=false",
            "--v=0",
        ],
    )
    server = f"https://{HOST}:{api_port}"
    context = ssl.create_default_context(cafile=pki["ca"])
    _wait_ready(
        f"{server}/readyz",
        apiserver,
        "kube-apiserver",
        directory / "kube-apiserver.log",
        context,
        {"Authorization": f"Bearer {pki['token']}"},
    )
    # Deletion's controllers, as the admin (a kubeconfig file, 0600: the controller-manager reads no other way).
    kubeconfig = directory / "controller-manager.kubeconfig"
    write_private_json(
        kubeconfig,
        admin_kubeconfig(
            {
                "server": server,
                "token": pki["token"],
                "certificate_authority_data": base64.b64encode(Path(pki["ca"]).read_bytes()).decode(),
            }
        ),
    )
    manager_port = free_port_below_ephemeral(HOST)
    manager = spawn(
        directory,
        "kube-controller-manager",
        [
            str(TOOLS / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--controllers=namespace,garbagecollector,deployment,replicaset",
            "--leader-elect=false",
            f"--bind-address={HOST}",
            f"--secure-port={manager_port}",
            f"--cert-dir={directory / 'controller-manager'}",
            "--use-service-account-credentials=false",
            "--v=0",
        ],
    )
    unverified = ssl.create_default_context()
    unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE  # its own self-signed serving cert
    _wait_ready(
        f"https://{HOST}:{manager_port}/healthz",
        manager,
        "kube-controller-manager",
        directory / "kube-controller-manager.log",
        unverified,
    )
    # The node a Deployment's pods run on (lab/kubelet_standin.py): there once it has registered itself.
    access = directory / "kubelet-standin.json"
    write_private_json(access, {"server": server, "token": pki["token"], "ca_file": pki["ca"]})
    kubelet = spawn(
        directory,
        "kubelet-standin",
        [sys.executable, "-m", "lab.kubelet_standin", str(access)],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    _wait_ready(
        f"{server}/api/v1/nodes/{kubelet_standin.NODE}",
        kubelet,
        "the kubelet stand-in",
        directory / "kubelet-standin.log",
        context,
        {"Authorization": f"Bearer {pki['token']}"},
    )
    repo_url = f"http://{HOST}:{repo_port}"
    package_charts(directory / "charts", repo_url)
    repo = spawn(
        directory,
        "chart-repo",
        [sys.executable, "-m", "http.server", str(repo_port), "--bind", HOST, "--directory", str(directory / "charts")],
    )
    _wait_ready(f"{repo_url}/index.yaml", repo, "the chart repository", directory / "chart-repo.log")
    info = {
        "server": server,
        "token": pki["token"],
        "ca_file": pki["ca"],
        "certificate_authority_data": base64.b64encode(Path(pki["ca"]).read_bytes()).decode(),
        "chart_repository": repo_url,
        "pids": [repo.pid, kubelet.pid, manager.pid, apiserver.pid, etcd.pid],
    }
    # What the lab's omnictl puts in the kubeconfigs it hands out (lab/bin/omnictl): no Talos cluster
    # boots in the lab, so this API server stands in for the new cluster's.
    write_private_json(
        directory / "access.json", {k: info[k] for k in ("server", "token", "certificate_authority_data")}
    )
    return info


def admin_kubeconfig(info: dict) -> dict:
    """A kubeconfig for this API server's admin (tests and operators poking at the lab)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "lab",
        "clusters": [
            {
                "name": "lab",
                "cluster": {"server": info["server"], "certificate-authority-data": info["certificate_authority_data"]},
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": info["token"]}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": ADMIN_USER}}],
    }
