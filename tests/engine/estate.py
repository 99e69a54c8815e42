"""The lab estate the engine tests drive: a copy of the project, a lab of its own, the real pulumi CLI."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from components.cli.keys import revealed as plain
from components.omni.render import MACHINE_CLASS_TYPE
from components.omni.service_accounts import provider_account
from components.proxmox.client import ProxmoxClient, ProxmoxNotFound, ProxmoxSettings
from lab import ctl, kube_lab, omni_lab, provider_standin
from tests.conftest import PROJECT_ROOT
from tests.lxc_host import docker_history

# Set by tests/engine/conftest.py's report hook: whether a test's own body failed (its fixtures may then
# have more to put back).
CALL_FAILED = pytest.StashKey[bool]()


def call_failed(item: pytest.Item) -> bool:
    return item.stash.get(CALL_FAILED, False)


CLASS = "matrix-control-plane"
PROVIDER_ID = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())["infra_provider"]["id"]
CLUSTER = "talos-prod-01"
PROVIDER_ACCOUNT = provider_account(PROVIDER_ID)
SPEC_IDENTITY = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())["infra_provider"]["proxmox_identity"]
# Each kind of the program's dynamic resources has its own type; states before that recorded UNTYPED for all.
UNTYPED = "pulumi-python:dynamic:Resource"
CLASS_TYPE, CLUSTER_TYPE = "pulumi-python:dynamic/omni:MachineClass", "pulumi-python:dynamic/omni:TalosCluster"


class Estate:
    def __init__(self, root: Path):
        self.lab_dir = root / "lab"
        self.project, self.info, self.stack = ctl.isolated_lab_stack(root)
        # The real omnictl, straight at the lab's real Omni: what an operator's hand edit looks like.
        self.omni = omni_lab.lab_omnictl(self.info["omni"])

    def pulumi(self, *args, check=True):
        return self.stack.run(*args, check=check)

    def preview_json(self) -> dict:
        return json.loads(self.pulumi("preview", "--json", "--diff").stdout)

    def live_class(self):
        return self.omni.get_or_none(MACHINE_CLASS_TYPE, CLASS, "default")

    def live_memory(self) -> int:
        return yaml.safe_load(self.live_class()["spec"]["autoprovision"]["providerdata"])["memory"]

    def edit_spec(self, edit) -> None:
        path = self.project / "specs" / "omni.yaml"
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def set_spec_memory(self, memory: int) -> None:
        self.edit_spec(lambda d: d["machine_classes"][CLASS]["provider_data"].update(memory=memory))

    def live_workers(self) -> int:
        exported = yaml.safe_load_all(self.omni.export_template(CLUSTER))
        return next(d for d in exported if d["kind"] == "Workers")["machineClass"]["size"]

    def set_config(self, key: str, value: str) -> None:
        self.stack.set_config(key, value)

    def forget_the_stack(self) -> None:
        """A new, empty stack over the running estate, configured as an operator who adopts it would: the lab's
        credentials, and the provider's Omni key and Proxmox token (from its .env and config.yaml) as
        providerOmniServiceAccountKey and providerProxmoxTokenId/Secret. The automation accounts the forgotten stack
        made are gone too: the estate being adopted had none."""
        keys = self.managed_keys()
        token = self.state_resource("omni-provider-proxmox-identity-token")["outputs"]
        self.stack.run_plain("stack", "rm", self.stack.stack, "--force", "--yes", "--preserve-config")
        self.stack.ensure_stack()
        self.stack.configure_from_lab(self.info)
        self.stack.set_config("omni-scale:providerOmniServiceAccountKey", keys[PROVIDER_ACCOUNT], secret=True)
        self.stack.set_config("omni-scale:providerProxmoxTokenId", token["token_id"])
        self.stack.set_config("omni-scale:providerProxmoxTokenSecret", plain(token["token_secret"]), secret=True)
        for account in keys:
            if account != PROVIDER_ACCOUNT:
                self.omni.run("serviceaccount", "destroy", account)

    def provider_made_by_hand(self) -> None:
        """What the operator did before the program made the provider's identities: `omnictl infraprovider create`,
        its key pasted into providerOmniServiceAccountKey; in Proxmox (`pveum user add`, `pveum user token add`,
        `pveum acl modify`) a user and a token with Administrator on /, pasted into providerProxmoxTokenId/Secret."""
        key = provider_standin.create(self.info["omni"], PROVIDER_ID)
        self.stack.set_config("omni-scale:providerOmniServiceAccountKey", key, secret=True)
        pve, user = self.pve(), SPEC_IDENTITY["user"]
        pve.call("POST", "access/users", userid=user)
        made = pve.call("POST", f"access/users/{user}/token/by-hand", privsep=0)
        pve.call("PUT", "access/acl", path="/", roles="Administrator", users=user)
        self.stack.set_config("omni-scale:providerProxmoxTokenId", made["full-tokenid"])
        self.stack.set_config("omni-scale:providerProxmoxTokenSecret", made["value"], secret=True)

    def class_in_state(self) -> dict:
        deployment = json.loads(self.pulumi("stack", "export").stdout)["deployment"]
        [resource] = [r for r in deployment["resources"] if r["urn"].endswith(f"{CLASS_TYPE}::{CLASS}")]
        return resource

    def kubeconfig(self) -> str:
        """The cluster's service-account kubeconfig, as the TalosCluster resource keeps it (encrypted) in the state."""
        deployment = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)["deployment"]
        [resource] = [r for r in deployment["resources"] if r["urn"].endswith(f"{CLUSTER_TYPE}::{CLUSTER}")]
        return plain(resource["outputs"]["kubeconfig"])

    def state_text(self) -> str:
        files = list((self.stack.state_dir / ".pulumi").rglob("*.json"))
        assert files, "no state file written"
        return "\n".join(f.read_text() for f in files)

    def admin_kubeconfig(self) -> dict:
        return kube_lab.admin_kubeconfig(self.info["kubernetes"])

    def namespace(self, name: str = "tailscale"):
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        try:
            return client.CoreV1Api(config.new_client_from_config_dict(self.admin_kubeconfig())).read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def helm(self, *args: str) -> subprocess.CompletedProcess:
        path = self.lab_dir / "admin-kubeconfig"
        path.write_text(yaml.safe_dump(self.admin_kubeconfig()))
        path.chmod(0o600)
        env = {
            **os.environ,
            "KUBECONFIG": str(path),
            "HELM_CACHE_HOME": str(self.lab_dir / "helm-cache"),
            "HELM_CONFIG_HOME": str(self.lab_dir / "helm-config"),
            "HELM_DATA_HOME": str(self.lab_dir / "helm-data"),
        }
        return subprocess.run(
            [str(PROJECT_ROOT / ".tools" / "bin" / "helm"), *args], env=env, capture_output=True, text=True
        )

    def release(self) -> dict | None:
        """The release's metadata (chart, version, status) and its user-supplied values, or None."""
        where = ("tailscale-operator", "--namespace", "tailscale", "--output", "json")
        metadata = self.helm("get", "metadata", *where)
        if metadata.returncode != 0:
            return None
        return {**json.loads(metadata.stdout), "values": json.loads(self.helm("get", "values", *where).stdout)}

    def secrets(self) -> list[str]:
        stack = self.info["provider_stack"]
        private_key_body = self.info["lxc"]["ssh_private_key"].splitlines()[1]
        return [
            self.info["omni"]["service_account_key"],
            self.info["proxmox"]["token_secret"],
            self.info["lxc"]["root_password"],
            private_key_body,
            stack["tailscale_auth_key"],
            *self.managed_keys().values(),
            stack["proxmox_token_secret"],
            self.info["tailscale_oauth"]["client_id"],
            self.info["tailscale_oauth"]["client_secret"],
            self.info["kubernetes"]["token"],
            # The etcd backup store's keys (the lab's S3 made them).
            *[self.info["s3"][k] for k in ("access_key_id", "secret_access_key") if "s3" in self.info],
        ]

    def managed_keys(self) -> dict[str, str]:
        """The Omni keys the program holds, by service account (its ServiceAccounts' outputs, decrypted)."""
        deployment = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)["deployment"]
        return {
            r["outputs"]["account"]: plain(r["outputs"]["key"])
            for r in deployment.get("resources", [])
            if r["type"].endswith("omni:ServiceAccount") and r.get("outputs", {}).get("key")
        }

    def pve(self) -> ProxmoxClient:
        return ProxmoxClient(
            ProxmoxSettings(
                self.info["proxmox"]["api_url"],
                "root@pam",
                self.info["lxc"]["root_password"],
                verify_tls=self.info["proxmox"]["cafile"],
            )
        )

    def ct_config(self) -> dict | None:
        try:
            return self.pve().get("nodes/foxtrot/lxc/200/config")
        except ProxmoxNotFound:
            return None

    def provider_vms(self) -> list[dict]:
        """The VMs in fakepve (the infra provider's), as /cluster/resources lists them."""
        return [r for r in self.pve().get("cluster/resources", type="vm") if r["type"] == "qemu"]

    def stack_outputs(self) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json").stdout)

    def state_resource(self, name: str, type_: str = "pulumi-python:dynamic/") -> dict:
        """The resource called name whose type is or starts with type_, as the state records it (secrets
        decrypted)."""
        deployment = json.loads(self.pulumi("stack", "export", "--show-secrets").stdout)["deployment"]
        [resource] = [
            r
            for r in deployment["resources"]
            if r["urn"].endswith(f"::{name}")
            and (r["type"] == type_ or type_.endswith("/") and r["type"].startswith(type_))
        ]
        return resource

    @property
    def stack_dir(self) -> Path:
        return Path(self.info["lxc"]["home"]) / "omni-provider"

    def docker_history(self) -> list[list[str]]:
        return docker_history({"home": self.info["lxc"]["home"]})

    def refresh_preview_and_drift_see_no_difference(self) -> dict:
        """`refresh`, then `preview --expect-no-changes` passes and the drift job says 0; its report."""
        from components.cli import drift

        self.pulumi("refresh", "--yes", "--skip-preview")
        proc = self.pulumi("preview", "--expect-no-changes", "--diff", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = drift.detect(self.stack.argv(*drift.PREVIEW_ARGS), self.stack.project_dir, self.stack.env())
        assert report["exit_code"] == 0, drift.summary(report)
        return report

    def kubeconfig_token(self) -> str:
        users = yaml.safe_load(self.kubeconfig())["users"]
        return users[0]["user"]["token"]


# The engine's RPC log at -v=9 prints every property it marshals, secrets included (README: Secrets): the only lines
# a secret may be on.
ENGINE_RPC_LOG = {"Marshaling property for RPC", "Unmarshaling property for RPC"}


def log_message(line: str) -> str:
    """The message of an engine log line (JSON, or glog's text after `] `), with the RPC label cut off."""
    try:
        message = json.loads(line)["msg"]
    except (ValueError, KeyError, TypeError):
        message = line.split("] ", 1)[-1]
    return re.sub(r"RPC\[.*", "RPC", message, flags=re.S)


@contextlib.contextmanager
def running_estate(tmp_path_factory, name: str):
    """A lab and a stack of their own, stopped afterwards."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        # The test's own omnictl calls (out-of-band drift, checks) must see this lab too.
        mp.setenv("OMNI_SCALE_LAB_DIR", str(root / "lab"))
        estate = Estate(root)
        try:
            yield estate
        finally:
            ctl.stop(estate.lab_dir)


# What a project copy runs as its program: swapped for an older commit's to make the state that code made.
PROGRAM = ("components", "__main__.py", "specs")


def program_at(commit: str) -> bytes:
    """The program as it was at commit (a tar archive from git)."""
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", commit, *PROGRAM], check=True, capture_output=True
    ).stdout


def swap_program(project: Path, archive: bytes | None) -> None:
    """The project copy's program: an older one from program_at, or the current one (archive None)."""
    for part in PROGRAM:
        target = project / part
        shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        if archive is None:
            (shutil.copytree if (PROJECT_ROOT / part).is_dir() else shutil.copy)(PROJECT_ROOT / part, target)
    if archive is not None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(project, filter="data")
        # Older seeds named the provider `proxmox`, an id the estate's provider never ran under; the lab registers
        # the one of today's spec, so the older program is run with it (nothing else of its spec changes).
        spec = project / "specs" / "omni.yaml"
        old = yaml.safe_load(spec.read_text())["infra_provider"]["id"]
        spec.write_text(
            spec.read_text()
            .replace(f"id: {old}\n", f"id: {PROVIDER_ID}\n")
            .replace(f"provider_id: {old}\n", f"provider_id: {PROVIDER_ID}\n")
        )
