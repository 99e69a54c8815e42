"""The service-account resource's judgements without Omni: when a key is due, when a rotation is asked, what a diff
says; and the command that hands out an automation account's key (components/cli/keys.py)."""

import base64
import json
import stat
from datetime import UTC, datetime, timedelta

import pytest

from components.cli import keys
from components.omni.service_accounts import (
    ServiceAccountProvider,
    identity_id,
    printed_key,
    provider_account,
    renewal_due,
)
from tests.conftest import configure

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
YEAR = 365 * 86400.0


def at(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    "left_days,ttl_days,due",
    [(200, 365, False), (122, 365, False), (121, 365, True), (0, 365, True), (-3, 365, True), (29, 90, True)],
)
def test_a_key_is_renewed_once_less_than_a_third_of_its_asked_life_is_left(left_days, ttl_days, due):
    assert renewal_due(at(left_days), ttl_days * 86400, NOW) is due


def test_a_key_that_never_expires_is_never_due():
    assert renewal_due(None, YEAR, NOW) is False


def test_omnis_names_for_the_two_kinds_of_account():
    assert provider_account("matrix-cluster") == "infra-provider:matrix-cluster"
    assert (
        identity_id("infra-provider:matrix-cluster") == "matrix-cluster@infra-provider.serviceaccount.omni.sidero.dev"
    )
    assert identity_id("drift") == "drift@serviceaccount.omni.sidero.dev"


def test_the_key_is_the_one_line_omnictl_prints_for_it():
    printed = "Set the following...\nOMNI_ENDPOINT=https://x\nOMNI_SERVICE_ACCOUNT_KEY=abc=\n\nNote: ..."
    assert printed_key(printed) == "abc="


OLDS = {
    "account": "drift",
    "role": "Reader",
    "infra_provider": None,
    "ttl_seconds": 90 * 86400.0,
    "rotation": "",
    "key": "k",
    "key_id": "ab",
    "expires_at": (datetime.now(UTC) + timedelta(days=80)).isoformat(),
    "rotated": "",
}
INPUTS = {k: OLDS[k] for k in ("account", "role", "infra_provider", "ttl_seconds", "rotation")} | {"key": None}


def diff(news: dict, olds: dict = OLDS):
    return configure(ServiceAccountProvider(), {}).diff("drift", olds, news)


def test_a_fresh_key_with_the_same_inputs_is_no_change():
    assert diff(INPUTS).changes is False


def test_a_new_rotation_label_changes_it_and_unsetting_the_label_does_not():
    assert diff({**INPUTS, "rotation": "leaked"}).changes is True
    rotated = {**OLDS, "rotated": "leaked"}
    assert diff({**INPUTS, "rotation": "leaked"}, rotated).changes is False
    assert diff({**INPUTS, "rotation": ""}, rotated).changes is False


def test_a_key_omni_no_longer_holds_or_a_due_one_changes_it_in_place():
    assert diff(INPUTS, {**OLDS, "key_id": None}).changes is True
    due = diff(INPUTS, {**OLDS, "expires_at": (datetime.now(UTC) + timedelta(days=20)).isoformat()})
    assert (due.changes, due.replaces) == (True, [])


def test_another_role_makes_the_account_again():
    result = diff({**INPUTS, "role": "Operator"})
    assert (result.changes, result.replaces, result.delete_before_replace) == (True, ["role"], True)


def test_an_adoption_key_of_another_account_is_refused_in_check():
    other = base64.b64encode(json.dumps({"name": "someone", "pgp_key": "not armored"}).encode()).decode()
    failures = configure(ServiceAccountProvider(), {}).check({}, {**INPUTS, "key": other}).failures
    assert [f.property for f in failures] == ["key"] and "providerOmniServiceAccountKey" in failures[0].reason
    assert other not in failures[0].reason


# ----------------------------------------------------------------------------------------- the key command

STATE = {
    "resources": [
        {"type": "pulumi:pulumi:Stack", "outputs": {}},
        {
            "type": keys.SERVICE_ACCOUNT_TYPE,
            "outputs": {"account": "drift", "key": {"4dabf18193072939515e22adb298388d": "x", "plaintext": '"K1"'}},
        },
        {"type": keys.SERVICE_ACCOUNT_TYPE, "outputs": {"account": "infra-provider:p", "key": "K2"}},
    ]
}


def test_the_key_is_read_from_the_decrypted_state_by_account():
    assert keys.key_in_state(STATE, "drift") == "K1"
    assert keys.key_in_state(STATE, "infra-provider:p") == "K2"
    with pytest.raises(keys.KeyNotHeld, match="holds: drift, infra-provider:p"):
        keys.key_in_state(STATE, "ci")


def test_the_key_file_is_new_and_0600(tmp_path):
    target = tmp_path / "drift.key"
    keys.write_private(target, "K1")
    assert target.read_text() == "K1\n" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        keys.write_private(target, "K2")
    assert target.read_text() == "K1\n"


def test_without_a_file_the_key_goes_only_to_a_terminal(tmp_path, capsys):
    def never(*_args):
        raise AssertionError("the state is not read when the key has nowhere to go")

    assert keys.hand_out("drift", None, never, tmp_path, {}, is_terminal=False) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--out" in captured.err
