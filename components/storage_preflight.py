"""StoragePreflight: a ComponentResource whose dynamic provider checks the Proxmox side at
`preview`, before anything is applied, and records what it found so refresh and preview show
when the live infrastructure changed."""

from __future__ import annotations

from typing import Optional

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from .console import progress
from .providers import StackConfiguredProvider
from .preflight import run_preflight
from .proxmox import ProxmoxClient, ProxmoxError
from .settings import proxmox_from_config
from .spec import Spec, SpecError, parse_spec, spec_document


class StoragePreflightProvider(StackConfiguredProvider):
    """The Proxmox API token comes from the stack config (see StackConfiguredProvider)."""

    def _observe(self, document: dict) -> tuple[dict, list[str]]:
        spec = parse_spec(document, "specs/omni.yaml")
        facts = ProxmoxClient(proxmox_from_config(self._raw_config)).node_facts()
        report = run_preflight(spec, facts)
        for warning in report.warnings:
            progress(f"preflight warning: {warning}")
        return report.outputs(), report.errors

    def check(self, _olds: dict, news: dict) -> CheckResult:
        try:
            live, errors = self._observe(news["spec"])
        except (ProxmoxError, SpecError) as exc:
            return CheckResult(news, [CheckFailure("proxmox" if isinstance(exc, ProxmoxError) else "spec", str(exc))])
        # What the infrastructure looks like now is part of the desired state: a change shows in diff.
        return CheckResult({**news, "live": live}, [CheckFailure("preflight", e) for e in errors])

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in ("spec", "live") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def create(self, props: dict) -> CreateResult:
        return CreateResult("storage-preflight", dict(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(dict(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        live, _errors = self._observe(props["spec"])
        current = {**props, "live": live}
        return ReadResult(id_, current, {"spec": props["spec"], "live": live})

    def delete(self, _id: str, _props: dict) -> None:
        pass  # a check has nothing to tear down


class _StoragePreflightResource(Resource):
    live: pulumi.Output[dict]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(StoragePreflightProvider(), name, {**props, "live": None}, opts)


class StoragePreflight(pulumi.ComponentResource):
    """Every node online, every class's storage selector matching a usable storage on every node
    it may land on, bridges present, capacity enough, DNS not public, control planes spread."""

    def __init__(self, name: str, spec: Spec, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("omni-scale:proxmox:StoragePreflight", name, None, opts)
        self.resource = _StoragePreflightResource(
            name, {"spec": spec_document(spec)}, pulumi.ResourceOptions(parent=self))
        self.live = self.resource.live
        self.register_outputs({"live": self.live})
