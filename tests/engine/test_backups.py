"""etcd backups on the lab's real Omni and its S3 (moto, in Omni's network namespace, checking keys as S3 does):
the store set from the spec with its keys in no plain text, Omni's refusal of a wrong key with nothing changed, the
interval in the template, a manual backup reported as Omni ends it, a stale backup as drift, and a restore: refused
without confirmation or with a snapshot the store does not hold, then carried out as far as the lab allows.

What the lab cannot do: take a backup. Omni snapshots etcd through a control plane's Talos API, which no lab machine
has, so every attempt fails with Omni's "talos API client is not available"; a backup is modelled by putting an
object where Omni puts one (lab/s3_lab.py put_snapshot), which Omni lists but cannot decrypt."""

import time

import pytest
import yaml

from components.cli import drift
from components.cli.backup import take_backup
from components.omni.etcd_backups import S3_CONFIG_ID, S3_CONFIG_TYPE, STORE_STATUS_ID, STORE_STATUS_TYPE
from lab import s3_lab
from tests.conftest import PROJECT_ROOT
from tests.engine.estate import CLUSTER, ENGINE_RPC_LOG, log_message, running_estate

pytestmark = pytest.mark.engine
BUCKET = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())["backups"]["s3"]["bucket"]


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "backups") as estate:
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


def live_store(estate) -> dict:
    return estate.omni.get(S3_CONFIG_TYPE, S3_CONFIG_ID, "default")["spec"]


def cluster_uuid(estate) -> str:
    return estate.omni.get("ClusterUUIDs.omni.sidero.dev", CLUSTER, "default")["spec"]["uuid"]


def said(run) -> str:
    return run.stdout + run.stderr


def run_drift(estate) -> dict:
    return drift.detect(estate.stack.argv(*drift.PREVIEW_ARGS), estate.stack.project_dir, estate.stack.env())


def test_the_store_is_set_from_the_spec_and_omni_uses_it(estate):
    spec = live_store(estate)
    s3 = estate.info["s3"]
    assert (spec["bucket"], spec["endpoint"], spec["accesskeyid"]) == (BUCKET, s3["endpoint"], s3["access_key_id"])
    status = estate.omni.get(STORE_STATUS_TYPE, STORE_STATUS_ID, "ephemeral")["spec"]
    assert status.get("configurationname") == "s3" and not status.get("configurationerror")


def test_the_interval_is_in_the_clusters_template(estate):
    exported = estate.omni.export_template(CLUSTER)
    cluster = next(d for d in yaml.safe_load_all(exported) if d and d["kind"] == "Cluster")
    assert cluster["features"]["backupConfiguration"] == {"interval": "6h0m0s"}


def test_a_wrong_secret_is_refused_by_omni_without_the_secret_and_nothing_changes(estate):
    before = live_store(estate)
    right = estate.info["s3"]["secret_access_key"]
    estate.stack.set_config("omni-scale:backupS3SecretAccessKey", "not-the-secret-" + right[:4], secret=True)
    try:
        run = estate.pulumi("up", "--yes", "--skip-preview", check=False)
        out = run.stdout + run.stderr
        assert run.returncode != 0 and "Traceback" not in out
        assert f"Omni refused the store (bucket '{BUCKET}' at {estate.info['s3']['endpoint']})" in out
        assert "SignatureDoesNotMatch" in out and "not-the-secret" not in out
        assert live_store(estate) == before
    finally:
        estate.stack.set_config("omni-scale:backupS3SecretAccessKey", right, secret=True)
    estate.refresh_preview_and_drift_see_no_difference()


def test_the_keys_show_only_in_the_engines_rpc_log_at_v9_and_never_in_argv_or_state(estate, tmp_path):
    """A store change at -v=9 (its region): the keys reach omnictl in a 0600 file, never its argv; the state holds
    them encrypted; of the run's output only the engine's own RPC lines hold them (README: Secrets)."""
    argv_log = tmp_path / "argv.log"
    estate.edit_spec(lambda d: d["backups"]["s3"].update(region="eu-west-1"))
    try:
        run = estate.stack.run(
            "up",
            "--yes",
            "--skip-preview",
            "--logtostderr",
            "-v=9",
            extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(argv_log)},
        )
    finally:
        estate.edit_spec(lambda d: d["backups"]["s3"].update(region="us-east-1"))
    assert live_store(estate)["region"] == "eu-west-1"
    keys = [estate.info["s3"]["access_key_id"], estate.info["s3"]["secret_access_key"]]
    lines = (run.stdout + run.stderr).splitlines()
    assert any("EtcdBackupStore" in line for line in lines)
    assert {log_message(line) for line in lines if any(k in line for k in keys)} <= ENGINE_RPC_LOG
    argvs = argv_log.read_text()
    assert '"apply"' in argvs and not any(k in argvs for k in keys)
    exported = estate.pulumi("stack", "export").stdout
    assert not any(k in exported for k in keys)
    assert not any(k in estate.pulumi("stack", "output", "--json").stdout for k in keys)
    estate.pulumi("up", "--yes", "--skip-preview")
    assert live_store(estate)["region"] == "us-east-1"


