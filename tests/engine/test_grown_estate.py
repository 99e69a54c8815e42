"""The estate the operator's grew into (tests/fixtures/grown-estate.yaml: two clusters, three worker pools,
labels, extensions, a pinned class, two or more patches in every list) on the lab, against the real Omni:
`up`, then `refresh`, `preview --expect-no-changes` and drift all agree that nothing differs. Omni names the
i-th patch of a list by its position, and its export writes those ids back: they must compare equal."""

import shutil

import pytest
import yaml

from lab import provider_standin
from lab.processes import wait_until
from tests.conftest import PROJECT_ROOT
from tests.engine.estate import running_estate

pytestmark = pytest.mark.engine
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "grown") as estate:
        specs = estate.project / "specs"
        shutil.copy(FIXTURES / "grown-estate.yaml", specs / "omni.yaml")
        shutil.copytree(FIXTURES / "patches", specs / "patches")
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


def test_omni_numbered_every_patch_by_its_position(estate):
    exported = list(yaml.safe_load_all(estate.omni.export_template("talos-prod-01")))
    ids = {d["kind"] + ":" + d.get("name", ""): [p["idOverride"] for p in d.get("patches", [])] for d in exported}
    assert ids["Cluster:talos-prod-01"] == ["200-cluster-talos-prod-01-cilium-prep", "201-cluster-talos-prod-01-ntp"]
    assert ids["ControlPlane:"] == [
        "400-talos-prod-01-control-planes-etcd-quota",
        "401-talos-prod-01-control-planes-api-audit",
    ]
    assert ids["Workers:gpu"] == ["400-talos-prod-01-gpu-gpu-taint", "401-talos-prod-01-gpu-gpu-modules"]


def test_the_provider_built_every_machine_the_pinned_one_on_its_node(estate):
    vms = wait_until(
        lambda: (lambda v: len(v) == 10 and v)(estate.provider_vms()),
        None,
        "the provider's ten VMs",
        provider_standin.log_file(estate.lab_dir),
        120,
    )
    [gpu] = [vm for vm in vms if vm["tags"] == "machine-request.talos-prod-01-gpu"]
    assert gpu["node"] == "foxtrot" and gpu["maxmem"] == 32768 * 2**20 and gpu["maxcpu"] == 8


def test_refresh_preview_and_drift_see_no_difference(estate):
    estate.refresh_preview_and_drift_see_no_difference()
    second = estate.pulumi("up", "--yes", "--skip-preview")
    assert "syncing" not in second.stdout + second.stderr  # no re-sync, no wait, no new kubeconfig
