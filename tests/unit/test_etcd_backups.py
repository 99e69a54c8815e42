"""etcd backups without Omni: the store's document and what its read keeps of the keys, when a cluster's backups
are stale, the restore the template asks for, and the drift verdict on a stale-backup warning."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from components.cli.drift import DRIFT, NO_DRIFT, analyse, summary
from components.core.spec import RestoreSpec
from components.core.spec_file import load_spec
from components.omni.etcd_backups import (
    BACKUP_STALE_MARK,
    CHANGED_IN_OMNI,
    EtcdBackupStoreProvider,
    _scrubbed,
    live_props,
    s3_config_document,
    stale_notice,
)
from components.omni.render import OWN_CLUSTER_UUID, bootstrap_spec, render_cluster_template, with_bootstrap_uuid
from components.omni.talos_cluster import restore_planned
from lab.s3_lab import snapshot_key
from tests.conftest import PROJECT_ROOT

KEYS = {"access_key_id": "AKIALAB", "secret_access_key": "s3cr3t-value", "session_token": ""}
STORE = {"bucket": "omni-etcd-backups", "region": "us-east-1", "endpoint": "http://127.0.0.1:9000", **KEYS}
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def test_the_store_document_is_omnis_resource_with_every_field_named_as_omni_names_it():
    document = s3_config_document(STORE)
    assert document["metadata"] == {
        "namespace": "default",
        "type": "EtcdBackupS3Configs.omni.sidero.dev",
        "id": "etcd-backup-s3-conf",
    }
    assert document["spec"] == {
        "bucket": "omni-etcd-backups",
        "region": "us-east-1",
        "endpoint": "http://127.0.0.1:9000",
        "accesskeyid": "AKIALAB",
        "secretaccesskey": "s3cr3t-value",
        "sessiontoken": "",
    }


def test_read_keeps_the_states_keys_when_omni_holds_the_same_and_never_stores_omnis_own():
    same = live_props(s3_config_document(STORE), STORE)
    assert same == {k: STORE[k] for k in same}
    changed = {**s3_config_document(STORE)}
    changed["spec"] = {**changed["spec"], "secretaccesskey": "someone-elses-secret", "bucket": "other"}
    found = live_props(changed, STORE)
    assert found["secret_access_key"] == CHANGED_IN_OMNI and found["bucket"] == "other"
    assert "someone-elses-secret" not in repr(found)
    assert found["access_key_id"] == "AKIALAB"


def test_a_changed_key_or_an_unusable_store_is_a_change_and_the_same_store_is_none():
    provider = EtcdBackupStoreProvider()
    assert not provider.diff("etcd-backup-store", {**STORE, "store_error": ""}, STORE).changes
    assert provider.diff("etcd-backup-store", {**STORE, "secret_access_key": CHANGED_IN_OMNI}, STORE).changes
    assert provider.diff("etcd-backup-store", {**STORE, "store_error": "connection refused"}, STORE).changes
    assert provider.diff("etcd-backup-store", STORE, {**STORE, "region": "eu-west-1"}).replaces == []


def test_half_a_key_pair_is_refused_as_omni_refuses_it():
    failures = EtcdBackupStoreProvider().check({}, {**STORE, "secret_access_key": ""}).failures
    assert [f.property for f in failures] == ["access_key_id"]


def test_omnis_messages_are_shown_without_the_keys():
    said = "failed to list objects in bucket: InvalidAccessKeyId AKIALAB / s3cr3t-value"
    assert _scrubbed(said, STORE) == "failed to list objects in bucket: InvalidAccessKeyId [secret] / [secret]"


def _watch(newest: datetime | None, since: datetime, error: str = "") -> dict:
    return {
        "interval_seconds": 6 * 3600,
        "last_backup_at": newest.isoformat() if newest else None,
        "watching_since": since.isoformat(),
        "last_error": error,
    }


def test_a_backup_older_than_twice_the_interval_is_stale_and_one_newer_is_not():
    assert stale_notice("c1", _watch(NOW - timedelta(hours=11), NOW - timedelta(days=30)), NOW) is None
    notice = stale_notice("c1", _watch(NOW - timedelta(hours=13), NOW - timedelta(days=30), "no store"), NOW)
    assert notice is not None
    assert notice.startswith("cluster c1: its newest etcd backup (2026-12-04T23:00:00+00:00) is 13.0h old")
    assert "more than 2 x its 6h interval; Omni's last attempt failed: no store" in notice


def test_no_backup_is_stale_only_once_backups_have_been_asked_for_that_long():
    assert stale_notice("c1", _watch(None, NOW - timedelta(hours=3)), NOW) is None
    notice = stale_notice("c1", _watch(None, NOW - timedelta(hours=13)), NOW)
    assert notice is not None and "no etcd backup in the store in the 13.0h since backups were asked for" in notice


def _warning_events(message: str) -> list[dict]:
    return [
        {"diagnosticEvent": {"severity": "warning", "message": message, "urn": "urn:pulumi:lab::omni-scale::x"}},
        {"summaryEvent": {}},
    ]


def test_a_stale_backup_warning_is_drift_named_in_the_summary():
    notice = stale_notice("c1", _watch(None, NOW - timedelta(hours=13)), NOW)
    report = analyse(_warning_events(BACKUP_STALE_MARK + str(notice)), 0)
    assert report["exit_code"] == DRIFT and report["backups"] == [notice]
    assert f"  backup: {notice}" in summary(report).splitlines()
    assert analyse(_warning_events("an unmarked warning"), 0)["exit_code"] == NO_DRIFT


def test_snapshot_names_are_omnis_the_backup_time_negated_in_hex():
    # The example in Omni's restore guide: 1701184522 -> FFFFFFFF9A99FBF6.snapshot.
    assert snapshot_key("bb874758-ee54-4d3b-bac3-4c8349737298", 1701184522) == (
        "bb874758-ee54-4d3b-bac3-4c8349737298/FFFFFFFF9A99FBF6.snapshot"
    )


@pytest.fixture
def seed():
    return load_spec(PROJECT_ROOT / "specs" / "omni.yaml")


def test_restore_from_is_the_control_planes_bootstrap_spec(seed):
    spec = seed.clusters["talos-prod-01"]
    cluster = spec.model_copy(update={"restore_from": RestoreSpec(snapshot="FFFFFFFF9A99FBF6.snapshot")})
    template = render_cluster_template("talos-prod-01", cluster)
    assert bootstrap_spec(template) == {"clusterUUID": OWN_CLUSTER_UUID, "snapshot": "FFFFFFFF9A99FBF6.snapshot"}
    uuid = "bb874758-ee54-4d3b-bac3-4c8349737298"
    resolved = with_bootstrap_uuid(template, uuid)
    control_plane = next(d for d in yaml.safe_load_all(resolved) if d["kind"] == "ControlPlane")
    assert control_plane["bootstrapSpec"] == {"clusterUUID": uuid, "snapshot": "FFFFFFFF9A99FBF6.snapshot"}
    assert "bootstrapSpec" not in render_cluster_template("talos-prod-01", spec)


def test_a_restore_is_planned_only_when_the_live_cluster_was_not_made_from_that_snapshot(seed):
    spec = seed.clusters["talos-prod-01"]
    uuid = "bb874758-ee54-4d3b-bac3-4c8349737298"

    def template(snapshot: str | None) -> str:
        restore = RestoreSpec(snapshot=snapshot, cluster_uuid=uuid) if snapshot else None
        return render_cluster_template("talos-prod-01", spec.model_copy(update={"restore_from": restore}))

    first, second = "FFFFFFFF9A99FBF6.snapshot", "FFFFFFFF9A99FBFD.snapshot"
    assert restore_planned(template(None), template(first)) == {"clusterUUID": uuid, "snapshot": first}
    assert restore_planned(template(first), template(first)) is None  # done: kept in the spec afterwards
    assert restore_planned(template(first), template(second))["snapshot"] == second
    assert restore_planned(None, template(first)) is None  # a new cluster is made from it, nothing deleted
    assert restore_planned(template(None), template(None)) is None
