"""The operator's own sequence, before this program: what `make bench` times `up` against (issue 22).

From an empty estate to the same end state as `up`, by the tools the operator typed, in the order that does not wait
for nothing: the storage checks `pvesh` would make, the provider's identities (`omnictl infraprovider create`,
`omnictl serviceaccount create`, `pveum` role, user, ACL and token), the container (`pct create`), the compose files
copied and `docker compose up -d` over SSH (the real `ssh`), the provider's registration awaited (`omnictl get`: Omni
refuses a class for a provider that has not registered), the backup store and each class with `omnictl apply -f`,
each cluster's `cluster template validate` and `sync`, then `cluster template status --wait` for each, and the
Tailscale operator with `omnictl kubeconfig --service-account` and `helm upgrade --install --wait`.

The files the operator would have written beforehand (classes, templates with the CNI rendered in, compose files,
the store, the release's values) are rendered before the clock starts, from the same spec, by the program's own
renderers: writing them is not what is timed. omnictl is the lab's (lab/bin/omnictl: the pinned omnictl, with the
readiness only a booted Talos could show answered by the lab's model), as for `up`; the Proxmox calls go to fakepve's
API as `pvesh` sends them. Each step is timed, so the bench can say where a by-hand run spends its time.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from components.core.spec import PROVIDER_PRIVILEGES, Spec
from components.kubernetes.cni import cluster_manifests
from components.kubernetes.tailscale_operator import CHART, RELEASE, release_values
from components.omni.etcd_backups import s3_config_document
from components.omni.infra_provider import STATUS_NAMESPACE, STATUS_TYPE
from components.omni.omnictl import Omnictl
from components.omni.render import (
    dump_yaml,
    machine_class_document,
    render_cluster_template,
    user_manifests,
    with_manifests,
)
from components.omni.service_accounts import printed_key
from components.proxmox.client import ProxmoxClient, ProxmoxSettings
from components.proxmox.compose import ProviderSecrets, render_provider_stack
from components.proxmox.lxc import config_params, container_inputs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LAB_OMNICTL = PROJECT_ROOT / "lab" / "bin" / "omnictl"
HELM = PROJECT_ROOT / ".tools" / "bin" / "helm"
# What `cluster template status --wait` and `helm --wait` are given; the lab's VMs are ready well within it.
WAIT = "10m"
PROVIDER_TOKEN = "by-hand"


def pvesh_client(pve: dict) -> ProxmoxClient:
    """The lab's Proxmox API with its read-only token (lab.json's `proxmox`), as `pvesh` on a node would read."""
    return ProxmoxClient(
        ProxmoxSettings(pve["api_url"], pve["token_id"], pve["token_secret"], verify_tls=pve["cafile"])
    )


def read_node_facts(api: ProxmoxClient) -> None:
    """What the preflight reads of each node, read once: its storage, network and DNS (both baselines do this)."""
    for node in api.get("nodes"):
        for path in ("storage", "network", "dns"):
            api.get(f"nodes/{node['node']}/{path}")


class ByHand:
    """One by-hand run against a running lab (info: lab.json) for spec, working in workdir."""

    def __init__(self, info: dict, spec: Spec, workdir: Path):
        self.info, self.spec, self.workdir = info, spec, workdir
        self.omni = info["omni"]
        self.omnictl = Omnictl(
            binary=str(LAB_OMNICTL),
            endpoint=self.omni["endpoint"],
            service_account_key=self.omni["service_account_key"],
            ca_file=self.omni["ca_file"],
        )
        pve = info["proxmox"]
        self.pvesh = pvesh_client(pve)
        self.root = ProxmoxClient(
            ProxmoxSettings(pve["api_url"], "root@pam", info["lxc"]["root_password"], verify_tls=pve["cafile"])
        )
        self.steps: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        start = time.monotonic()
        yield
        self.steps[name] = self.steps.get(name, 0.0) + time.monotonic() - start

    def file(self, name: str, text: str) -> str:
        path = self.workdir / name
        path.write_text(text)
        path.chmod(0o600)
        return str(path)

    def prepared(self) -> dict:
        """The files the operator keeps: written before the clock starts."""
        helm, charts = str(HELM), self.info["kubernetes"]["chart_repository"]
        classes = [
            self.file(
                f"class-{class_id}.yaml",
                dump_yaml(machine_class_document(class_id, c.provider_id, c.data.as_document(), c.provisioning())),
            )
            for class_id, c in self.spec.machine_classes.items()
        ]
        templates = {
            name: self.file(
                f"cluster-{name}.yaml",
                with_manifests(
                    render_cluster_template(name, cluster),
                    cluster_manifests(cluster, helm, charts) + user_manifests(cluster),
                ),
            )
            for name, cluster in self.spec.clusters.items()
        }
        return {"classes": classes, "templates": templates}

    def run(self) -> dict:
        """The whole sequence; its seconds, and each step's."""
        files = self.prepared()
        start = time.monotonic()
        self.preflight_reads()
        provider_key, token_id, token_secret = self.provider_identities()
        self.automation_accounts()
        self.container()
        self.compose(provider_key, token_id, token_secret)
        self.provider_registered()
        self.backup_store()
        with self.step("classes: omnictl apply -f"):
            for path in files["classes"]:
                self.omnictl.run("apply", "-f", path)
        with self.step("clusters: template validate, sync"):
            for path in files["templates"].values():
                self.omnictl.run("cluster", "template", "validate", "-f", path)
                self.omnictl.run("cluster", "template", "sync", "-f", path)
        with self.step("clusters: template status --wait"):
            for path in files["templates"].values():
                self.omnictl.run("cluster", "template", "status", "-f", path, "--wait", WAIT, timeout_seconds=660)
        self.tailscale_operator()
        return {"seconds": time.monotonic() - start, "steps": dict(self.steps)}

    def preflight_reads(self) -> None:
        """`pvesh get` of what the preflight reads: the nodes, and each node's storage, network and DNS."""
        with self.step("preflight: pvesh get"):
            read_node_facts(self.pvesh)

    def provider_identities(self) -> tuple[str, str, str]:
        """`omnictl infraprovider create`; `pveum role add`, `user add`, `acl modify`, `user token add` (privilege
        separation, its own ACL)."""
        identity = self.spec.infra_provider.proxmox_identity
        with self.step("provider identities: omnictl, pveum"):
            key = printed_key(self.omnictl.run("infraprovider", "create", self.spec.infra_provider.id))
            self.root.call("POST", "access/roles", roleid=identity.role, privs=",".join(PROVIDER_PRIVILEGES))
            self.root.call("POST", "access/users", userid=identity.user)
            self.root.call("PUT", "access/acl", path="/", roles=identity.role, users=identity.user, propagate=1)
            made = self.root.call("POST", f"access/users/{identity.user}/token/{PROVIDER_TOKEN}", privsep=1)
            self.root.call("PUT", "access/acl", path="/", roles=identity.role, tokens=made["full-tokenid"], propagate=1)
        return key, str(made["full-tokenid"]), str(made["value"])

    def automation_accounts(self) -> None:
        with self.step("automation accounts: omnictl serviceaccount create"):
            for account, account_spec in self.spec.service_accounts.items():
                self.omnictl.run("serviceaccount", "create", account, "--role", account_spec.role, idempotent=False)

    def container(self) -> None:
        """`pct create` with the spec's container (the same parameters the program sends), started."""
        lxc = self.spec.provider_lxc
        props = container_inputs(lxc, protect=False)
        public_key = subprocess.run(
            ["ssh-keygen", "-y", "-f", self.private_key_file()], check=True, capture_output=True, text=True
        ).stdout.strip()
        with self.step("container: pct create"):
            upid = self.root.call(
                "POST",
                f"nodes/{lxc.node}/lxc",
                vmid=lxc.vmid,
                ostemplate=props["ostemplate"],
                unprivileged=1,
                rootfs=f"{props['rootfs_storage']}:{props['rootfs_size_gb']}",
                start=1,
                **{"ssh-public-keys": public_key},
                **config_params(props),
            )
            self.root.wait_task(lxc.node, upid, 120)

    def private_key_file(self) -> str:
        path = self.workdir / "id_lxc"
        if not path.exists():
            self.file("id_lxc", self.info["lxc"]["ssh_private_key"])
        return str(path)

    def ssh(self, command: str, stdin: str | None = None) -> None:
        lxc = self.info["lxc"]
        argv = [
            "ssh",
            "-i",
            self.private_key_file(),
            "-p",
            str(lxc["ssh_port"]),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"UserKnownHostsFile={self.workdir / 'known_hosts'}",
            # A new container's SSH answers a moment after its start: ssh tries again, once a second.
            "-o",
            "ConnectionAttempts=30",
            f"{lxc['ssh_user']}@{lxc['ssh_host']}",
            command,
        ]
        subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, timeout=120)

    def compose(self, provider_key: str, token_id: str, token_secret: str) -> None:
        """The compose files copied in over SSH (each with its mode), then `docker compose up -d`."""
        stack = self.spec.provider_lxc.compose
        secrets = ProviderSecrets(
            omni_endpoint=self.omni["endpoint"],
            omni_service_account_key=provider_key,
            tailscale_auth_key=self.info["provider_stack"]["tailscale_auth_key"],
            proxmox_api_url=self.info["proxmox"]["api_url"],
            proxmox_token_id=token_id,
            proxmox_token_secret=token_secret,
        )
        directory = shlex.quote(stack.directory)
        with self.step("compose: files over ssh, docker compose up -d"):
            self.ssh(f"mkdir -p {directory} && chmod 700 {directory}")
            for f in render_provider_stack(stack, self.spec.infra_provider.id, secrets):
                name = shlex.quote(f.name)
                self.ssh(f"cd {directory} && umask 077 && cat > {name} && chmod {f.mode} {name}", f.content)
            self.ssh(f"cd {directory} && docker compose up -d")

    def provider_registered(self) -> None:
        """Omni refuses a class for a provider that has not registered (`failed to get provider`): the operator
        asks `omnictl get infraproviderstatuses ID` until it is there, a second apart, as `watch` would."""
        with self.step("provider registration: omnictl get, until there"):
            while not self.omnictl.get_or_none(STATUS_TYPE, self.spec.infra_provider.id, STATUS_NAMESPACE):
                time.sleep(1)  # another process's registration, seen only by asking again

    def backup_store(self) -> None:
        if self.spec.backups is None:
            return
        s3 = self.info["s3"]
        document = s3_config_document(
            {
                "bucket": self.spec.backups.s3.bucket,
                "region": self.spec.backups.s3.region,
                "endpoint": s3["endpoint"],
                "access_key_id": s3["access_key_id"],
                "secret_access_key": s3["secret_access_key"],
            }
        )
        path = self.file("etcd-backup-s3-conf.yaml", dump_yaml(document))
        with self.step("backup store: omnictl apply -f"):
            self.omnictl.run("apply", "-f", path)

    def tailscale_operator(self) -> None:
        operator = self.spec.tailscale_operator
        if operator is None or not operator.enabled:
            return
        kubeconfig = self.workdir / "kubeconfig"
        oauth = self.info["tailscale_oauth"]
        values = release_values(operator)
        values["oauth"] = {
            **values.get("oauth", {}),
            "clientId": oauth["client_id"],
            "clientSecret": oauth["client_secret"],
        }
        values_file = self.file("tailscale-values.yaml", yaml.safe_dump(values))
        env_dir = self.workdir / "helm"
        with self.step("tailscale operator: omnictl kubeconfig, helm upgrade --install --wait"):
            self.omnictl.run(
                "kubeconfig", "-c", operator.cluster, "--service-account", "--user", "by-hand", str(kubeconfig)
            )
            subprocess.run(
                [
                    str(HELM),
                    "upgrade",
                    "--install",
                    RELEASE,
                    CHART,
                    "--repo",
                    self.info["kubernetes"]["chart_repository"],
                    "--version",
                    operator.chart_version,
                    "--namespace",
                    operator.namespace,
                    "--create-namespace",
                    "--values",
                    values_file,
                    "--wait",
                    "--timeout",
                    WAIT,
                ],
                env={
                    "PATH": "/usr/bin:/bin",
                    # helm keeps its discovery cache under $HOME/.kube: the run's own directory, not the checkout.
                    "HOME": str(env_dir),
                    "KUBECONFIG": str(kubeconfig),
                    "HELM_CACHE_HOME": str(env_dir / "cache"),
                    "HELM_CONFIG_HOME": str(env_dir / "config"),
                    "HELM_DATA_HOME": str(env_dir / "data"),
                },
                check=True,
                capture_output=True,
                text=True,
            )


def by_hand(info: dict, spec: Spec) -> dict:
    with tempfile.TemporaryDirectory(prefix="omni-scale-by-hand-") as tmp:
        return ByHand(info, spec, Path(tmp)).run()
