"""What Omni knows of the infra provider: is it registered, is its providerdata schema
satisfied, is it healthy. MachineClasses are checked against this before they are written,
because a class for a missing or stalled provider silently provisions nothing."""

from __future__ import annotations

import json
import threading
import time

import jsonschema

from components.omni.omnictl import Omnictl

STATUS_TYPE = "InfraProviderStatuses.omni.sidero.dev"
STATUS_NAMESPACE = "infra-provider"
HEALTH_TYPE = "InfraProviderHealthStatuses.omni.sidero.dev"
HEALTH_NAMESPACE = "infra-provider-ephemeral"


class ProviderNotReady(Exception):
    """The infra provider cannot take this MachineClass now; the message says why and what to do."""


def schema_problems(schema_text: str, provider_data: dict) -> list[str]:
    schema = json.loads(schema_text)
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}"
        for err in sorted(validator.iter_errors(provider_data), key=lambda e: list(e.absolute_path))
    ]


def heartbeat_at(health: dict | None) -> float | None:
    """When the provider last reported (its own clock, seconds since the epoch), or None."""
    stamp = ((health or {}).get("spec") or {}).get("lastheartbeattimestamp") or {}
    if not stamp.get("seconds"):
        return None
    return int(stamp["seconds"]) + int(stamp.get("nanos", 0)) / 1e9


def heartbeat_age_seconds(health: dict, now: float) -> float | None:
    at = heartbeat_at(health)
    return None if at is None else now - at


def last_heartbeat(client: Omnictl, provider_id: str) -> float | None:
    return heartbeat_at(client.get_or_none(HEALTH_TYPE, provider_id, HEALTH_NAMESPACE))


class ProviderNotRegistered(ProviderNotReady):
    """The provider's container started, but the provider never registered with Omni."""


def wait_for_registration(
    client: Omnictl, provider_id: str, after: float | None, timeout_seconds: float, poll_seconds: float = 1.0
) -> None:
    """Returns once Omni holds the provider's InfraProviderStatus with its providerdata schema and a heartbeat
    newer than `after` (the last one before its container was started again; None: it never reported): the
    provider registers only once it runs, seconds after `docker compose up -d`. Comparing with its own earlier
    heartbeat, not with this machine's clock, keeps a skewed clock in the LXC from deciding."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        status = client.get_or_none(STATUS_TYPE, provider_id, STATUS_NAMESPACE)
        at = last_heartbeat(client, provider_id)
        if (status or {}).get("spec", {}).get("schema") and at is not None and (after is None or at > after):
            return
        if time.monotonic() > deadline:
            seen = (
                "no InfraProviderStatus" if status is None else "no new heartbeat" if at is not None else "no heartbeat"
            )
            raise ProviderNotRegistered(
                f"infra provider {provider_id!r} did not register with Omni within {timeout_seconds:.0f}s of "
                f"`docker compose up -d` ({seen})"
            )
        time.sleep(poll_seconds)  # Omni's state, written by another process: nothing to wait on but a re-read


# One good reading of a provider (registered, a recent heartbeat, no error) serves every class checked within this
# long in this process: an `up` checks its classes seconds apart, and a heartbeat is judged in minutes. Two reads per
# provider and run, not per class (issue 22: 200 of an `up`'s Omni calls at 100 classes). A reading that finds the
# provider not ready is never reused.
READING_REUSE_SECONDS = 10.0
_good_readings: dict[tuple[str, str], tuple[float, dict, dict]] = {}
# Classes checked at once wait for the first one's reading instead of each reading Omni.
_readings_lock = threading.Lock()


def forget_provider_readings() -> None:
    """Every held reading dropped: the next check reads Omni again (what a new `pulumi` run starts with)."""
    with _readings_lock:
        _good_readings.clear()


def check_provider(
    client: Omnictl,
    provider_id: str,
    provider_data: dict,
    class_id: str,
    max_heartbeat_age_seconds: float,
    now: float | None = None,
) -> None:
    key = (client.endpoint, provider_id)
    with _readings_lock:
        held = _good_readings.get(key)
        reused = held is not None and time.monotonic() - held[0] < READING_REUSE_SECONDS
        status: dict | None
        health: dict | None
        if held is not None and reused:
            status, health = held[1], held[2]
        else:
            read_at = time.monotonic()
            status = client.get_or_none(STATUS_TYPE, provider_id, STATUS_NAMESPACE)
            health = client.get_or_none(HEALTH_TYPE, provider_id, HEALTH_NAMESPACE) if status is not None else None
        problem = _readiness_problem(provider_id, class_id, health, max_heartbeat_age_seconds, now)
        if status is None or problem is not None:
            _good_readings.pop(key, None)
        elif not reused and health is not None:
            _good_readings[key] = (read_at, status, health)
    if status is None:
        raise ProviderNotReady(
            f"MachineClass {class_id}: infra provider {provider_id!r} is not registered with Omni "
            f"(no {STATUS_TYPE} {STATUS_NAMESPACE}/{provider_id}); start the provider first, "
            "or fix provider_id in the spec"
        )
    schema = (status.get("spec") or {}).get("schema")
    if schema:
        problems = schema_problems(schema, provider_data)
        if problems:
            raise ProviderNotReady(
                f"MachineClass {class_id}: providerdata does not satisfy the schema infra provider "
                f"{provider_id!r} published: " + "; ".join(problems)
            )
    if problem is not None:
        raise ProviderNotReady(problem)


def _readiness_problem(
    provider_id: str, class_id: str, health: dict | None, max_heartbeat_age_seconds: float, now: float | None
) -> str | None:
    """What keeps a registered provider from taking a class now, from its health: no heartbeat, an old one, an
    error; None when it is fine."""
    age = heartbeat_age_seconds(health, now if now is not None else time.time()) if health else None
    if age is None:
        return (
            f"MachineClass {class_id}: infra provider {provider_id!r} has never "
            "reported a heartbeat to Omni; is it running?"
        )
    if age > max_heartbeat_age_seconds:
        return (
            f"MachineClass {class_id}: infra provider {provider_id!r} last reported {age:.0f}s ago "
            f"(more than {max_heartbeat_age_seconds:.0f}s); is it running, and is its Omni "
            "service-account key unexpired?"
        )
    error = ((health or {}).get("spec") or {}).get("error")
    if error:
        return f"MachineClass {class_id}: infra provider {provider_id!r} reports an error: {error}"
    return None
