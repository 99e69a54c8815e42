"""Drift detection and adoption on a lab estate, with the real pulumi CLI.

Drift: one test per kind of out-of-band change, each asserting the exit code (0 none, 1 drift, 2 could
not judge) and what the summary says; each puts the estate back with `up` (or undoes the fault).
Adoption: the estate is built by a stack that is then forgotten (`pulumi stack rm --force` keeps every
resource), a new stack adopts it, and `preview --expect-no-changes` passes; an out-of-band difference
present at adoption shows as exactly that difference.
"""

import copy
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from components.cli import adoption, drift, keys
from components.core.spec_file import load_spec
from components.omni.render import MACHINE_CLASS_TYPE, machine_class_document
from lab import omni_lab
from tests.conftest import SEED_CONTROL_PLANE_DATA
from tests.engine.estate import CLASS, CLUSTER, PROVIDER_ID, call_failed, running_estate

pytestmark = pytest.mark.engine
SPARE = "matrix-spare"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "drift") as estate:
        # A class no cluster uses (Omni refuses to delete one a machine set uses): the one deleted out of band.
        estate.edit_spec(
            lambda d: d["machine_classes"].update({SPARE: copy.deepcopy(d["machine_classes"]["matrix-worker"])})
        )
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


@pytest.fixture(autouse=True)
def put_back_after_a_failure(estate, request):
    """Each test puts the estate back itself; one that failed half-way may not have: `up --refresh` does, so the
    next test starts from the spec and not from this one's leftovers."""
    yield
    if call_failed(request.node):
        estate.pulumi("up", "--yes", "--skip-preview", "--refresh", check=False)


def run_drift(estate, tmp_path, extra_env: dict | None = None):
    report_path = tmp_path / "drift.json"
    env = {**estate.stack.env(), **(extra_env or {})}
    report = drift.detect(estate.stack.argv(*drift.PREVIEW_ARGS), estate.stack.project_dir, env, record=_recording())
    code = drift.report_and_exit_code(report, str(report_path), estate.stack.stack)
    assert json.loads(report_path.read_text())["exit_code"] == code
    return code, drift.summary(report), report


def _recording() -> Path | None:
    """With OMNI_SCALE_RECORD_DRIFT_EVENTS=DIR, where the engine's stream of this test's first drift run goes (how
    tests/fixtures/drift-events was made: tests/unit/test_drift_recorded.py judges them again)."""
    directory = os.environ.get("OMNI_SCALE_RECORD_DRIFT_EVENTS")
    if not directory:
        return None
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0].removeprefix("test_")
    target = Path(directory) / f"{test}.json.gz"
    return None if target.exists() else target


def converge(estate):
    estate.pulumi("up", "--yes", "--skip-preview", "--refresh")


def class_document(memory: int) -> dict:
    return machine_class_document(CLASS, PROVIDER_ID, {**SEED_CONTROL_PLANE_DATA, "memory": memory})


def resync_cluster(estate, edit):
    documents = list(yaml.safe_load_all(estate.omni.export_template(CLUSTER)))
    edit(documents)
    estate.omni.template("sync", yaml.safe_dump_all(documents, sort_keys=False))


def test_no_drift_after_a_clean_up(estate, tmp_path):
    code, text, report = run_drift(estate, tmp_path)
    assert (code, report["resources"], report["preflight"]) == (0, [], []), text
    assert text == "drift: none; the live estate matches the spec"


def test_keys_due_for_renewal_are_drift_named_without_the_keys(estate, tmp_path):
    # The lab's admin key lives a year, as omnictl's do, and so do the provider's Omni key and Proxmox token the
    # program made (the drift job's key lives 90 days): a window longer than that makes all four due now.
    estate.set_config("omni-scale:keyExpiryWarningDays", "400")
    try:
        preview = estate.pulumi("preview")
        assert "[key expiry] the program's key (service account 'infra-provider:" in preview.stdout
        code, text, report = run_drift(estate, tmp_path)
        assert code == 1 and report["resources"] == [], text
        omni_keys, [proxmox_token] = report["keys"][:3], report["keys"][3:]
        assert [k.split(" (")[0] for k in omni_keys] == ["omniServiceAccountKey"] + ["the program's key"] * 2
        accounts = sorted(k.split("service account ")[1].split(",")[0] for k in omni_keys)
        assert accounts == ["'automation'", "'drift'", f"'infra-provider:{PROVIDER_ID}'"]
        assert proxmox_token.startswith("the provider's Proxmox token omni-provider@pve!omni-scale-1 expires at ")
        assert "  key: omniServiceAccountKey (service account " in text and "renew it" in text
        assert "`pulumi up` renews it" in text
        secrets = [estate.info["omni"]["service_account_key"], *estate.managed_keys().values()]
        assert len(secrets) == 3 and not any(key in preview.stdout + preview.stderr + text for key in secrets)
    finally:
        estate.pulumi("config", "rm", "omni-scale:keyExpiryWarningDays")
    assert run_drift(estate, tmp_path)[0] == 0


