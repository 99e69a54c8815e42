"""When an Omni key expires, read from the key as omnictl prints it (base64 of JSON with the armored PGP key): the
facts, the notice a preview prints, and a key that cannot be read named without any of it."""

import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from pysequoia import CipherSuite, Tsk

from components.core.program import ProgramSettings
from components.omni.service_account_key import KeyUnreadable, expiry_notice, key_facts
from tests.conftest import program_settings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def printed_key(account: str, validity_seconds: int | None) -> tuple[str, str]:
    """A key shaped as omnictl prints it (Omni's keys are Curve25519 PGP keys with a lifetime), and its fingerprint."""
    tsk = Tsk.generate(account, cipher_suite=CipherSuite.Cv25519, validity_seconds=validity_seconds)
    document = {"name": account, "pgp_key": str(tsk)}
    return base64.b64encode(json.dumps(document).encode()).decode(), tsk.extract_certificate().fingerprint.lower()


def test_the_account_fingerprint_and_expiry_are_read_from_the_key():
    key, fingerprint = printed_key("infra-provider:matrix-cluster", 3 * 86400)
    facts = key_facts(key)
    assert (facts.account, facts.fingerprint) == ("infra-provider:matrix-cluster", fingerprint)
    left = facts.expires_at - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(minutes=5) < left <= timedelta(days=3)


def test_a_key_is_named_when_expired_or_due_and_not_before():
    key, fingerprint = printed_key("drift", 10 * 86400)
    facts = key_facts(key)
    window = timedelta(days=30)
    due = expiry_notice("omniServiceAccountKey", facts, facts.expires_at - timedelta(days=10), window)
    assert due.startswith(f"omniServiceAccountKey (service account 'drift', key {fingerprint[:16]}) expires at ")
    assert due.endswith("in 10.0 days: renew it")
    assert expiry_notice("k", facts, facts.expires_at - timedelta(days=31), window) is None
    gone = expiry_notice("k", facts, facts.expires_at + timedelta(seconds=1), window)
    assert gone.startswith("k (service account 'drift'") and " expired at " in gone
    forever = key_facts(printed_key("forever", None)[0])
    assert forever.expires_at is None and expiry_notice("k", forever, NOW, window) is None


@pytest.mark.parametrize(
    "key, message",
    [
        ("not base64!", "not a key as omnictl prints one"),
        (base64.b64encode(b'{"name": "x"}').decode(), "not a key as omnictl prints one"),
        (
            base64.b64encode(json.dumps({"name": "x", "pgp_key": "SECRET-MATERIAL"}).encode()).decode(),
            "the PGP key of 'x' could not be read",
        ),
    ],
)
def test_a_key_that_cannot_be_read_is_named_without_any_of_it(key, message):
    with pytest.raises(KeyUnreadable) as refused:
        key_facts(key)
    assert str(refused.value).startswith(message) and "SECRET-MATERIAL" not in str(refused.value)


def test_the_program_names_each_key_it_holds_that_is_due_and_no_other():
    due, _ = printed_key("infra-provider:matrix-cluster", 5 * 86400)
    far, _ = printed_key("omni-scale", 300 * 86400)
    config = {"omniServiceAccountKey": far, "providerOmniServiceAccountKey": due}
    settings = program_settings(
        SimpleNamespace(get=config.get),
        key_expiry_warning_days=30,
        omni_key_names=("omniServiceAccountKey", "providerOmniServiceAccountKey"),
    )
    [notice], unreadable = settings.key_expiry_notices()
    assert unreadable == []
    assert notice.startswith("providerOmniServiceAccountKey (service account 'infra-provider:matrix-cluster'")
    assert due not in notice and far not in notice
    assert ProgramSettings(**{**settings.__dict__, "key_expiry_warning_days": 4}).key_expiry_notices() == ([], [])
    garbled = ProgramSettings(
        **{**settings.__dict__, "config": SimpleNamespace(get={"omniServiceAccountKey": "x"}.get)}
    )
    assert garbled.key_expiry_notices() == (
        [],
        [
            "omniServiceAccountKey: not a key as omnictl prints one (base64 of JSON with name and pgp_key); when it "
            "expires is not known"
        ],
    )
