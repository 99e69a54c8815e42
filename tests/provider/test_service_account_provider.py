"""The service-account dynamic provider against the lab's real Omni (v1.7.0, omnictl v1.8.0): the infra provider's
registration and an automation account, made, adopted, renewed, rotated and removed with the same omnictl argv the
engine would use."""

from datetime import UTC, datetime, timedelta

import pytest

from components.omni.infra_provider import HEALTH_NAMESPACE, HEALTH_TYPE
from components.omni.omnictl import Unauthorized
from components.omni.render import label_class_document
from components.omni.service_account_key import key_facts
from components.omni.service_accounts import (
    INFRA_PROVIDER_ROLE,
    PROVIDER_NAMESPACE,
    PROVIDER_TYPE,
    ServiceAccountError,
    ServiceAccountProvider,
    provider_account,
)
from lab import omni_lab
from tests.provider.conftest import PROVIDER_ID, configured, stack_config

DAY = 86400.0


def registration(provider_id: str, ttl_days: float = 2, key=None, rotation: str = "") -> dict:
    return {
        "account": provider_account(provider_id),
        "role": INFRA_PROVIDER_ROLE,
        "infra_provider": provider_id,
        "ttl_seconds": ttl_days * DAY,
        "rotation": rotation,
        "key": key,
    }


def reader(name: str, ttl_days: float = 2, rotation: str = "") -> dict:
    return {
        "account": name,
        "role": "Reader",
        "infra_provider": None,
        "ttl_seconds": ttl_days * DAY,
        "rotation": rotation,
    }


@pytest.fixture
def provider(lab):
    return configured(ServiceAccountProvider, stack_config(lab["omni"]))


def heartbeat_as(omni: dict, key: str, provider_id: str) -> None:
    """What the provider does with its key: write its own heartbeat (only its own account may)."""
    omni_lab.lab_omnictl(omni, key).apply(
        {
            "metadata": {"namespace": HEALTH_NAMESPACE, "type": HEALTH_TYPE, "id": provider_id},
            "spec": {"lastheartbeattimestamp": {"seconds": int(datetime.now(UTC).timestamp())}},
        }
    )


def test_a_new_provider_gets_its_identity_and_a_key_of_the_asked_life(lab, provider):
    created = provider.create(registration("fresh-provider"))
    try:
        outs = created.outs
        assert created.id == "infra-provider:fresh-provider"
        # Listed as an infra provider, as `infraprovider create` would have made it.
        assert provider.client.get_or_none(PROVIDER_TYPE, "fresh-provider", PROVIDER_NAMESPACE) is not None
        facts = key_facts(outs["key"])
        assert (facts.account, facts.fingerprint) == ("infra-provider:fresh-provider", outs["key_id"])
        left = datetime.fromisoformat(outs["expires_at"]) - datetime.now(UTC)
        assert timedelta(days=1, hours=23) < left <= timedelta(days=2)
        heartbeat_as(lab["omni"], outs["key"], "fresh-provider")
        assert provider.read(created.id, outs).outs == outs
        assert provider.diff(created.id, outs, registration("fresh-provider")).changes is False
    finally:
        provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id is None
    with pytest.raises(Unauthorized):
        heartbeat_as(lab["omni"], created.outs["key"], "fresh-provider")
    omni_lab.lab_omnictl(lab["omni"]).run("infraprovider", "delete", "fresh-provider")


def test_a_key_in_the_last_third_of_its_life_is_renewed_and_the_old_one_lapses_on_its_own(lab, provider):
    created = provider.create(registration("renewing", ttl_days=2))
    try:
        old = created.outs
        assert provider.diff(created.id, old, registration("renewing", ttl_days=2)).changes is False
        # Two days left: the last third of a life of nine days (as a key of nine is after six).
        wanted = registration("renewing", ttl_days=9)
        assert provider.diff(created.id, old, wanted).changes is True
        renewed = provider.update(created.id, old, wanted).outs
        assert renewed["key_id"] != old["key_id"]
        # omnictl v1.8 makes every renewed key live a year, whatever --ttl says.
        assert datetime.fromisoformat(renewed["expires_at"]) - datetime.now(UTC) > timedelta(days=364)
        assert provider.diff(created.id, renewed, wanted).changes is False
        heartbeat_as(lab["omni"], renewed["key"], "renewing")
        # Omni revokes no single key of an account: the old one works until its own expiry.
        heartbeat_as(lab["omni"], old["key"], "renewing")
    finally:
        provider.delete(created.id, created.outs)
        omni_lab.lab_omnictl(lab["omni"]).run("infraprovider", "delete", "renewing")


def test_a_rotation_on_purpose_revokes_every_old_key_at_once(lab, provider):
    created = provider.create(registration("rotating"))
    try:
        old = created.outs
        wanted = registration("rotating", rotation="leaked 2026-12")
        assert provider.diff(created.id, old, wanted).changes is True
        rotated = provider.update(created.id, old, wanted).outs
        assert rotated["key_id"] != old["key_id"] and rotated["rotated"] == "leaked 2026-12"
        heartbeat_as(lab["omni"], rotated["key"], "rotating")
        with pytest.raises(Unauthorized):
            heartbeat_as(lab["omni"], old["key"], "rotating")
        assert provider.diff(created.id, rotated, wanted).changes is False
    finally:
        provider.delete(created.id, created.outs)
        omni_lab.lab_omnictl(lab["omni"]).run("infraprovider", "delete", "rotating")


def test_an_existing_provider_is_adopted_with_the_key_the_config_holds_and_refused_without(lab, provider):
    key = _registered_key(lab)
    with pytest.raises(ServiceAccountError) as refused:
        provider.create(registration(PROVIDER_ID))
    assert "providerOmniServiceAccountKey" in str(refused.value) and key not in str(refused.value)
    adopted = provider.create(registration(PROVIDER_ID, key=key))
    assert adopted.outs["key"] == key and adopted.outs["key_id"] == key_facts(key).fingerprint
    # Someone else's key is refused before anything happens.
    other = omni_lab.revoked_key(lab["omni"], "someone-else")
    failures = provider.check({}, registration(PROVIDER_ID, key=other)).failures
    assert [f.property for f in failures] == ["key"] and "someone-else" in failures[0].reason


def _registered_key(lab) -> str:
    import json

    return json.loads((lab["dir"] / "provider.json").read_text())["key"]


def test_an_automation_account_has_its_role_and_a_key_omni_lists(lab, provider):
    created = provider.create(reader("drift-job"))
    try:
        listed = omni_lab.lab_omnictl(lab["omni"]).run("serviceaccount", "list")
        [row] = [line.split() for line in listed.splitlines() if line.startswith("drift-job ")]
        assert row[1] == "Reader" and row[3].lower() == created.outs["key_id"]
        as_reader = omni_lab.lab_omnictl(lab["omni"], created.outs["key"])
        as_reader.run("get", "machineclasses")
        with pytest.raises(Unauthorized):
            as_reader.apply(label_class_document("by-reader", ["a"]))
        # Made elsewhere, an account's key cannot be had: the program says how to let it make one.
        with pytest.raises(ServiceAccountError) as refused:
            provider.create(reader("drift-job"))
        assert "omnictl serviceaccount destroy drift-job" in str(refused.value)
    finally:
        provider.delete(created.id, created.outs)