def test_the_drift_job_runs_as_the_reader_the_program_made(estate, tmp_path, capfd):
    """`make service-account-key NAME=drift OUT=...` writes the Reader's key once, 0600; the drift job run with it
    (OMNI_SCALE_OMNI_KEY, its CI secret) judges as the admin key does, and that key can change nothing."""
    key_file = tmp_path / "drift.key"
    assert keys.hand_out("drift", key_file, estate.stack.argv, estate.stack.project_dir, estate.stack.env(), False) == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    reader_key = key_file.read_text().strip()
    assert reader_key == estate.managed_keys()["drift"] and reader_key not in capfd.readouterr().out
    as_reader = {"OMNI_SCALE_OMNI_KEY": reader_key}
    assert run_drift(estate, tmp_path, as_reader)[0] == 0
    estate.omni.apply(class_document(4096))
    code, text, report = run_drift(estate, tmp_path, as_reader)
    assert code == 1 and [r["name"] for r in report["resources"]] == [CLASS], text
    refused = estate.stack.run("up", "--yes", "--skip-preview", "--refresh", check=False, extra_env=as_reader)
    assert refused.returncode != 0 and "insufficient role" in refused.stdout + refused.stderr
    assert estate.live_memory() == 4096
    converge(estate)
    assert run_drift(estate, tmp_path)[0] == 0


def test_class_memory_changed_out_of_band(estate, tmp_path):
    estate.omni.apply(class_document(4096))
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    [resource] = report["resources"]
    assert (resource["name"], resource["type"], resource["change"]) == (
        CLASS,
        "omni-scale:omni:MachineClass",
        "differs",
    )
    assert resource["fields"] == [{"field": "provider_data.memory", "live": 4096, "desired": 8192}]
    assert "provider_data.memory: live 4096, desired 8192" in text
    converge(estate)
    assert run_drift(estate, tmp_path)[0] == 0


def test_class_deleted_out_of_band(estate, tmp_path):
    estate.omni.delete(MACHINE_CLASS_TYPE, SPARE, "default")
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    assert [(r["name"], r["change"]) for r in report["resources"]] == [(SPARE, "missing (would be created)")]
    assert f"{SPARE} (omni-scale:omni:MachineClass): missing (would be created)" in text
    converge(estate)
    assert estate.omni.get_or_none(MACHINE_CLASS_TYPE, SPARE, "default") is not None


def test_worker_count_changed_out_of_band(estate, tmp_path):
    resync_cluster(estate, lambda docs: next(d for d in docs if d["kind"] == "Workers")["machineClass"].update(size=5))
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    [resource] = report["resources"]
    assert resource["name"] == CLUSTER and [f["field"] for f in resource["fields"]] == ["template"]
    assert "live    |   size: 5" in text and "desired |   size: 2" in text
    converge(estate)
    assert estate.live_workers() == 2


def test_patch_edited_out_of_band(estate, tmp_path):
    def edit(docs):
        patch = next(d for d in docs if d["kind"] == "Cluster")["patches"][0]
        if isinstance(patch["inline"], str):  # export writes inline patches back as YAML text
            patch["inline"] = patch["inline"].replace("disabled: true", "disabled: false")
        else:
            patch["inline"]["cluster"]["proxy"]["disabled"] = False

    resync_cluster(estate, edit)
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    assert [r["name"] for r in report["resources"]] == [CLUSTER]
    assert "live    |         disabled: false" in text and "desired |         disabled: true" in text
    converge(estate)


def test_lxc_memory_changed_in_proxmox(estate, tmp_path):
    estate.pve().call("PUT", "nodes/foxtrot/lxc/200/config", memory=2048)
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    [resource] = report["resources"]
    assert (resource["name"], resource["type"]) == ("omni-provider", "omni-scale:proxmox:ProviderLxc")
    assert resource["fields"] == [{"field": "memory", "live": 2048, "desired": 1024}]
    converge(estate)
    assert estate.ct_config()["memory"] == 1024


