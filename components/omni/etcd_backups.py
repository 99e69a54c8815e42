"""etcd backups: Omni's one S3 store for them, and how recent each cluster's last one is.

- EtcdBackupStore: the EtcdBackupS3Configs resource (Omni-wide, id etcd-backup-s3-conf, Admin only). Omni checks
  a new or changed configuration by listing the bucket before it accepts it, so `up` fails with Omni's own reason
  (no such bucket, refused keys, nothing listening) and nothing is half-set. The keys are the stack's secrets: they
  reach omnictl in a 0600 file, are secret inputs and outputs, and what `read` finds in Omni is never stored: a key
  changed in Omni shows as CHANGED_IN_OMNI (drift), the key itself stays out of the state. The store's status
  (EtcdBackupStoreStatuses) is read too: a store Omni could not reach when it last read its configuration (at its
  start, say) is drift, and `up` sets the configuration again, which makes Omni try anew.
- EtcdBackupWatch, one per cluster with a backup interval: reads the cluster's backups in the store (`omnictl get
  etcdbackups`, newest first) and Omni's last attempt (EtcdBackupStatuses). It changes nothing; the program warns
  (BACKUP_STALE_MARK, counted as drift) when the newest backup is older than twice the interval, or when there has
  been none for that long since the program started watching.
- Manual backups (`make backup CLUSTER=...`): request_backup and wait_for_backup.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pulumi
import yaml
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.dynamic import OmniProvider, TypedResource, adopted, is_unknown, whole_numbers
from components.omni.omnictl import NotFound, Omnictl, OmnictlError, Timeout, Unauthorized, Unreachable
from components.omni.render import CLUSTER_TYPE

S3_CONFIG_TYPE = "EtcdBackupS3Configs.omni.sidero.dev"
S3_CONFIG_ID = "etcd-backup-s3-conf"
STORE_STATUS_TYPE = "EtcdBackupStoreStatuses.omni.sidero.dev"
STORE_STATUS_ID = "etcdbackup-store-status"
BACKUP_TYPE = "EtcdBackups.omni.sidero.dev"
BACKUP_STATUS_TYPE = "EtcdBackupStatuses.omni.sidero.dev"
MANUAL_BACKUP_TYPE = "EtcdManualBackups.omni.sidero.dev"
CLUSTER_UUID_TYPE = "ClusterUUIDs.omni.sidero.dev"
CLUSTER_LABEL = "omni.sidero.dev/cluster"
# EtcdBackupStatusSpec.Status (client/api/omni/specs/omni.proto).
BACKUP_OK, BACKUP_ERROR, BACKUP_RUNNING = 1, 2, 3
# What the program marks a stale-backup warning with; the drift job counts such a warning as drift.
BACKUP_STALE_MARK = "[stale backup] "
# A backup is stale once it is older than this many intervals (the rule: a missed backup is normal, two are
# not).
STALE_AFTER_INTERVALS = 2

_PLAIN = ("bucket", "region", "endpoint")
SECRET_FIELDS = ("access_key_id", "secret_access_key", "session_token")
_OMNI_FIELDS = {
    "bucket": "bucket",
    "region": "region",
    "endpoint": "endpoint",
    "access_key_id": "accesskeyid",
    "secret_access_key": "secretaccesskey",
    "session_token": "sessiontoken",
}
# What `read` records for a key Omni holds that is not the one the state holds (never the key Omni holds).
CHANGED_IN_OMNI = "(changed in Omni)"


class BackupStoreError(OmnictlError):
    def __init__(self, message: str):
        super().__init__("etcd backup store", message)


def s3_config_document(props: dict) -> dict:
    return {
        "metadata": {"namespace": "default", "type": S3_CONFIG_TYPE, "id": S3_CONFIG_ID},
        "spec": {omni: str(props.get(ours) or "") for ours, omni in _OMNI_FIELDS.items()},
    }


def _scrubbed(message: str, props: dict) -> str:
    """Omni's message with any of the keys in it replaced (S3 errors may quote what they were given)."""
    for field in SECRET_FIELDS:
        value = props.get(field)
        if value and isinstance(value, str):
            message = message.replace(value, "[secret]")
    return message


