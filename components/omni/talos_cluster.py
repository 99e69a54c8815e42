"""The Talos cluster: an Omni cluster template, synced with omnictl and waited on until ready."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pulumi
import yaml
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.credential_life import RENEW_WHEN_LEFT
from components.core.dynamic import OmniProvider, TypedResource, adopted, whole_numbers
from components.core.spec import ClusterSpec, duration_seconds, machine_set_id
from components.omni import upgrades
from components.omni.etcd_backups import (
    CLUSTER_UUID_TYPE,
    EtcdBackupWatch,
    backups_of,
    warn_when_stale,
)
from components.omni.omnictl import NotFound, OmnictlError
from components.omni.readiness import NotReady, read_progress, unmet_conditions
from components.omni.render import (
    CLUSTER_TYPE,
    DEFAULT_NAMESPACE,
    OWN_CLUSTER_UUID,
    bootstrap_spec,
    canonical_cluster,
    canonical_manifests,
    canonical_template,
    redacted_template,
    render_cluster_template,
    template_set_ids,
    with_bootstrap_uuid,
    with_manifests,
)

# The service-account user the kubeconfig is made for (Omni names the SA after it).
KUBECONFIG_USER = "omni-scale"
# How often the readiness wait re-reads Omni's resources (each read is four omnictl calls).
READY_POLL_SECONDS = 2.0


_EMPTY: dict[str, list] = {"manifests": []}
_COMPARED = ("cluster_name", "template", "manifests", "kubeconfig_ttl_seconds", "kubeconfig_minted_at")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def token_expiry(kubeconfig: str) -> float | None:
    """The `exp` of the kubeconfig's token: Omni's service-account tokens are JWTs. None if it is not one."""
    try:
        token = yaml.safe_load(kubeconfig)["users"][0]["user"]["token"]
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, yaml.YAMLError):
        return None


def renewal_due(minted_at: str, ttl_seconds: float, now: float) -> bool:
    return now >= _epoch(minted_at) + ttl_seconds * (1 - RENEW_WHEN_LEFT)


class TalosClusterProvider(OmniProvider):
    """check validates offline; create/update sync then wait; read exports the live cluster.

    The cluster's service-account kubeconfig has a lifetime (kubeconfig_ttl_seconds). When it was minted is an
    input, decided by check: kept while more than a third of its life is left, "now" once it is not (or the
    TTL changed), so `preview` shows a renewal as a change of kubeconfig_minted_at, and `up` mints a new one
    then and only then; a template change alone does not."""

    def check(self, olds: dict, news: dict) -> CheckResult:
        inputs = dict(news)
        template, own_uuid = news["template"], None
        if (bootstrap_spec(template) or {}).get("clusterUUID") == OWN_CLUSTER_UUID:
            own_uuid = self._own_uuid(news["cluster_name"])
            if own_uuid is None:
                return _template_refused(
                    inputs,
                    f"cluster {news['cluster_name']}: restore_from without cluster_uuid restores the cluster's own "
                    "backup, but Omni has no cluster of that name: name the cluster_uuid of the cluster whose backup "
                    "it is",
                )
            template = with_bootstrap_uuid(template, own_uuid)
        try:
            self.offline_client.template("validate", with_manifests(template, news.get("manifests") or []))
        except OmnictlError as exc:
            return CheckResult(inputs, [CheckFailure("template", exc.message)])
        inputs["template"] = canonical_template(template)
        made_from = bootstrap_spec(olds.get("template"))
        if made_from and not bootstrap_spec(inputs["template"]):
            return _template_refused(
                inputs,
                f"cluster {news['cluster_name']}: its control planes were made from snapshot {made_from['snapshot']} "
                f"(restore_from), which Omni never changes afterwards: keep `restore_from: {{snapshot: "
                f"{made_from['snapshot']}}}` in the spec",
            )
        restore = restore_planned(olds.get("template"), inputs["template"])
        if restore:
            try:
                name = news["cluster_name"]
                own_uuid = own_uuid or self._own_uuid(name)
                self._check_restore(name, restore, bool(news.get("restore_confirmed")), own_uuid)
            except RestoreRefused as exc:
                return _template_refused(inputs, exc.message)
        inputs["manifests"] = canonical_manifests(news.get("manifests"))
        changes = upgrades.planned_changes(olds.get("template"), inputs["template"])
        if changes:
            # Checked before anything is applied, against what Omni offers (its only Omni reads in a check).
            problems = upgrades.plan_problems(
                changes, upgrades.template_versions(inputs["template"]), self._offered_versions()
            )
            if problems:
                return CheckResult(
                    inputs, [CheckFailure("template", f"cluster {news['cluster_name']}: " + "; ".join(problems))]
                )
            pre_checks = (
                " (Kubernetes' upgrade pre-checks first)"
                if any(c.component == upgrades.KUBERNETES for c in changes)
                else ""
            )
            progress(
                f"cluster {news['cluster_name']}: upgrade planned, one sync per step with the cluster healthy between: "
                + ", then ".join(str(c) for c in changes)
                + pre_checks
            )
        ttl, minted = news.get("kubeconfig_ttl_seconds"), olds.get("kubeconfig_minted_at")
        now = time.time()
        if (
            minted
            and ttl is not None
            and olds.get("kubeconfig_ttl_seconds") == ttl
            and not renewal_due(minted, ttl, now)
        ):
            inputs["kubeconfig_minted_at"] = minted
        else:
            inputs["kubeconfig_minted_at"] = _iso(now)
            if minted and ttl is not None:
                progress(
                    f"cluster {news['cluster_name']}: its kubeconfig (minted {minted}) has less than a third of "
                    f"its {ttl / 86400:g}-day life left, or its TTL changed: `up` renews it"
                )
        return CheckResult(inputs, [])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        # A state written before manifests were apart holds none: the same as an empty list.
        changed = [k for k in _COMPARED if (olds.get(k) or _EMPTY.get(k)) != (news.get(k) or _EMPTY.get(k))]
        return DiffResult(
            changes=bool(changed), replaces=[k for k in changed if k == "cluster_name"], delete_before_replace=True
        )

    def _own_uuid(self, name: str) -> str | None:
        """The cluster's UUID in Omni (what its backups are filed under), None when Omni has no such cluster."""
        found = self.client.get_or_none(CLUSTER_UUID_TYPE, name, DEFAULT_NAMESPACE)
        return None if found is None else str((found.get("spec") or {}).get("uuid"))

    def _check_restore(self, name: str, restore: dict, confirmed: bool, own_uuid: str | None) -> None:
        """What can be known before the control planes go: the snapshot is in the store (when it is this cluster's
        backup, own_uuid's) and the stack confirms the restore of a production cluster."""
        if own_uuid is not None and own_uuid == restore["clusterUUID"]:
            listed = [b.snapshot for b in backups_of(self.client, name)]
            if restore["snapshot"] not in listed:
                newest = ", ".join(listed[:3]) or "none"
                raise RestoreRefused(
                    f"cluster {name}: snapshot {restore['snapshot']} is not among its backups in the store "
                    f"(newest: {newest}; `omnictl get etcdbackups -l omni.sidero.dev/cluster={name}`)"
                )
        if not confirmed:
            raise RestoreRefused(
                f"cluster {name}: restore_from deletes its control-plane machine set and makes it again from snapshot "
                f"{restore['snapshot']}; it is production, so confirm this once: `pulumi config set "
                f"omni-scale:restoreCluster {name}` (and unset it after the restore)"
            )
        progress(
            f"cluster {name}: restore planned: its control-plane machine set is deleted, then made again from snapshot "
            f"{restore['snapshot']} of cluster {restore['clusterUUID']}"
        )

    def _restore(self, name: str) -> None:
        """The control-plane machine set goes (Omni then treats the cluster as not bootstrapped), so the sync that
        follows makes it anew with the template's bootstrapSpec."""
        set_id = machine_set_id(name, None)
        progress(f"cluster {name}: restoring etcd: deleting machine set {set_id}")
        try:
            self.client.delete(MACHINE_SET_TYPE, set_id, DEFAULT_NAMESPACE)
        except NotFound:
            pass  # an earlier `up` deleted it already
        self._wait_gone(
            MACHINE_SET_TYPE,
            set_id,
            lambda timeout: RestoreStopped(f"cluster {name}: machine set {set_id} still exists after {timeout:.0f}s"),
        )

    def _wait_gone(self, resource_type: str, id_: str, stopped) -> None:
        """Until Omni no longer has the resource (it tears down in the background, the infra provider
        deprovisioning the VMs); stopped(the timeout) is the error once the readiness timeout has passed."""
        timeout = self.settings.cluster_ready_timeout_seconds
        deadline = time.monotonic() + timeout
        while self.client.get_or_none(resource_type, id_, DEFAULT_NAMESPACE) is not None:
            if time.monotonic() > deadline:
                raise stopped(timeout)
            time.sleep(1)  # Omni's own teardown, in another process: nothing to wait on but a re-read

    def _offered_versions(self) -> upgrades.OfferedVersions:
        def documents(kind: str) -> list[dict]:
            return [d for d in yaml.safe_load_all(self.client.run("get", kind, "-o", "yaml")) if d]

        return upgrades.OfferedVersions.from_documents(
            documents(TALOS_VERSION_TYPE), documents(KUBERNETES_VERSION_TYPE)
        )

    def _sync_and_wait(self, name: str, template: str, manifests: list[dict]) -> tuple[str, list[dict]]:
        """Syncs the template, waits for the cluster to be ready, and returns the live template and manifests."""
        progress(f"syncing cluster template {name}")
        template = with_manifests(template, manifests)
        self.client.template("sync", template)
        self._wait_ready(name, template)
        return canonical_cluster(self.client.export_template(name))

    def _upgrade(self, name: str, old_template: str, template: str, manifests: list[dict]) -> bool:
        """The version changes one step at a time, Talos first, each synced and waited for; True when the last step
        synced the whole template. A step the live cluster has taken already (an `up` that stopped half-way) is
        skipped, so the next `up` goes on from there."""
        synced = False
        for change, step_template in upgrades.steps(upgrades.planned_changes(old_template, template), template):
            live = self._live_versions(name)
            if live.get(change.component) == change.new.lstrip("v"):
                progress(f"cluster {name}: {change.component} is at {change.new} already: that step is done")
                continue
            if change.component == upgrades.KUBERNETES:
                self._pre_checks(name, change)
            progress(f"cluster {name}: upgrading {change}")
            synced_template = with_manifests(step_template, manifests)
            self.client.template("sync", synced_template)
            if change.component == upgrades.TALOS:
                self._wait_talos_upgrade(name, change.new)
            self._wait_ready(name, synced_template)
            synced = step_template == template
        return synced

    def _live_versions(self, name: str) -> dict[str, str]:
        spec = (self.client.get_or_none(CLUSTER_TYPE, name, DEFAULT_NAMESPACE) or {}).get("spec") or {}
        return {
            upgrades.TALOS: str(spec.get("talosversion", "")),
            upgrades.KUBERNETES: str(spec.get("kubernetesversion", "")),
        }

    def _pre_checks(self, name: str, change: upgrades.VersionChange) -> None:
        """Omni's own check for what a Kubernetes upgrade would break (removed APIs and flags still in use)."""
        progress(f"cluster {name}: running Kubernetes' upgrade pre-checks for {change.new}")
        try:
            self.client.run("cluster", "kubernetes", "upgrade-pre-checks", name, "--to", change.new.lstrip("v"))
        except OmnictlError as exc:
            raise UpgradeStopped(
                f"cluster {name}: the upgrade pre-checks for kubernetes {change.new} failed, so the kubernetes step "
                f"was not applied (the steps before it were):\n{_without_client_noise(exc.message)}"
            ) from None

    def _wait_talos_upgrade(self, name: str, version: str) -> None:
        """Until Omni's TalosUpgradeStatus says every machine runs the version: its progress printed as it moves."""
        timeout = self.settings.cluster_ready_timeout_seconds
        deadline, shown, target = time.monotonic() + timeout, None, version.lstrip("v")
        while True:
            found = self.client.get_or_none(TALOS_UPGRADE_STATUS_TYPE, name, DEFAULT_NAMESPACE) or {}
            status = found.get("spec") or {}
            said = status.get("status") or PHASES.get(int(status.get("phase") or 0), "pending")
            line = f"cluster {name}: talos upgrade: {said}"
            if line != shown:
                shown = line
                progress(line)
            if status.get("phase") == PHASE_DONE and str(status.get("lastupgradeversion")) == target:
                return
            if status.get("phase") == PHASE_FAILED:
                raise UpgradeStopped(f"cluster {name}: the talos upgrade to {version} failed: {status.get('error')}")
            if time.monotonic() >= deadline:
                raise UpgradeStopped(
                    f"cluster {name}: the talos upgrade to {version} is not done after {timeout:.0f}s: {shown}"
                )
            time.sleep(READY_POLL_SECONDS)  # Omni upgrades the machines one at a time, on its own: re-read

    def _wait_ready(self, name: str, template: str) -> None:
        """Until Omni calls the cluster healthy: its progress, read from Omni's resources, printed as it moves; on
        timeout, what is still unmet."""
        timeout = self.settings.cluster_ready_timeout_seconds
        progress(f"waiting up to {timeout:.0f}s for cluster {name} to be ready")
        set_ids = template_set_ids(name, template)
        deadline, shown = time.monotonic() + timeout, None
        while True:
            state = read_progress(self.client, name, set_ids)
            if state.line() != shown:
                shown = state.line()
                progress(shown)
            # The resources say ready: Omni's own verdict (the same rule, asked once) confirms it.
            if state.ready and self._healthy(template):
                progress(f"cluster {name} is ready")
                return
            if time.monotonic() >= deadline:
                unmet = state.unmet(unmet_conditions(self.client, name))
                raise NotReady(
                    "cluster template status", f"cluster {name} is not ready after {timeout:.0f}s: " + "; ".join(unmet)
                )
            time.sleep(READY_POLL_SECONDS)  # Omni and the machines move on their own: re-read

    def _healthy(self, template: str) -> bool:
        try:
            self.client.template("status", template, "--wait", "0s")
            return True
        except OmnictlError as exc:
            if "not healthy" in exc.message:
                return False
            raise

    def _kubeconfig(self, props: dict) -> dict:
        """A new service-account kubeconfig, with when it expires and how long it has left."""
        ttl = props["kubeconfig_ttl_seconds"]
        progress(
            f"minting a kubeconfig for cluster {props['cluster_name']} (service account {KUBECONFIG_USER}, "
            f"valid {ttl / 86400:g} days)"
        )
        kubeconfig = self.client.service_account_kubeconfig(props["cluster_name"], KUBECONFIG_USER, ttl)
        return {"kubeconfig": kubeconfig, **_life(kubeconfig, props["kubeconfig_minted_at"], ttl)}

    def create(self, props: dict) -> CreateResult:
        props = whole_numbers(props)
        name = props["cluster_name"]
        with_kubeconfig = lambda outs: {**outs, **self._kubeconfig(props)}  # noqa: E731
        adoption = adopted(self, name, props, with_kubeconfig)
        if adoption:
            return adoption
        template, manifests = self._sync_and_wait(name, props["template"], props.get("manifests") or [])
        return CreateResult(name, {**props, "template": template, "manifests": manifests, **self._kubeconfig(props)})

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        outs = {
            **olds,
            **{k: news[k] for k in _COMPARED if k in news},
            "template": olds.get("template"),
            "manifests": olds.get("manifests") or [],
        }
        if (
            any(outs[k] != news.get(k, _EMPTY.get(k)) for k in ("template", "manifests"))
            or olds.get("cluster_name") != news["cluster_name"]
        ):
            name, manifests = news["cluster_name"], news.get("manifests") or []
            restoring = restore_planned(olds.get("template"), news["template"])
            if restoring:
                self._restore(name)
            upgraded = (
                not restoring
                and olds.get("cluster_name") == name
                and self._upgrade(name, olds.get("template") or news["template"], news["template"], manifests)
            )
            try:
                outs["template"], outs["manifests"] = (
                    canonical_cluster(self.client.export_template(name))
                    if upgraded
                    else self._sync_and_wait(name, news["template"], manifests)
                )
            except OmnictlError as exc:
                if not restoring:
                    raise
                raise RestoreStopped(
                    f"cluster {name}: its control planes are deleted, and Omni refused to make them again from "
                    f"snapshot {restoring['snapshot']}: {exc.message}\n`pulumi up` tries again once that is put "
                    "right (or name another snapshot in restore_from)"
                ) from None
        renew = any(olds.get(k) != news.get(k) for k in ("kubeconfig_minted_at", "kubeconfig_ttl_seconds"))
        if renew or not olds.get("kubeconfig"):
            outs.update(self._kubeconfig(news))
        else:
            outs.update(_life(olds["kubeconfig"], olds["kubeconfig_minted_at"], olds["kubeconfig_ttl_seconds"]))
        return UpdateResult(outs)

    def read(self, id_: str, props: dict) -> ReadResult:
        props = whole_numbers(props)
        try:
            live, manifests = canonical_cluster(self.client.export_template(id_))
        except NotFound:
            return ReadResult(None, {})
        inputs = {
            "cluster_name": id_,
            "template": live,
            "manifests": manifests,
            **{k: props[k] for k in ("kubeconfig_ttl_seconds", "kubeconfig_minted_at") if k in props},
        }
        outs = {**props, **inputs}
        if props.get("kubeconfig") and props.get("kubeconfig_minted_at"):
            outs.update(_life(props["kubeconfig"], props["kubeconfig_minted_at"], props["kubeconfig_ttl_seconds"]))
        return ReadResult(id_, outs, inputs)

    def delete(self, id_: str, props: dict) -> None:
        progress(f"deleting cluster {id_}")
        try:
            self.client.template("delete", props["template"])
        except NotFound:
            return  # already gone
        # Omni tears the cluster down in the background (the infra provider deprovisions its VMs); what the
        # cluster depends on (its classes, the provider) is deleted after this returns, so wait for it.
        timeout = self.settings.cluster_ready_timeout_seconds
        progress(f"waiting up to {timeout:.0f}s for Omni to tear cluster {id_} down")
        self._wait_gone(
            CLUSTER_TYPE,
            id_,
            lambda timeout: OmnictlError("cluster template delete", f"cluster {id_} still exists after {timeout:.0f}s"),
        )


