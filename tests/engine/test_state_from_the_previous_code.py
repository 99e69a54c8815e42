"""An existing prod state keeps working across this change: a lab estate built by the previous code
(components/, __main__.py and its spec as the last commit before the living-estate change left them, taken from
git) previews under the current code and spec with nothing replaced, deleted or created, and converges with one
`up`. The current spec gives the cluster its CNI (Cilium in its manifests), which the previous one lacked: that
is the one change, with the once-only renewal of the cluster's kubeconfig."""

import io
import shutil
import subprocess
import tarfile

import pytest

from tests.conftest import PROJECT_ROOT
from lab import ctl
from tests.engine.estate import CLUSTER, running_estate

pytestmark = pytest.mark.engine
PREVIOUS = "1b10116a89d1ab4ad1fed86f8f11b4d91411d77f"
PROGRAM = ("components", "__main__.py", "specs")


def _swap_program(project, archive: bytes | None) -> None:
    """The project copy's program: the previous one from a git archive, or the current one (archive None)."""
    for part in PROGRAM:
        target = project / part
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        if archive is None:
            (shutil.copytree if (PROJECT_ROOT / part).is_dir() else shutil.copy)(PROJECT_ROOT / part, target)
    if archive is not None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(project, filter="data")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", PREVIOUS, *PROGRAM], check=True,
                             capture_output=True).stdout
    with running_estate(tmp_path_factory, "previous") as estate:
        _swap_program(estate.project, archive)
        # Before Cilium was part of the template, the operator installed it by hand once the API answered: how
        # that estate's cluster became Ready at all.
        ctl.install_cni_by_hand(CLUSTER, estate.lab_dir)
        # The previous code does not wait for the provider to register after `compose up`: its first `up`
        # on an empty lab stops at the classes (this change's point 4); the operator's second one finishes.
        if estate.pulumi("up", "--yes", "--skip-preview", check=False).returncode != 0:
            estate.pulumi("up", "--yes", "--skip-preview")
        _swap_program(estate.project, None)
        yield estate


def test_the_current_code_replaces_and_deletes_nothing(estate):
    steps = [s for s in estate.preview_json()["steps"]
             if s["op"] != "same" and not s["urn"].endswith("pulumi:pulumi:Stack::omni-scale-lab")]
    # The preflight checks the spec, which changed; the cluster gets its CNI; the placement reading is new.
    assert {s["urn"].rsplit("::", 1)[1]: s["op"] for s in steps} == {
        "matrix": "update", "talos-prod-01": "update", "control-plane-placement": "create"}
    [cluster] = [s for s in steps if s["urn"].endswith("::talos-prod-01")]
    # Cilium, new in the spec; and no kubeconfig minting time in that state: the first `up` renews it once.
    assert [m["name"] for m in cluster["newState"]["inputs"]["manifests"]] == ["cilium"]


def test_one_up_converges_without_a_deployment(estate):
    up = estate.pulumi("up", "--yes", "--skip-preview")
    out = up.stdout + up.stderr
    assert "minting a kubeconfig" in out and "deploying" not in out, out
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