def live_props(document: dict, held: dict) -> dict:
    """The store's inputs as Omni holds them: the plain fields as they are, each key as the state holds it when
    Omni's is the same, else CHANGED_IN_OMNI."""
    spec = document.get("spec") or {}
    found = {ours: str(spec.get(omni) or "") for ours, omni in _OMNI_FIELDS.items()}
    out: dict = {field: found[field] for field in _PLAIN}
    for field in SECRET_FIELDS:
        same = found[field] == str(held.get(field) or "")
        out[field] = held.get(field) if same else CHANGED_IN_OMNI
    return out


class EtcdBackupStoreProvider(OmniProvider):
    def check(self, _olds: dict, news: dict) -> CheckResult:
        failures = []
        if not news.get("bucket"):
            failures.append(CheckFailure("bucket", "a bucket name"))
        key_id, secret = news.get("access_key_id"), news.get("secret_access_key")
        if not is_unknown(key_id) and not is_unknown(secret) and bool(key_id) != bool(secret):
            # Omni's own rule ("access key and secret key must be specified together").
            failures.append(CheckFailure("access_key_id", "backupS3AccessKeyId and backupS3SecretAccessKey together"))
        return CheckResult({**news, "endpoint": news.get("endpoint") or ""}, failures)

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in _PLAIN + SECRET_FIELDS if str(olds.get(k) or "") != str(news.get(k) or "")]
        if olds.get("store_error"):
            changed.append("store_error")  # setting it again makes Omni try the store anew
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _apply(self, props: dict) -> dict:
        where = f"bucket {props['bucket']!r}" + (f" at {props['endpoint']}" if props.get("endpoint") else "")
        progress(f"setting Omni's etcd backup store: {where} (Omni lists the bucket before it accepts it)")
        try:
            self.client.apply(s3_config_document(props))  # a 0600 file: it holds the keys
        except OmnictlError as exc:
            raise BackupStoreError(f"Omni refused the store ({where}): {_scrubbed(exc.message, props)}") from None
        error = self._settled_store_error()
        if error:
            raise BackupStoreError(f"Omni took the store ({where}) but cannot use it: {_scrubbed(error, props)}")
        return {**{k: props.get(k) or "" for k in _PLAIN + SECRET_FIELDS}, "store_error": ""}

    def _store_error(self) -> str | None:
        """What Omni says is wrong with its store now ("" nothing; None: no status yet)."""
        status = self.client.get_or_none(STORE_STATUS_TYPE, STORE_STATUS_ID, "ephemeral")
        if status is None:
            return None
        return str((status.get("spec") or {}).get("configurationerror") or "")

    def _settled_store_error(self) -> str:
        """Omni re-reads its store after a configuration change on its own time: wait until its status says how
        that went (it said "not initialized" before the first one)."""
        deadline = time.monotonic() + self.settings.timeout_seconds
        while True:
            error = self._store_error()
            if error is not None and error != "not initialized":
                return error
            if time.monotonic() >= deadline:
                return error or "Omni's store status did not change after the configuration was set"
            time.sleep(0.5)  # Omni's store controller, in Omni's process: nothing to wait on but a re-read

    def create(self, props: dict) -> CreateResult:
        adoption = adopted(self, S3_CONFIG_ID, props)  # `make adopt`: a store set by hand, taken over as it is
        if adoption:
            return adoption
        if self.client.get_or_none(S3_CONFIG_TYPE, S3_CONFIG_ID, "default") is not None:
            progress("Omni has an etcd backup store set already (there is only one): the spec's replaces it")
        return CreateResult(S3_CONFIG_ID, self._apply(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        try:
            found = self.client.get_or_none(S3_CONFIG_TYPE, S3_CONFIG_ID, "default")
        except Unauthorized:
            progress("the run's Omni key may not read the etcd backup store (Admin only): taken as the state has it")
            return ReadResult(id_, props)
        if found is None:
            return ReadResult(None, {})
        current = live_props(found, props)
        error = self._store_error()
        outs = {**props, **current, "store_error": error or ""}
        return ReadResult(id_, outs, {**props, **current})

    def delete(self, _id: str, _props: dict) -> None:
        try:
            self.client.delete(S3_CONFIG_TYPE, S3_CONFIG_ID, "default")
        except NotFound:
            pass


class EtcdBackupStore(TypedResource, module="omni", name="EtcdBackupStore"):
    store_error: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        bucket: str,
        region: str,
        endpoint: pulumi.Input[str] | None,
        credentials: Mapping[str, pulumi.Input[str] | None],
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "bucket": bucket,
            "region": region,
            "endpoint": endpoint or "",
            **{field: credentials.get(field) or "" for field in SECRET_FIELDS},
            "store_error": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS))
        super().__init__(EtcdBackupStoreProvider(), resource_name, props, pulumi.ResourceOptions.merge(opts, secret))