def restore_planned(old_template: str | None, new_template: str) -> dict | None:
    """The bootstrapSpec the new template restores from, when the old one (the live cluster's) had another or
    none: a restore to carry out. A cluster the program makes anew restores without deleting anything."""
    wanted = bootstrap_spec(new_template)
    if not wanted or old_template is None or bootstrap_spec(old_template) == wanted:
        return None
    return wanted


def _template_refused(inputs: dict, message: str) -> CheckResult:
    return CheckResult(inputs, [CheckFailure("template", message)])


class RestoreRefused(OmnictlError):
    """A restore that cannot start: nothing was changed."""

    def __init__(self, message: str):
        super().__init__("cluster restore", message)


class RestoreStopped(OmnictlError):
    """A restore that started (the control planes were deleted) and did not finish."""

    def __init__(self, message: str):
        super().__init__("cluster restore", message)


class UpgradeStopped(OmnictlError):
    """A version step Omni refused, failed, or did not finish; what was done before it stays done."""

    def __init__(self, message: str):
        super().__init__("cluster upgrade", message)


MACHINE_SET_TYPE = "MachineSets.omni.sidero.dev"
TALOS_VERSION_TYPE = "TalosVersions.omni.sidero.dev"
KUBERNETES_VERSION_TYPE = "KubernetesVersions.omni.sidero.dev"
TALOS_UPGRADE_STATUS_TYPE = "TalosUpgradeStatuses.omni.sidero.dev"
# TalosUpgradeStatusSpec.Phase (client/api/omni/specs/omni.proto).
PHASES = {0: "unknown", 1: "upgrading", 2: "done", 3: "failed", 4: "reverting", 5: "updating machine schematics"}
PHASE_DONE, PHASE_FAILED = 2, 3


