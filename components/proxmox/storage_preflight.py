"""StoragePreflight: a ComponentResource whose dynamic provider checks the Proxmox side at
`preview`, before anything is applied, and records what it found so refresh and preview show
when the live infrastructure changed."""

from __future__ import annotations

from dataclasses import replace

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.dynamic import StackConfiguredProvider, TypedResource
from components.core.errors import UserError
from components.core.settings import provider_token_id, proxmox_from_config
from components.core.spec import PROVIDER_PRIVILEGES, Spec, spec_document
from components.core.spec_file import parse_spec
from components.proxmox.client import ProxmoxClient, ProxmoxError
from components.proxmox.preflight import Report, pools_to_fill, run_preflight

# Before each problem the preflight finds: the drift job (components/cli/drift.py) tells such a failure (the estate no
# longer satisfies the spec: drift) from any other (unreachable, refused: not judged) by this, not by engine wording.
PREFLIGHT_MARK = "[preflight] "
PREFLIGHT_TYPE = "omni-scale:proxmox:StoragePreflight"
MANAGED_TOKEN = "(the one the program makes)"


class StoragePreflightProvider(StackConfiguredProvider):
    """The Proxmox API token comes from the stack config (see StackConfiguredProvider).

    Inputs hold the judgement (see preflight.Report), which `diff` compares; the readings are outputs only,
    taken again when the resource is created, updated or read, so a moving estate never shows as a change."""

    def _observe(self, document: dict, quiet: bool = False, judge: bool = True, managed_token: bool = False) -> Report:
        """judge=False: for the readings only, which leave the pools out."""
        spec = parse_spec(document, "specs/omni.yaml")
        client = ProxmoxClient(proxmox_from_config(self._config))
        facts = client.cluster_facts()
        # The pools matter only while a VM is still to be built (the provider fills them as it makes VMs): 2 more
        # requests then, once per run.
        if judge and pools_to_fill(spec, facts.guests):
            if managed_token:
                # The token the program makes holds its role on / (PROVIDER_PRIVILEGES, the pool privileges among
                # them): nothing to read.
                granted = {"/": {p: 1 for p in PROVIDER_PRIVILEGES if p.startswith("Pool.")}}
                pools = replace(client.pool_facts(None), provider_token=MANAGED_TOKEN, provider_permissions=granted)
            else:
                pools = client.pool_facts(provider_token_id(self._config))
            facts = replace(facts, pools=pools)
        report = run_preflight(spec, facts)
        for warning in [] if quiet else report.warnings:
            progress(f"preflight warning: {warning}")
        return report

    def check(self, _olds: dict, news: dict) -> CheckResult:
        # The judgement is added here; readings are never inputs. Whether the program makes the provider's token is
        # an input diff leaves alone (a state made before it has none).
        inputs = {"spec": news["spec"], **_managed_token(news)}
        try:
            report = self._observe(news["spec"], managed_token=bool(news.get("managed_token")))
        except (ProxmoxError, UserError) as exc:
            return CheckResult(inputs, [CheckFailure("proxmox" if isinstance(exc, ProxmoxError) else "spec", str(exc))])
        return CheckResult(
            {**inputs, "judgement": report.judgement()},
            [CheckFailure("preflight", PREFLIGHT_MARK + e) for e in report.errors],
        )

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [
            k for k, old in (("spec", olds.get("spec")), ("judgement", judgement_of(olds))) if old != news.get(k)
        ]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def _with_readings(self, props: dict) -> dict:
        try:
            readings = self._observe(props["spec"], quiet=True, judge=False).readings
        except ProxmoxError as exc:  # the check just passed: readings are for people, so they do not stop `up`
            progress(f"preflight: could not take the readings ({exc})")
            readings = {}
        return {"spec": props["spec"], **_managed_token(props), "judgement": props["judgement"], "readings": readings}

    def create(self, props: dict) -> CreateResult:
        return CreateResult("storage-preflight", self._with_readings(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._with_readings(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        report = self._observe(props["spec"], quiet=True, managed_token=bool(props.get("managed_token")))
        inputs = {"spec": props["spec"], **_managed_token(props), "judgement": report.judgement()}
        return ReadResult(id_, {**inputs, "readings": report.readings}, inputs)

    def delete(self, _id: str, _props: dict) -> None:
        pass  # a check has nothing to tear down


def _managed_token(props: dict) -> dict:
    """The flag as the props hold it; a state made before it has none, and keeps none (refresh changes nothing)."""
    return {"managed_token": bool(props["managed_token"])} if "managed_token" in props else {}


def judgement_of(props: dict) -> dict | None:
    """The judgement a state records; a state written before readings and judgement were told apart kept
    both under `live`, whose judgement part compares the same."""
    if "judgement" in props or "live" not in props:
        return props.get("judgement")
    live = props["live"] or {}
    return {k: live.get(k) for k in ("storage_by_class", "requested", "warnings")}


class _StoragePreflightResource(TypedResource, module="proxmox", name="StoragePreflight"):
    judgement: pulumi.Output[dict]
    readings: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(StoragePreflightProvider(), name, {**props, "judgement": None, "readings": None}, opts)


class StoragePreflight(pulumi.ComponentResource):
    """Every node online, every class's storage selector matching a usable storage on every node
    it may land on, bridges present, capacity enough, DNS not public, control planes spread."""

    def __init__(self, name: str, spec: Spec, opts: pulumi.ResourceOptions | None = None):
        super().__init__(PREFLIGHT_TYPE, name, None, opts)
        managed_token = spec.infra_provider.proxmox_identity is not None and spec.provider_lxc is not None
        self.resource = _StoragePreflightResource(
            name, {"spec": spec_document(spec), "managed_token": managed_token}, pulumi.ResourceOptions(parent=self)
        )
        self.judgement = self.resource.judgement
        self.readings = self.resource.readings
        self.register_outputs({"judgement": self.judgement, "readings": self.readings})
