"""The provider's Proxmox identity's judgements without Proxmox: which tokens are the program's, when one is due,
what each resource's diff says, and the expiry warning."""

import time

import pytest

from components.core.spec import PROVIDER_PRIVILEGES, ProxmoxIdentitySpec
from components.proxmox.identity import (
    ProxmoxAccessProvider,
    ProxmoxTokenProvider,
    RetiredTokensProvider,
    is_programs_token,
    token_due,
    token_expiry_notice,
    token_name,
)

DAY = 86400
NOW = 1_800_000_000.0


def test_the_programs_tokens_are_told_by_name():
    assert token_name(7) == "omni-scale-7" and is_programs_token("omni-scale-7")
    assert not any(is_programs_token(n) for n in ("by-hand", "omni-scale", "omni-scale-x", "other-3"))


@pytest.mark.parametrize("left_days,due", [(200, False), (122, False), (121, True), (-1, True)])
def test_a_token_is_replaced_once_less_than_a_third_of_its_asked_life_is_left(left_days, due):
    assert token_due(int(NOW + left_days * DAY), 365 * DAY, NOW) is due


def test_a_token_that_never_expires_is_never_due():
    assert token_due(0, 365 * DAY, NOW) is False and token_due(None, 365 * DAY, NOW) is False


def test_the_role_holds_the_providers_privileges_and_the_extras_asked_for():
    spec = ProxmoxIdentitySpec(extra_privileges=["Sys.Console"])
    assert spec.privileges == sorted({*PROVIDER_PRIVILEGES, "Sys.Console"})
    assert "VM.Allocate" in spec.privileges and "Permissions.Modify" not in spec.privileges


ACCESS = {"user": "omni-provider@pve", "role": "OmniInfraProvider", "privileges": sorted(PROVIDER_PRIVILEGES)}


def test_access_a_privilege_gone_or_the_entry_gone_is_an_update_another_user_a_replacement():
    olds = {**ACCESS, "role_privileges": sorted(PROVIDER_PRIVILEGES), "acl_user": True}
    diff = ProxmoxAccessProvider().diff
    assert diff("u", olds, ACCESS).changes is False
    fewer = {**olds, "role_privileges": sorted(set(PROVIDER_PRIVILEGES) - {"VM.PowerMgmt"})}
    assert (diff("u", fewer, ACCESS).changes, diff("u", fewer, ACCESS).replaces) == (True, [])
    assert diff("u", {**olds, "acl_user": False}, ACCESS).changes is True
    assert diff("u", olds, {**ACCESS, "user": "other@pve"}).replaces == ["user"]


TOKEN = {"user": "omni-provider@pve", "role": "OmniInfraProvider", "ttl_seconds": 365 * DAY, "rotation": ""}


def token_olds(**changes):
    fresh = {"token_id": "omni-provider@pve!omni-scale-1", "token_expire": int(time.time() + 300 * DAY)}
    return {**TOKEN, **fresh, "token_serial": 1, "acl_token": True, "rotated": "", **changes}


def test_token_renewed_when_due_gone_or_asked_and_regranted_when_its_entry_is_gone():
    diff = ProxmoxTokenProvider().diff
    assert diff("t", token_olds(), TOKEN).changes is False
    assert diff("t", token_olds(token_expire=int(time.time() + 10 * DAY)), TOKEN).changes is True
    assert diff("t", token_olds(token_id=None), TOKEN).changes is True
    assert diff("t", token_olds(), {**TOKEN, "rotation": "leak"}).changes is True
    assert diff("t", token_olds(rotated="leak"), {**TOKEN, "rotation": "leak"}).changes is False
    assert diff("t", token_olds(rotated="leak"), TOKEN).changes is False  # unsetting the label asks nothing
    assert diff("t", token_olds(acl_token=False), TOKEN).changes is True


def test_retired_tokens_act_when_the_kept_token_changes_or_stale_ones_are_found():
    diff = RetiredTokensProvider().diff
    olds = {"user": "u@pve", "keep": "u@pve!omni-scale-2", "stale": []}
    assert diff("r", olds, {"user": "u@pve", "keep": "u@pve!omni-scale-2"}).changes is False
    assert diff("r", olds, {"user": "u@pve", "keep": "u@pve!omni-scale-3"}).changes is True
    assert diff("r", {**olds, "stale": ["u@pve!omni-scale-1"]}, {"user": "u@pve", "keep": olds["keep"]}).changes


def test_the_expiry_warning_names_the_token_and_when_and_never_a_secret():
    assert token_expiry_notice("u@pve!omni-scale-1", int(NOW + 40 * DAY), NOW, 30) is None
    soon = token_expiry_notice("u@pve!omni-scale-1", int(NOW + 10 * DAY), NOW, 30)
    assert soon.startswith("the provider's Proxmox token u@pve!omni-scale-1 expires at ") and "in 10.0 days" in soon
    gone = token_expiry_notice("u@pve!omni-scale-1", int(NOW - 1), NOW, 30)
    assert "expired at" in gone and gone.endswith("`pulumi up` makes a new one")
    assert token_expiry_notice("u@pve!omni-scale-1", 0, NOW, 30) is None