@dataclass(frozen=True)
class Backup:
    created_at: datetime
    snapshot: str


def _timestamp(value) -> datetime | None:
    """A protobuf Timestamp as omnictl prints it ({seconds, nanos}), or an RFC 3339 string."""
    if isinstance(value, dict) and value.get("seconds"):
        return datetime.fromtimestamp(int(value["seconds"]), UTC)
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def backups_of(client: Omnictl, cluster: str) -> list[Backup]:
    """The cluster's backups in the store, newest first (Omni lists them from the bucket itself)."""
    out = client.run("get", BACKUP_TYPE, "-n", "external", "-l", f"{CLUSTER_LABEL}={cluster}", "-o", "yaml")
    found = []
    for document in yaml.safe_load_all(out):
        spec = (document or {}).get("spec") or {}
        created = _timestamp(spec.get("createdat"))
        if created is not None:
            found.append(Backup(created, str(spec.get("snapshot") or "")))
    return sorted(found, key=lambda b: b.created_at, reverse=True)


def last_attempt(client: Omnictl, cluster: str) -> dict:
    """Omni's record of the cluster's last backup attempt: status, error, lastbackuptime, lastbackupattempt."""
    found = client.get_or_none(BACKUP_STATUS_TYPE, cluster, "metrics")
    return (found or {}).get("spec") or {}


def stale_notice(cluster: str, watch: dict, now: datetime) -> str | None:
    """The warning for a cluster whose newest backup (or, with none, the start of the watch) is older than
    STALE_AFTER_INTERVALS intervals; None when it is recent enough."""
    interval = float(watch["interval_seconds"])
    limit = STALE_AFTER_INTERVALS * interval
    newest, since = watch.get("last_backup_at"), watch.get("watching_since")
    reference = newest or since
    age = (now - datetime.fromisoformat(reference)).total_seconds() if reference else 0.0
    if age <= limit:
        return None
    age_hours = age / 3600
    said = (
        f"cluster {cluster}: its newest etcd backup ({newest}) is {age_hours:.1f}h old"
        if newest
        else f"cluster {cluster}: no etcd backup in the store in the {age_hours:.1f}h since backups were asked for"
    )
    why = f"; Omni's last attempt failed: {watch['last_error']}" if watch.get("last_error") else ""
    return f"{said}, more than {STALE_AFTER_INTERVALS} x its {interval / 3600:g}h interval{why}"


