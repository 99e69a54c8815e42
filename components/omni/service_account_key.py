"""When an Omni service-account key expires, read from the key itself.

omnictl prints a key (OMNI_SERVICE_ACCOUNT_KEY) as base64 of JSON {"name": account, "pgp_key": armored PGP private
key}; Omni lets it authenticate until the primary key's expiry (its creation time plus the self-signature's key
lifetime). Omni v1.7 shows no external client when an infra provider's key expires (its PublicKeys are readable by
no role, and ServiceAccountStatuses leave infra providers out), so the key the stack holds is the one source. The
key is parsed with Sequoia (pysequoia); nothing here keeps or prints the private half.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

# Before each line about a key due for renewal: the drift job counts such a warning as drift by this mark.
KEY_EXPIRY_MARK = "[key expiry] "


class KeyUnreadable(ValueError):
    pass


@dataclass(frozen=True)
class KeyFacts:
    account: str  # e.g. infra-provider:matrix-cluster
    fingerprint: str  # the public key id Omni shows, lowercase hex
    expires_at: datetime | None  # None: it never expires


def key_facts(key: str) -> KeyFacts:
    """What a printed key says of itself; KeyUnreadable (without any of the key in it) when it is not one."""
    from pysequoia import Tsk

    try:
        document = json.loads(base64.b64decode(key.strip(), validate=True))
        account, armored = document["name"], document["pgp_key"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise KeyUnreadable("not a key as omnictl prints one (base64 of JSON with name and pgp_key)") from None
    try:
        cert = Tsk.from_bytes(armored.encode()).extract_certificate()
    except Exception:  # noqa: BLE001 - Sequoia's errors are plain exceptions; their text may quote the key
        raise KeyUnreadable(f"the PGP key of {account!r} could not be read") from None
    return KeyFacts(str(account), cert.fingerprint.lower(), cert.expiration)


def expiry_notice(
    config_key: str, facts: KeyFacts, now: datetime, warn_within: timedelta, remedy: str = "renew it"
) -> str | None:
    """A line for a key that has expired or expires within warn_within; None otherwise."""
    if facts.expires_at is None:
        return None
    left = facts.expires_at - now
    when = facts.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    if left <= timedelta(0):
        return f"{config_key} (service account {facts.account!r}, key {facts.fingerprint[:16]}) expired at {when}"
    if left <= warn_within:
        days = left.total_seconds() / 86400
        return (
            f"{config_key} (service account {facts.account!r}, key {facts.fingerprint[:16]}) expires at {when}, "
            f"in {days:.1f} days: {remedy}"
        )
    return None
