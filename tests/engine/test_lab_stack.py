"""The real pulumi CLI runs the program against the lab: preview, up of the seed estate (two
MachineClasses and talos-prod-01), no-change preview, spec changes, drift made out of band,
refresh, protection, destroy; and the state never holds a secret in plain text.

The steps share one lab and one stack and run in file order, as an operator would run them.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from components.omnictl import Omnictl
from components.proxmox import ProxmoxClient, ProxmoxNotFound, ProxmoxSettings
from components.render import MACHINE_CLASS_TYPE, machine_class_document
from lab import ctl
from tests.conftest import PROJECT_ROOT
from tests.lxc_host import docker_history

pytestmark = pytest.mark.engine

CLASS = "matrix-control-plane"
CLUSTER = "talos-prod-01"
DYNAMIC = "pulumi-python:dynamic:Resource"


class Estate:
    def __init__(self, root: Path):
        self.project = root / "project"
        self.lab_dir = root / "lab"
        shutil.copytree(PROJECT_ROOT, self.project, ignore=shutil.ignore_patterns(
            ".venv", ".tools", ".lab", ".git", "tests", "__pycache__", "Pulumi.*.yaml", ".pytest_cache"))
        (self.project / ".venv").symlink_to(PROJECT_ROOT / ".venv")
        (self.project / ".tools").symlink_to(PROJECT_ROOT / ".tools")
        (self.project / "Pulumi.lab.yaml").write_text(yaml.safe_dump({"config": {
            "omni-scale:omnictlPath": "lab/bin/omnictl", "omni-scale:protect": "false"}}))
        self.info = ctl.start(self.lab_dir)
        self.stack = ctl.LabStack(project_dir=self.project, state_dir=root / "state", lab_dir=self.lab_dir)
        self.stack.ensure_stack()
        self.stack.configure_from_lab(self.info)
        self.omni = Omnictl(binary=str(self.project / "lab" / "bin" / "omnictl"),
                            endpoint=self.info["omni"]["endpoint"],
                            service_account_key=self.info["omni"]["service_account_key"])

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

    def class_in_state(self) -> dict:
        deployment = json.loads(self.pulumi("stack", "export").stdout)["deployment"]
        [resource] = [r for r in deployment["resources"] if r["urn"].endswith(f"{DYNAMIC}::{CLASS}")]
        return resource

    def kubeconfig(self) -> str:
        outputs = json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout)
        return outputs["kubeconfigs"][CLUSTER]

    def state_text(self) -> str:
        files = list((self.stack.state_dir / ".pulumi").rglob("*.json"))
        assert files, "no state file written"
        return "\n".join(f.read_text() for f in files)

    def secrets(self) -> list[str]:
        stack = self.info["provider_stack"]
        private_key_body = self.info["lxc"]["ssh_private_key"].splitlines()[1]
        return [self.info["omni"]["service_account_key"], self.info["proxmox"]["token_secret"],
                self.info["lxc"]["root_password"], private_key_body, stack["tailscale_auth_key"],
                stack["omni_service_account_key"], stack["proxmox_token_secret"]]

    def pve(self) -> ProxmoxClient:
        return ProxmoxClient(ProxmoxSettings(self.info["proxmox"]["api_url"], "root@pam", self.info["lxc"]["root_password"],
                                             verify_tls=self.info["proxmox"]["cafile"]))

    def ct_config(self) -> dict | None:
        try:
            return self.pve().get("nodes/foxtrot/lxc/200/config")
        except ProxmoxNotFound:
            return None

    @property
    def stack_dir(self) -> Path:
        return Path(self.info["lxc"]["home"]) / "omni-provider"

    def docker_history(self) -> list[list[str]]:
        return docker_history({"home": self.info["lxc"]["home"]})

    def kubeconfig_token(self) -> str:
        users = yaml.safe_load(self.kubeconfig())["users"]
        return users[0]["user"]["token"]


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    with pytest.MonkeyPatch.context() as mp:
        # The test's own omnictl calls (out-of-band drift, checks) must see this lab too.
        mp.setenv("OMNI_SCALE_LAB_DIR", str(root / "lab"))
        estate = Estate(root)
        yield estate
        ctl.stop(estate.lab_dir)


def _steps(preview: dict, op: str, name: str = CLASS) -> list[dict]:
    return [s for s in preview.get("steps", []) if s["op"] == op and s["urn"].endswith(f"{DYNAMIC}::{name}")]


def test_preview_shows_the_seed_estate_to_create(estate):
    preview = estate.preview_json()
    creates = sorted(s["urn"].rsplit("::", 1)[1] for s in preview["steps"]
                     if s["op"] == "create" and DYNAMIC in s["urn"])
    assert creates == ["matrix", "matrix-control-plane", "matrix-worker", "omni-provider", "omni-provider-compose", CLUSTER]
    assert estate.live_class() is None and estate.ct_config() is None  # preview wrote nothing


def test_up_creates_the_classes_and_the_cluster(estate):
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 8192
    assert estate.live_workers() == 2
    outputs = json.loads(estate.pulumi("stack", "output", "--json").stdout)
    assert outputs["kubeconfigs"] == {CLUSTER: "[secret]"}
    assert outputs["totals"]["all"] == {"machines": 5, "cores": 28, "memory_mb": 57344, "disk_gb": 320}


def test_up_created_the_provider_lxc_and_deployed_its_compose_stack(estate):
    config = estate.ct_config()
    assert (config["hostname"], config["cores"], config["memory"]) == ("omni-provider", 1, 1024)
    assert config["features"] == "keyctl=1,nesting=1" and config["dev0"] == "/dev/net/tun"
    assert "bridge=vmbr0" in config["net0"] and "ip=192.168.3.10/24" in config["net0"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in estate.stack_dir.iterdir()}
    assert modes == {"compose.yml": 0o644, "config.yaml": 0o600, ".env": 0o600}
    compose = yaml.safe_load((estate.stack_dir / "compose.yml").read_text())
    assert compose["services"]["provider"]["image"].endswith(":v0.3.0")
    # Validated by the compose-spec schema where it runs, then started; the classes came after.
    assert estate.docker_history() == [["compose", "config", "--quiet"], ["compose", "up", "-d"]]


def test_no_change_preview_passes_expect_no_changes(estate):
    proc = estate.pulumi("preview", "--expect-no-changes", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_second_up_changes_nothing_and_starts_nothing(estate):
    before = estate.docker_history()
    out = estate.pulumi("up", "--yes", "--skip-preview").stdout
    assert "created" not in out and "updated" not in out.split("Resources:")[1], out
    assert [argv for argv in estate.docker_history()[len(before):] if argv[:2] == ["compose", "up"]] == []


def test_lxc_memory_changed_in_proxmox_is_drift_and_up_puts_it_back(estate):
    estate.pve().call("PUT", "nodes/foxtrot/lxc/200/config", memory=2048)
    drift = estate.pulumi("refresh", "--preview-only", "--expect-no-changes", "--diff", check=False)
    assert drift.returncode != 0 and "~ memory        : 1024 => 2048" in drift.stdout, drift.stdout
    estate.pulumi("refresh", "--yes", "--skip-preview")
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.ct_config()["memory"] == 1024


def test_memory_change_in_spec_is_an_update_of_that_field_only(estate):
    estate.set_spec_memory(16384)
    preview = estate.preview_json()
    [update] = _steps(preview, "update")
    assert not _steps(preview, "update", CLUSTER)
    old = update["oldState"]["inputs"]["provider_data"]
    new = update["newState"]["inputs"]["provider_data"]
    assert {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} == {"memory"}
    assert not _steps(preview, "replace") and not _steps(preview, "create")
    # What the operator reads: the one changed field, nothing else marked as changing.
    text = estate.pulumi("preview", "--diff").stdout
    resource_part = text.split("--outputs:--")[0]
    # The preflight re-checks capacity for the new size (its recorded spec changes too).
    class_part = resource_part.split(f"{DYNAMIC}::{CLASS}]")[1].split(f"~ {DYNAMIC}: (update)")[0]
    changed = [line.strip() for line in class_part.splitlines() if line.strip().startswith("~ ")]
    assert changed == ["~ provider_data: {", "~ memory          : 8192 => 16384"], changed
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 16384


def test_worker_count_change_is_an_update_of_the_cluster_template(estate):
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=3))
    preview = estate.preview_json()
    [update] = _steps(preview, "update", CLUSTER)
    assert not _steps(preview, "replace", CLUSTER) and not _steps(preview, "update")
    old, new = update["oldState"]["inputs"]["template"], update["newState"]["inputs"]["template"]
    assert old.replace("  size: 2\n", "  size: 3\n") == new
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_workers() == 3
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_refresh_reports_drift_made_out_of_band(estate):
    drifted = machine_class_document(CLASS, "Proxmox", {
        "cores": 4, "sockets": 1, "memory": 4096, "disk_size": 40, "network_bridge": "vmbr0",
        "storage_selector": 'name == "vm_ssd"'})
    estate.omni.apply(drifted)
    drift = estate.pulumi("refresh", "--preview-only", "--expect-no-changes", "--diff", check=False)
    assert drift.returncode != 0, drift.stdout
    assert "[diff: ~provider_data]" in drift.stdout or "~ provider_data" in drift.stdout
    assert "16384 => 4096" in drift.stdout
    estate.pulumi("refresh", "--yes", "--skip-preview")
    recorded = estate.class_in_state()
    assert recorded["outputs"]["provider_data"]["memory"] == 4096
    assert recorded["inputs"]["provider_data"]["memory"] == 4096
    # The spec still says 16384: the next preview wants to put it back.
    assert len(_steps(estate.preview_json(), "update")) == 1
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 16384


def test_a_bad_spec_stops_preview_with_one_clear_message(estate):
    path = estate.project / "specs" / "omni.yaml"
    good = path.read_text()
    try:
        estate.set_spec_memory(1024)
        proc = estate.pulumi("preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "machine_classes.matrix-control-plane.provider_data.memory" in out
        assert "greater than or equal to 2048" in out and "Traceback" not in out
    finally:
        path.write_text(good)


def test_preflight_stops_preview_with_every_problem_before_anything_is_applied(estate):
    path = estate.project / "specs" / "omni.yaml"
    good = path.read_text()
    try:
        estate.edit_spec(lambda d: d["machine_classes"]["matrix-worker"]["provider_data"].update(
            storage_selector='name == "nvme"', memory=32768))
        proc = estate.pulumi("up", "--yes", "--skip-preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        for node in ("foxtrot", "golf", "hotel"):
            assert f"class matrix-worker on node {node}: no storage matches selector" in out
        assert "Traceback" not in out
        assert estate.live_workers() == 3  # nothing was applied: the class keeps its old size
        live = yaml.safe_load(estate.omni.get(MACHINE_CLASS_TYPE, "matrix-worker", "default")["spec"]
                              ["autoprovision"]["providerdata"])
        assert live["memory"] == 16384
    finally:
        path.write_text(good)


def test_state_holds_no_secret_in_plain_text(estate):
    state = estate.state_text()
    for secret in estate.secrets() + [estate.kubeconfig_token()]:
        assert secret and secret not in state
    config = (estate.project / "Pulumi.lab.yaml").read_text()
    for secret in estate.secrets():
        assert secret not in config


def test_destroy_is_refused_while_protected_and_the_deliberate_path_works(estate):
    estate.set_config("omni-scale:protect", "true")
    estate.pulumi("up", "--yes", "--skip-preview")  # protection is a state-only change
    refused = estate.pulumi("destroy", "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert estate.live_workers() == 3 and estate.live_class() is not None
    assert estate.ct_config()["protection"] == 1 and estate.stack_dir.exists()
    # The documented deliberate act: unprotect in config, apply, then destroy.
    estate.set_config("omni-scale:protect", "false")
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.ct_config()["protection"] == 0  # Proxmox's own flag follows the stack's protect
    estate.pulumi("destroy", "--yes", "--skip-preview")
    assert estate.ct_config() is None
    assert estate.docker_history()[-1] == ["compose", "down"]
    assert not any("-v" in argv or "--volumes" in argv for argv in estate.docker_history())
    assert estate.live_class() is None
    assert estate.omni.run("get", "machineclasses", "-o", "yaml").strip() == ""
    assert estate.omni.run("get", "clusters", "-o", "yaml").strip() == ""