def test_operator_value_changed_by_an_out_of_band_helm_upgrade(estate, tmp_path):
    where = ("tailscale-operator", "--namespace", "tailscale")
    chart = ("tailscale-operator", "--repo", estate.info["kubernetes"]["chart_repository"], "--version", "1.102.3")
    upgraded = estate.helm(
        "upgrade",
        *where[:1],
        *chart,
        *where[1:],
        "--reuse-values",
        "--set",
        "operatorConfig.hostname=someone-elses-operator",
    )
    assert upgraded.returncode == 0, upgraded.stderr
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1, text
    [resource] = report["resources"]
    assert (resource["name"], resource["type"], resource["change"]) == (
        "tailscale-operator",
        "kubernetes:helm.sh/v3:Release",
        "differs",
    )
    # The values are a secret (the OAuth pair is in them): the report names the field, never its content.
    assert resource["fields"] == [
        {"field": "values.operatorConfig.hostname", "live": "[secret]", "desired": "[secret]"}
    ]
    assert "someone-elses" not in json.dumps(report)
    converge(estate)
    assert estate.release()["values"]["operatorConfig"]["hostname"] == "talos-prod-01-operator"
    assert run_drift(estate, tmp_path)[0] == 0


def test_storage_removed_from_a_node_is_preflight_drift(estate, tmp_path):
    api = estate.pve()
    api.call("PUT", "storage/vm_ssd", nodes="foxtrot,golf")
    try:
        code, text, report = run_drift(estate, tmp_path)
        assert code == 1, text
        assert report["preflight"] == [
            f"class {c} on node hotel: selector picks storage vm_ssd, which is disabled on this node "
            "(storage.cfg `disable`, or a `nodes` list without it)"
            for c in ("matrix-control-plane", SPARE, "matrix-worker")
        ]
    finally:
        api.call("PUT", "storage/vm_ssd", delete="nodes")
    assert run_drift(estate, tmp_path)[0] == 0


def test_unreachable_omni_cannot_be_judged(estate, tmp_path):
    omni_lab.set_reachable(estate.info["omni"], False)
    try:
        code, text, report = run_drift(estate, tmp_path)
        assert code == 2, text
        # The cluster's template, its 3 classes, the 2 service accounts' identities, the backup store and the
        # cluster's backups: each read once, each refused.
        assert len(report["errors"]) == 8 and all("could not reach Omni" in e for e in report["errors"]), text
        assert "omnictl cluster template export could not reach Omni" in text
    finally:
        omni_lab.set_reachable(estate.info["omni"], True)
    assert run_drift(estate, tmp_path)[0] == 0


# -------------------------------------------------------------------------------------- adoption


def test_adoption_shows_its_plan_and_writes_only_once_confirmed(estate, tmp_path, capfd):
    # Forget the stack that built it: every resource stays where it is.
    estate.forget_the_stack()
    compose_ups = len([a for a in estate.docker_history() if a[:2] == ["compose", "up"]])
    # One difference made before adoption: it must show afterwards, as exactly that.
    estate.omni.apply(class_document(6144))
    spec = load_spec(estate.project / "specs" / "omni.yaml")
    adopt = dict(spec=spec, pulumi_argv=estate.stack.argv, cwd=estate.stack.project_dir, env=estate.stack.env())
    capfd.readouterr()

    # No --yes and no terminal to ask at: the plan, the credentials it would mint, and nothing written.
    assert adoption.adopt(**adopt, yes=False, ask=None) == 1
    printed = capfd.readouterr().out
    assert "default/matrix-worker" in printed and "foxtrot/200" in printed  # the list, with the ids read by
    assert "+ " in printed and "create" in printed  # pulumi's plan
    assert "it mints these credentials" in printed and "Omni service account 'omni-scale'" in printed
    assert printed.rstrip().endswith("run again with --yes to adopt as planned)")
    state = json.loads(estate.pulumi("stack", "export").stdout)["deployment"]
    assert [r for r in state.get("resources", []) if r["type"] != "pulumi:pulumi:Stack"] == []
    # Asked at a terminal, anything but yes writes nothing either.
    assert adoption.adopt(**adopt, yes=False, ask=lambda _prompt: "no") == 1

    assert adoption.adopt(**adopt, yes=True) == 0
    adopted = capfd.readouterr()
    assert "taken over as it is" in adopted.out + adopted.err
    assert estate.live_memory() == 6144  # adoption wrote nothing
    assert len([a for a in estate.docker_history() if a[:2] == ["compose", "up"]]) == compose_ups
    code, text, report = run_drift(estate, tmp_path)
    assert code == 1 and [(r["name"], r["fields"]) for r in report["resources"]] == [
        (CLASS, [{"field": "provider_data.memory", "live": 6144, "desired": 8192}])
    ], text
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    assert estate.live_memory() == 8192
