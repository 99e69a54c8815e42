"""When the program renews a credential it made (a kubeconfig, an Omni key, a Proxmox token), and when a rotation is
asked for on purpose: one rule for all of them."""

from __future__ import annotations

# A credential is renewed once less than this share of the life the spec asks for is left.
RENEW_WHEN_LEFT = 1 / 3


def running_out(expires_at: float, ttl_seconds: float, now: float) -> bool:
    """expires_at, now: epoch seconds."""
    return expires_at - now < ttl_seconds * RENEW_WHEN_LEFT


def rotation_asked(olds: dict, news: dict) -> bool:
    """A new rotation label in the stack config (`rotation`, against the last one applied, `rotated`). Unsetting
    the label asks for nothing: the label of the last rotation stays in the state."""
    asked = news.get("rotation") or ""
    return bool(asked) and asked != (olds.get("rotated") or "")