def _without_client_noise(message: str) -> str:
    """omnictl's own lines (its version warning, the Error: prefix) taken off what Omni said."""
    lines = [line for line in message.splitlines() if not line.startswith("[WARN]")]
    return "\n".join(lines).removeprefix("Error: ").strip()


def _life(kubeconfig: str, minted_at: str, ttl_seconds: float) -> dict:
    expires = token_expiry(kubeconfig) or _epoch(minted_at) + ttl_seconds
    return {"kubeconfig_expires_at": _iso(expires), "kubeconfig_remaining_seconds": max(int(expires - time.time()), 0)}


class _TalosClusterResource(TypedResource, module="omni", name="TalosCluster"):
    kubeconfig: pulumi.Output[str]
    template: pulumi.Output[str]
    kubeconfig_expires_at: pulumi.Output[str]
    kubeconfig_remaining_seconds: pulumi.Output[int]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(
            TalosClusterProvider(),
            name,
            {
                **props,
                "kubeconfig": None,
                "kubeconfig_minted_at": None,
                "kubeconfig_expires_at": None,
                "kubeconfig_remaining_seconds": None,
            },
            opts,
        )


class TalosCluster(pulumi.ComponentResource):
    """One Talos cluster in Omni, from its spec. Protected when the spec marks it production."""

    def __init__(
        self,
        name: str,
        spec: ClusterSpec,
        *,
        protect: bool,
        kubeconfig_ttl_seconds: float,
        manifests: Sequence[dict] = (),
        machine_classes: Sequence[pulumi.Resource] = (),
        backup_store: pulumi.Resource | None = None,
        restore_confirmed: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("omni-scale:omni:TalosCluster", name, None, opts)
        template = render_cluster_template(name, spec)
        secret_patches = spec.secret_patches()
        self.resource = _TalosClusterResource(
            name,
            {
                "cluster_name": name,
                # With a secret patch the whole template is a secret: encrypted in the state, [secret] in diffs.
                "template": pulumi.Output.secret(template) if secret_patches else template,
                "manifests": list(manifests),
                "kubeconfig_ttl_seconds": int(kubeconfig_ttl_seconds),
                # Set only with restore_from (an older state has no such input, and is the same).
                **({"restore_confirmed": restore_confirmed} if spec.restore_from is not None else {}),
            },
            pulumi.ResourceOptions(
                parent=self,
                protect=protect,
                depends_on=list(machine_classes) + ([backup_store] if backup_store is not None else []),
                additional_secret_outputs=["kubeconfig"] + (["template"] if secret_patches else []),
            ),
        )
        self.template = self.resource.template
        # What may be shown (the `clusters` output): the template without the secret patches' content.
        self.shown_template: pulumi.Output[str] = (
            pulumi.Output.unsecret(self.template.apply(lambda t: redacted_template(t, secret_patches)))
            if secret_patches
            else self.template
        )
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(self.resource.kubeconfig)
        self.kubeconfig_expires_at = self.resource.kubeconfig_expires_at
        # How recent its etcd backups are, when it has them: a warning (drift) once they are stale.
        if spec.features.backup_interval:
            watch = EtcdBackupWatch(
                name,
                duration_seconds(spec.features.backup_interval),
                pulumi.ResourceOptions(parent=self, depends_on=[self.resource]),
            )
            warn_when_stale(watch, name)
        # Not registered as a component output: verbose SDK logs print those in plain text, secrets too.
        self.register_outputs({"template": self.shown_template})