def test_a_store_deleted_in_omni_is_drift_and_up_sets_it_again(estate):
    estate.omni.delete(S3_CONFIG_TYPE, S3_CONFIG_ID, "default")
    report = run_drift(estate)
    assert report["exit_code"] == drift.DRIFT, drift.summary(report)
    assert [(r["name"], r["change"]) for r in report["resources"]] == [
        ("etcd-backup-store", "missing (would be created)")
    ]
    estate.pulumi("up", "--yes", "--skip-preview", "--refresh")
    assert live_store(estate)["bucket"] == BUCKET


def test_a_manual_backup_waits_for_omni_and_reports_how_its_attempt_ended(estate, capsys):
    started = time.monotonic()
    code = take_backup(CLUSTER, estate.stack.argv, estate.stack.project_dir, estate.stack.env(), 180)
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"asked Omni for a backup of cluster {CLUSTER}" in err
    assert f"Omni's backup of cluster {CLUSTER} failed: " in err and "talos API client is not available" in err
    assert time.monotonic() - started < 180
    assert take_backup("no-such-cluster", estate.stack.argv, estate.stack.project_dir, estate.stack.env(), 5) == 2


def test_a_backup_older_than_twice_the_interval_is_drift_and_a_recent_one_is_not(estate):
    uuid = cluster_uuid(estate)
    s3_lab.put_snapshot(estate.info["s3"], uuid, int(time.time()) - 13 * 3600)
    report = run_drift(estate)
    assert report["exit_code"] == drift.DRIFT and report["resources"] == [], drift.summary(report)
    [stale] = report["backups"]
    assert stale.startswith(f"cluster {CLUSTER}: its newest etcd backup (") and "is 13.0h old" in stale
    assert "more than 2 x its 6h interval" in stale
    s3_lab.put_snapshot(estate.info["s3"], uuid, int(time.time()) - 60)
    report = run_drift(estate)
    assert report["exit_code"] == drift.NO_DRIFT, drift.summary(report)


def test_a_restore_is_refused_until_confirmed_and_for_a_snapshot_the_store_lacks(estate):
    snapshot = s3_lab.put_snapshot(estate.info["s3"], cluster_uuid(estate), int(time.time()) - 120)
    estate.set_config("omni-scale:protect", "true")
    try:
        estate.edit_spec(
            lambda d: d["clusters"][CLUSTER].update(restore_from={"snapshot": "FFFFFFFF00000000.snapshot"})
        )
        out = said(estate.pulumi("preview", check=False))
        assert f"cluster {CLUSTER}: snapshot FFFFFFFF00000000.snapshot is not among its backups in the store" in out
        estate.edit_spec(lambda d: d["clusters"][CLUSTER].update(restore_from={"snapshot": snapshot}))
        preview = estate.pulumi("preview", check=False)
        out = preview.stdout + preview.stderr
        assert preview.returncode != 0 and "Traceback" not in out
        assert f"`pulumi config set omni-scale:restoreCluster {CLUSTER}`" in out
        estate.set_config("omni-scale:restoreCluster", CLUSTER)
        out = said(estate.pulumi("preview"))
        assert f"cluster {CLUSTER}: restore planned: its control-plane machine set is deleted" in out
    finally:
        estate.set_config("omni-scale:protect", "false")


def test_a_restore_deletes_the_control_planes_and_stops_with_omnis_refusal_of_a_backup_it_cannot_read(estate):
    """The lab's snapshot is no backup of Omni's: Omni refuses the new control planes, and `up` says so. Taking
    restore_from out again makes the control planes anew, as they were."""
    snapshot = s3_lab.put_snapshot(estate.info["s3"], cluster_uuid(estate), int(time.time()) - 120)
    estate.edit_spec(lambda d: d["clusters"][CLUSTER].update(restore_from={"snapshot": snapshot}))
    run = estate.pulumi("up", "--yes", "--skip-preview", check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in out
    assert f"cluster {CLUSTER}: restoring etcd: deleting machine set {CLUSTER}-control-planes" in out
    assert f"cluster {CLUSTER}: its control planes are deleted, and Omni refused to make them again" in out
    assert "failed to get backup" in out
    assert estate.omni.get_or_none("MachineSets.omni.sidero.dev", f"{CLUSTER}-control-planes", "default") is None
    estate.edit_spec(lambda d: d["clusters"][CLUSTER].pop("restore_from"))
    estate.pulumi("up", "--yes", "--skip-preview", "--refresh")
    assert estate.omni.get_or_none("MachineSets.omni.sidero.dev", f"{CLUSTER}-control-planes", "default")
