"""What Omni knows of the infra provider: is it registered, is its providerdata schema
satisfied, is it healthy. MachineClasses are checked against this before they are written,
because a class for a missing or stalled provider silently provisions nothing."""

from __future__ import annotations

import json
import time

import jsonschema

from .omnictl import Omnictl

STATUS_TYPE = "InfraProviderStatuses.omni.sidero.dev"
STATUS_NAMESPACE = "infra-provider"
HEALTH_TYPE = "InfraProviderHealthStatuses.omni.sidero.dev"
HEALTH_NAMESPACE = "infra-provider-ephemeral"


class ProviderNotReady(Exception):
    """The infra provider cannot take this MachineClass now; the message says why and what to do."""


def schema_problems(schema_text: str, provider_data: dict) -> list[str]:
    schema = json.loads(schema_text)
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}"
            for err in sorted(validator.iter_errors(provider_data), key=lambda e: list(e.absolute_path))]


def heartbeat_age_seconds(health: dict, now: float) -> float | None:
    stamp = (health.get("spec") or {}).get("lastheartbeattimestamp") or {}
    if not stamp.get("seconds"):
        return None
    return now - (int(stamp["seconds"]) + int(stamp.get("nanos", 0)) / 1e9)


def check_provider(client: Omnictl, provider_id: str, provider_data: dict, class_id: str,
                   max_heartbeat_age_seconds: float, now: float | None = None) -> None:
    status = client.get_or_none(STATUS_TYPE, provider_id, STATUS_NAMESPACE)
    if status is None:
        raise ProviderNotReady(
            f"MachineClass {class_id}: infra provider {provider_id!r} is not registered with Omni "
            f"(no {STATUS_TYPE} {STATUS_NAMESPACE}/{provider_id}); start the provider first, "
            "or fix provider_id in the spec")
    schema = (status.get("spec") or {}).get("schema")
    if schema:
        problems = schema_problems(schema, provider_data)
        if problems:
            raise ProviderNotReady(
                f"MachineClass {class_id}: providerdata does not satisfy the schema infra provider "
                f"{provider_id!r} published: " + "; ".join(problems))
    health = client.get_or_none(HEALTH_TYPE, provider_id, HEALTH_NAMESPACE)
    age = heartbeat_age_seconds(health, now if now is not None else time.time()) if health else None
    if age is None:
        raise ProviderNotReady(f"MachineClass {class_id}: infra provider {provider_id!r} has never "
                               "reported a heartbeat to Omni; is it running?")
    if age > max_heartbeat_age_seconds:
        raise ProviderNotReady(
            f"MachineClass {class_id}: infra provider {provider_id!r} last reported {age:.0f}s ago "
            f"(more than {max_heartbeat_age_seconds:.0f}s); is it running, and is its Omni "
            "service-account key unexpired?")
    error = (health.get("spec") or {}).get("error")
    if error:
        raise ProviderNotReady(f"MachineClass {class_id}: infra provider {provider_id!r} reports an error: {error}")
