"""Talos and Kubernetes upgrades through `up` on the lab's real Omni: named in preview and checked against what Omni
offers, applied as two syncs (Talos, then Kubernetes after its pre-checks) with the cluster healthy between, stopped
by failing pre-checks with the Talos step kept, and continued by the next `up`.

The estate starts a step back from the seed (Talos v1.11.5, Kubernetes v1.33.6), so there are two upgrades to make:
to the seed's versions, then to Talos v1.12.1 and Kubernetes v1.35.0 (the newest the lab's Omni offers)."""

import pytest
import yaml

from lab import ctl
from tests.engine.estate import CLUSTER, running_estate

pytestmark = pytest.mark.engine
START = {"talos_version": "v1.11.5", "kubernetes_version": "v1.33.6"}
FINDINGS = "NODE   COMPONENT        REMOVED FEATURE GATE\ncp-1   kube-apiserver   SomeGate\n"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "upgrades") as estate:
        estate.edit_spec(lambda d: d["clusters"][CLUSTER].update(START))
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


def set_versions(estate, talos: str, kubernetes: str) -> None:
    estate.edit_spec(lambda d: d["clusters"][CLUSTER].update(talos_version=talos, kubernetes_version=kubernetes))


def live_versions(estate) -> tuple[str, str]:
    spec = estate.omni.get("Clusters.omni.sidero.dev", CLUSTER, "default")["spec"]
    return spec["talosversion"], spec["kubernetesversion"]


def recorded_up(estate, tmp_path, check=True):
    """`up`, with every omnictl argv recorded: (the run, the upgrade's argvs in order: syncs and pre-checks)."""
    log = tmp_path / f"argv-{len(list(tmp_path.iterdir()))}.log"
    run = estate.stack.run(
        "up", "--yes", "--skip-preview", check=check, extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(log)}
    )
    argvs = ctl.logged_argvs(log)
    steps = [
        "sync" if a[:3] == ["cluster", "template", "sync"] else f"pre-checks --to {a[a.index('--to') + 1]}"
        for a in argvs
        if a[:3] == ["cluster", "template", "sync"] or a[:3] == ["cluster", "kubernetes", "upgrade-pre-checks"]
    ]
    return run, steps


def test_an_unknown_target_stops_preview_with_one_line(estate):
    set_versions(estate, "v1.99.0", START["kubernetes_version"])
    preview = estate.pulumi("preview", check=False)
    out = preview.stdout + preview.stderr
    assert preview.returncode != 0 and "Traceback" not in out
    assert f"cluster {CLUSTER}: talos v1.99.0 is not a version Omni offers (it offers v1.10.7, v1.11.5, " in out
    set_versions(estate, START["talos_version"], START["kubernetes_version"])


def test_a_kubernetes_jump_of_two_minors_is_refused(estate):
    set_versions(estate, START["talos_version"], "v1.35.0")
    preview = estate.pulumi("preview", check=False)
    out = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert "kubernetes v1.33.6 → v1.35.0 skips a minor version: Omni upgrades Kubernetes one minor at a time" in out
    set_versions(estate, START["talos_version"], START["kubernetes_version"])
    assert live_versions(estate) == ("1.11.5", "1.33.6")


def test_a_talos_and_a_kubernetes_bump_are_two_syncs_talos_first_with_the_pre_checks_between(estate, tmp_path):
    set_versions(estate, "v1.11.6", "v1.34.3")
    preview = estate.pulumi("preview")
    assert (
        f"cluster {CLUSTER}: upgrade planned, one sync per step with the cluster healthy between: "
        "talos v1.11.5 → v1.11.6, then kubernetes v1.33.6 → v1.34.3 (Kubernetes' upgrade pre-checks first)"
    ) in preview.stdout + preview.stderr
    run, steps = recorded_up(estate, tmp_path)
    assert steps == ["sync", "pre-checks --to 1.34.3", "sync"], steps
    out = run.stdout + run.stderr
    order = [
        out.index(f"cluster {CLUSTER}: upgrading talos v1.11.5 → v1.11.6"),
        out.index(f"cluster {CLUSTER}: talos upgrade: done"),
        out.index(f"cluster {CLUSTER} is ready"),
        out.index(f"cluster {CLUSTER}: running Kubernetes' upgrade pre-checks for v1.34.3"),
        out.index(f"cluster {CLUSTER}: upgrading kubernetes v1.33.6 → v1.34.3"),
    ]
    assert order == sorted(order), out
    assert live_versions(estate) == ("1.11.6", "1.34.3")
    estate.refresh_preview_and_drift_see_no_difference()


def test_failing_pre_checks_stop_the_kubernetes_step_and_the_next_up_goes_on(estate, tmp_path):
    ctl.set_pre_check_findings(CLUSTER, FINDINGS, directory=estate.lab_dir)
    set_versions(estate, "v1.12.1", "v1.35.0")
    run, steps = recorded_up(estate, tmp_path, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out
    assert steps == ["sync", "pre-checks --to 1.35.0"], steps
    assert "the upgrade pre-checks for kubernetes v1.35.0 failed, so the kubernetes step was not applied" in out
    assert "cp-1   kube-apiserver   SomeGate" in out
    assert live_versions(estate) == ("1.12.1", "1.34.3")  # the Talos step done, nothing of the Kubernetes one
    ctl.set_pre_check_findings(CLUSTER, None, directory=estate.lab_dir)
    run, steps = recorded_up(estate, tmp_path)
    assert steps == ["pre-checks --to 1.35.0", "sync"], steps
    assert f"cluster {CLUSTER}: talos is at v1.12.1 already: that step is done" in run.stdout + run.stderr
    assert live_versions(estate) == ("1.12.1", "1.35.0")
    exported = yaml.safe_load_all(estate.omni.export_template(CLUSTER))
    cluster = next(d for d in exported if d.get("kind") == "Cluster")
    assert (cluster["talos"]["version"], cluster["kubernetes"]["version"]) == ("v1.12.1", "v1.35.0")
    estate.refresh_preview_and_drift_see_no_difference()
