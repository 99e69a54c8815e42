"""Omni MachineClass: a ComponentResource over a dynamic provider that drives omnictl."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import yaml
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    UpdateResult,
)
from pydantic import ValidationError

from components.core.dynamic import OmniProvider, TypedResource, adopted
from components.core.spec import MachineClassSpec, ProviderData
from components.omni.infra_provider import check_provider
from components.omni.render import (
    DEFAULT_NAMESPACE,
    MACHINE_CLASS_TYPE,
    label_class_document,
    machine_class_document,
    provisioning_of,
)

# Inputs that name the Omni resource: changing them means a different resource.
_IDENTITY = ("class_id", "namespace")
# Set only when the spec sets them (MachineClassSpec.provisioning): a state from before has none, and is the same.
_PROVISIONING = ("kernel_args", "meta_values", "grpc_tunnel")
# match_labels: only a class that selects registered machines has it (and then none of the others).
_COMPARED = _IDENTITY + ("provider_id", "provider_data", "match_labels") + _PROVISIONING


def canonical_provider_data(value: Any) -> dict:
    """providerdata as Omni holds it (a YAML string) or as we send it (a mapping), in one form."""
    if isinstance(value, str):
        value = yaml.safe_load(value) or {}
    return ProviderData.model_validate(value).as_document()


def live_inputs(document: dict, namespace: str) -> dict:
    """The inputs that would produce what Omni holds now: what `read` reports for refresh."""
    spec = document.get("spec") or {}
    if spec.get("matchlabels"):
        return {"class_id": document["metadata"]["id"], "namespace": namespace, "match_labels": spec["matchlabels"]}
    auto = spec.get("autoprovision") or {}
    return {
        "class_id": document["metadata"]["id"],
        "namespace": namespace,
        "provider_id": auto.get("providerid", ""),
        "provider_data": _loose_provider_data(auto.get("providerdata", "")),
        **provisioning_of(auto),
    }


def _loose_provider_data(text: str) -> dict:
    """Live providerdata may be anything someone applied by hand; keep it comparable even if invalid."""
    try:
        return canonical_provider_data(text)
    except (ValidationError, yaml.YAMLError):
        data = yaml.safe_load(text) if isinstance(text, str) else text
        return data if isinstance(data, dict) else {"_unparsed": str(text)}


class MachineClassProvider(OmniProvider):
    """check/diff/read tell the truth about Omni; create/update/delete go through omnictl.

    The instance is pickled into the stack state by the Python SDK: it must hold no
    secret, so the omnictl client is built from the stack config in `configure`, which
    runs in the provider process, and is dropped from the pickle.
    """

    def check(self, _olds: dict, news: dict) -> CheckResult:
        failures = []
        inputs = dict(news)
        inputs.setdefault("namespace", DEFAULT_NAMESPACE)
        matches_labels = "match_labels" in news  # a class of registered machines: no provider, no providerdata
        if not matches_labels:
            try:
                inputs["provider_data"] = canonical_provider_data(news.get("provider_data"))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"])
                    failures.append(CheckFailure(f"provider_data.{loc}" if loc else "provider_data", err["msg"]))
        for key in ("class_id",) if matches_labels else ("class_id", "provider_id"):
            if not news.get(key):
                failures.append(CheckFailure(key, "a non-empty string"))
        if matches_labels and not news["match_labels"]:
            failures.append(CheckFailure("match_labels", "at least one label selector"))
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [k for k in _COMPARED if _comparable(k, olds.get(k)) != _comparable(k, news.get(k))]
        replaces = [k for k in changed if k in _IDENTITY]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def _apply(self, props: dict) -> dict:
        if "match_labels" in props:
            document = label_class_document(props["class_id"], props["match_labels"])
        else:
            check_provider(
                self.client,
                props["provider_id"],
                props["provider_data"],
                props["class_id"],
                self.settings.provider_heartbeat_max_age_seconds,
            )
            document = machine_class_document(
                props["class_id"],
                props["provider_id"],
                props["provider_data"],
                {k: props[k] for k in _PROVISIONING if k in props},
            )
        document["metadata"]["namespace"] = props["namespace"]
        self.client.apply(document)
        live = self.client.get(MACHINE_CLASS_TYPE, props["class_id"], props["namespace"])
        return live_inputs(live, props["namespace"])

    def create(self, props: dict) -> CreateResult:
        id_ = class_resource_id(props["namespace"], props["class_id"])
        return adopted(self, id_, props) or CreateResult(id_, self._apply(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        namespace, _, class_id = id_.partition("/")
        live = self.client.get_or_none(MACHINE_CLASS_TYPE, class_id, namespace)
        if live is None:
            return ReadResult(None, {})  # gone: refresh drops it, the next up recreates it
        current = live_inputs(live, namespace)
        return ReadResult(id_, current, current)

    def delete(self, id_: str, props: dict) -> None:
        namespace, _, class_id = id_.partition("/")
        if self.client.get_or_none(MACHINE_CLASS_TYPE, class_id, namespace) is not None:
            self.client.delete(MACHINE_CLASS_TYPE, class_id, namespace)


def class_resource_id(namespace: str, class_id: str) -> str:
    """The id a MachineClass is read by (and adopted by)."""
    return f"{namespace}/{class_id}"


def _comparable(key: str, value: Any) -> Any:
    if key == "provider_data" and value is not None:
        return _loose_provider_data(value) if isinstance(value, str) else dict(value)
    return value


class _MachineClassResource(TypedResource, module="omni", name="MachineClass"):
    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(MachineClassProvider(), name, props, opts)


class MachineClass(pulumi.ComponentResource):
    """One Omni MachineClass: it auto-provisions VMs through the infra provider, or selects registered machines
    by their labels."""

    def __init__(
        self,
        class_id: str,
        spec: MachineClassSpec,
        *,
        protect: bool = False,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("omni-scale:omni:MachineClass", class_id, None, opts)
        props: dict = {"class_id": class_id, "namespace": DEFAULT_NAMESPACE}
        if spec.autoprovisions:
            props.update(provider_id=spec.provider_id, provider_data=spec.data.as_document(), **spec.provisioning())
        else:
            props["match_labels"] = list(spec.match_labels or [])
        self.resource = _MachineClassResource(
            class_id, props, pulumi.ResourceOptions(parent=self, protect=protect, depends_on=list(depends_on))
        )
        self.class_id = pulumi.Output.from_input(class_id)
        self.provider_data = self.resource.provider_data  # type: ignore[attr-defined]
        self.register_outputs({"class_id": self.class_id, "provider_data": self.provider_data})
