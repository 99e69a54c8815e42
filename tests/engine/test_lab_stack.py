"""The real pulumi CLI runs the program against the lab: preview, up, no-change preview, a spec
change, drift made out of band, refresh, destroy; and the state never holds a secret in plain text.

The steps share one lab and one stack and run in file order, as an operator would run them.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from components.omnictl import Omnictl
from components.render import MACHINE_CLASS_TYPE, machine_class_document
from lab import ctl
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.engine

CLASS = "matrix-control-plane"


class Estate:
    def __init__(self, root: Path):
        self.project = root / "project"
        self.lab_dir = root / "lab"
        shutil.copytree(PROJECT_ROOT, self.project, ignore=shutil.ignore_patterns(
            ".venv", ".tools", ".lab", ".git", "tests", "__pycache__", "Pulumi.*.yaml", ".pytest_cache"))
        (self.project / ".venv").symlink_to(PROJECT_ROOT / ".venv")
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

    def set_spec_memory(self, memory: int) -> None:
        path = self.project / "specs" / "omni.yaml"
        data = yaml.safe_load(path.read_text())
        data["machine_classes"][CLASS]["provider_data"]["memory"] = memory
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def class_in_state(self) -> dict:
        deployment = json.loads(self.pulumi("stack", "export").stdout)["deployment"]
        [resource] = [r for r in deployment["resources"]
                      if r["urn"].endswith(f"pulumi-python:dynamic:Resource::{CLASS}")]
        return resource

    def state_text(self) -> str:
        files = list((self.stack.state_dir / ".pulumi").rglob("*.json"))
        assert files, "no state file written"
        return "\n".join(f.read_text() for f in files)

    def secrets(self) -> list[str]:
        return [self.info["omni"]["service_account_key"], self.info["proxmox"]["token_secret"]]


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    with pytest.MonkeyPatch.context() as mp:
        # The test's own omnictl calls (out-of-band drift, checks) must see this lab too.
        mp.setenv("OMNI_SCALE_LAB_DIR", str(root / "lab"))
        estate = Estate(root)
        yield estate
        ctl.stop(estate.lab_dir)


def _steps(preview: dict, op: str) -> list[dict]:
    return [s for s in preview.get("steps", []) if s["op"] == op
            and s["urn"].endswith(f"pulumi-python:dynamic:Resource::{CLASS}")]


def test_preview_shows_one_machine_class_create(estate):
    preview = estate.preview_json()
    assert len(_steps(preview, "create")) == 1
    assert estate.live_class() is None  # preview wrote nothing


def test_up_creates_the_class_in_omni(estate):
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 8192


def test_no_change_preview_passes_expect_no_changes(estate):
    proc = estate.pulumi("preview", "--expect-no-changes", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_memory_change_in_spec_is_an_update_of_that_field_only(estate):
    estate.set_spec_memory(16384)
    preview = estate.preview_json()
    [update] = _steps(preview, "update")
    old = update["oldState"]["inputs"]["provider_data"]
    new = update["newState"]["inputs"]["provider_data"]
    assert {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} == {"memory"}
    assert not _steps(preview, "replace") and not _steps(preview, "create")
    # What the operator reads: the one changed field, nothing else marked as changing.
    text = estate.pulumi("preview", "--diff").stdout
    resource_part = text.split("--outputs:--")[0]
    changed = [line.strip() for line in resource_part.splitlines() if line.strip().startswith("~ ")]
    assert changed[1:] == ["~ provider_data: {", "~ memory          : 8192 => 16384"], changed
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 16384


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


def test_state_holds_no_secret_in_plain_text(estate):
    state = estate.state_text()
    for secret in estate.secrets():
        assert secret and secret not in state
    config = (estate.project / "Pulumi.lab.yaml").read_text()
    for secret in estate.secrets():
        assert secret not in config


def test_destroy_leaves_no_machine_class_in_omni(estate):
    estate.pulumi("destroy", "--yes", "--skip-preview")
    assert estate.live_class() is None
    assert estate.omni.run("get", "machineclasses", "-o", "yaml").strip() == ""
