"""Keys minted by the lab's real Omni (omnictl v1.8.0 against Omni v1.7.0), read for when they expire: the key's
own fingerprint and expiry are the ones Omni lists for it."""

from datetime import UTC, datetime, timedelta

from components.omni.service_account_key import key_facts
from lab import omni_lab, provider_standin


def listed(admin, account: str) -> tuple[str, str]:
    """(public key id, expiration) of the account's one key, as `omnictl serviceaccount list` prints them."""
    [row] = [
        line.split() for line in admin.run("serviceaccount", "list").splitlines() if line.startswith(account + " ")
    ]
    return row[3], row[-1]


def test_a_key_omni_minted_says_the_expiry_and_id_omni_lists_for_it(lab):
    admin = omni_lab.lab_omnictl(lab["omni"])
    key = omni_lab.printed_key(
        admin.run(
            "serviceaccount", "create", "drift-reader", "--use-user-role=false", "--role", "Reader", "--ttl", "48h"
        )
    )
    try:
        facts = key_facts(key)
        key_id, expiration = listed(admin, "drift-reader")
        assert facts.account == "drift-reader" and facts.fingerprint == key_id.lower()
        assert facts.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") == expiration
        assert timedelta(hours=47) < facts.expires_at - datetime.now(UTC) <= timedelta(hours=48)
    finally:
        admin.run("serviceaccount", "destroy", "drift-reader")


def test_an_infra_providers_key_lives_a_year_whatever_ttl_was_asked(lab):
    # omnictl v1.8's infraprovider create reads serviceaccount create's --ttl, so the provider's key gets its default
    # of a year: why the program reads the expiry from the key rather than trusting what it asked for.
    key = provider_standin.create(lab["omni"], "ttl-probe")
    facts = key_facts(key)
    assert facts.account == "infra-provider:ttl-probe"
    assert timedelta(days=364) < facts.expires_at - datetime.now(UTC) <= timedelta(days=365)
    omni_lab.lab_omnictl(lab["omni"]).run("infraprovider", "delete", "ttl-probe")