class EtcdBackupWatchProvider(OmniProvider):
    """Reads, never writes: the newest backup and the last attempt, for the program's stale-backup warning."""

    def check(self, _olds: dict, news: dict) -> CheckResult:
        return CheckResult(news, [])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        changed = [k for k in ("cluster_name", "interval_seconds") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _observed(self, props: dict) -> dict:
        cluster = props["cluster_name"]
        try:
            newest = next(iter(backups_of(self.client, cluster)), None)
        except (Unreachable, Unauthorized, Timeout):
            raise  # Omni itself not answering, or not to this key: nothing can be judged
        except OmnictlError as exc:
            # Omni answers but cannot list the store (unset, or unreachable from Omni): no backup to count, which
            # is what the warning is about.
            progress(f"cluster {cluster}: its etcd backups could not be listed: {exc.message}")
            newest = None
        attempt = last_attempt(self.client, cluster)
        return {
            "last_backup_at": newest.created_at.isoformat() if newest else None,
            "last_snapshot": newest.snapshot if newest else None,
            "last_error": str(attempt.get("error") or "") if attempt.get("status") == BACKUP_ERROR else "",
        }

    def create(self, props: dict) -> CreateResult:
        props = whole_numbers(props)
        since = datetime.now(UTC).replace(microsecond=0).isoformat()
        return CreateResult(props["cluster_name"], {**props, "watching_since": since, **self._observed(props)})

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        news = whole_numbers(news)
        return UpdateResult({**news, "watching_since": olds.get("watching_since"), **self._observed(news)})

    def read(self, id_: str, props: dict) -> ReadResult:
        props = whole_numbers(props)
        inputs = {k: props[k] for k in ("cluster_name", "interval_seconds") if k in props}
        return ReadResult(id_, {**props, **self._observed(props)}, inputs)

    def delete(self, _id: str, _props: dict) -> None:
        pass  # nothing of it is in Omni


class EtcdBackupWatch(TypedResource, module="omni", name="EtcdBackupWatch"):
    last_backup_at: pulumi.Output[str]
    watching_since: pulumi.Output[str]
    last_error: pulumi.Output[str]
    interval_seconds: pulumi.Output[int]

    def __init__(self, cluster: str, interval_seconds: int, opts: pulumi.ResourceOptions):
        props = {
            "cluster_name": cluster,
            "interval_seconds": interval_seconds,
            "last_backup_at": None,
            "last_snapshot": None,
            "last_error": None,
            "watching_since": None,
        }
        super().__init__(EtcdBackupWatchProvider(), f"{cluster}-etcd-backups", props, opts)


def warn_when_stale(watch: EtcdBackupWatch, cluster: str) -> None:
    """A warning in every preview and `up` (the drift job counts it as drift) while the cluster's backups are stale."""

    def warn(values: list) -> None:
        since, newest, error, interval = values
        if interval is None:
            return
        notice = stale_notice(
            cluster,
            {"watching_since": since, "last_backup_at": newest, "last_error": error, "interval_seconds": interval},
            datetime.now(UTC),
        )
        if notice:
            pulumi.log.warn(BACKUP_STALE_MARK + notice, resource=watch)

    pulumi.Output.all(watch.watching_since, watch.last_backup_at, watch.last_error, watch.interval_seconds).apply(warn)


def request_backup(client: Omnictl, cluster: str, now: float | None = None) -> datetime:
    """Asks Omni for a backup of the cluster now (EtcdManualBackups: Omni takes one within a minute of the time
    it names, and refuses a time more than a minute away)."""
    if client.get_or_none(CLUSTER_TYPE, cluster, "default") is None:
        raise NotFound("backup", f"cluster {cluster!r} does not exist in Omni")
    at = int(now if now is not None else time.time())
    client.apply(
        {
            "metadata": {"namespace": "ephemeral", "type": MANUAL_BACKUP_TYPE, "id": cluster},
            "spec": {"backupat": {"seconds": at, "nanos": 0}},
        }
    )
    return datetime.fromtimestamp(at, UTC)


class BackupFailed(OmnictlError):
    def __init__(self, message: str):
        super().__init__("backup", message)


def wait_for_backup(
    client: Omnictl, cluster: str, asked_at: datetime, timeout_seconds: float, poll_seconds: float = 2.0
) -> Backup:
    """Until Omni's backup status shows an attempt at or after asked_at: the backup it made, or its error."""
    deadline, shown = time.monotonic() + timeout_seconds, None
    while True:
        status = last_attempt(client, cluster)
        attempted = _timestamp(status.get("lastbackupattempt"))
        if attempted is not None and attempted >= asked_at:
            if status.get("status") == BACKUP_ERROR:
                raise BackupFailed(f"Omni's backup of cluster {cluster} failed: {status.get('error')}")
            done = _timestamp(status.get("lastbackuptime"))
            if status.get("status") == BACKUP_OK and done is not None and done >= asked_at:
                newest = next(iter(backups_of(client, cluster)), None)
                return newest or Backup(done, "")
        line = f"cluster {cluster}: waiting for Omni's backup (last attempt: {attempted or 'none'})"
        if line != shown:
            shown = line
            progress(line)
        if time.monotonic() >= deadline:
            raise BackupFailed(
                f"Omni made no attempt at a backup of cluster {cluster} within {timeout_seconds:.0f}s of asking "
                "(it looks for requests once a minute)"
            )
        time.sleep(poll_seconds)  # Omni's backup controller, in Omni's process: nothing to wait on but a re-read
