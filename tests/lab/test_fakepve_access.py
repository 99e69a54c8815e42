"""The lab's fakepve keeps users, roles, ACL entries and tokens as PVE does (lab/fakepve_access.py): what the
program's Proxmox identity (components/proxmox/identity.py) is tested against, so each rule it relies on is
checked here against PVE's behaviour."""

import pytest

from components.proxmox.client import ProxmoxClient, ProxmoxError, ProxmoxNotFound, ProxmoxSettings
from tests.fakepve_matrix import running_matrix

USER = "someone@pve"


@pytest.fixture
def matrix(tmp_path):
    with running_matrix(tmp_path) as matrix:
        yield matrix


def as_root(matrix) -> ProxmoxClient:
    return ProxmoxClient(ProxmoxSettings(matrix.api_url, "root@pam", matrix.pve.password, verify_tls=matrix.cafile))


def as_token(matrix, full_id: str, secret: str) -> ProxmoxClient:
    return ProxmoxClient(ProxmoxSettings(matrix.api_url, full_id, secret, verify_tls=matrix.cafile))


def user_with_roles(root: ProxmoxClient, user_privs: str, token_privs: str | None, privsep: int) -> dict:
    root.call("POST", "access/roles", roleid="UserRole", privs=user_privs)
    root.call("POST", "access/users", userid=USER)
    root.call("PUT", "access/acl", path="/", roles="UserRole", users=USER)
    made = root.call("POST", f"access/users/{USER}/token/t1", privsep=privsep)
    if token_privs is not None:
        root.call("POST", "access/roles", roleid="TokenRole", privs=token_privs)
        root.call("PUT", "access/acl", path="/", roles="TokenRole", tokens=made["full-tokenid"])
    return made


def test_a_privsep_token_holds_what_its_entries_grant_and_its_user_holds(matrix):
    root = as_root(matrix)
    made = user_with_roles(root, "VM.Audit,Sys.Audit", "VM.Audit,Datastore.Audit", privsep=1)
    assert made["full-tokenid"] == f"{USER}!t1" and made["value"]
    assert root.get("access/permissions", userid=made["full-tokenid"]) == {"/": {"VM.Audit": 1}}
    token = as_token(matrix, made["full-tokenid"], made["value"])
    assert token.get("nodes/foxtrot/qemu") == []  # VM.Audit: a listing
    with pytest.raises(ProxmoxError, match="Sys.Audit"):
        token.get("nodes/foxtrot/dns")  # Sys.Audit is its user's only


def test_a_token_without_privsep_holds_exactly_its_users_privileges(matrix):
    root = as_root(matrix)
    made = user_with_roles(root, "VM.Audit,Sys.Audit", None, privsep=0)
    assert root.get("access/permissions", userid=made["full-tokenid"]) == {"/": {"Sys.Audit": 1, "VM.Audit": 1}}
    as_token(matrix, made["full-tokenid"], made["value"]).get("nodes/foxtrot/dns")


def test_the_secret_is_shown_once_and_a_deleted_or_expired_token_is_refused(matrix):
    root = as_root(matrix)
    made = user_with_roles(root, "Sys.Audit", None, privsep=0)
    assert "value" not in root.get(f"access/users/{USER}/token/t1")
    soon_gone = root.call("POST", f"access/users/{USER}/token/t2", privsep=0, expire=1)
    with pytest.raises(ProxmoxError, match="refused"):
        as_token(matrix, soon_gone["full-tokenid"], soon_gone["value"]).get("version")
    root.call("DELETE", f"access/users/{USER}/token/t1")
    with pytest.raises(ProxmoxError, match="refused"):
        as_token(matrix, made["full-tokenid"], made["value"]).get("version")
    with pytest.raises(ProxmoxNotFound):
        root.get(f"access/users/{USER}/token/t1")
    assert [t["tokenid"] for t in root.get(f"access/users/{USER}/token")] == ["t2"]


def test_a_user_goes_with_its_tokens_and_entries_and_exists_only_once(matrix):
    root = as_root(matrix)
    made = user_with_roles(root, "Sys.Audit", "Sys.Audit", privsep=1)
    with pytest.raises(ProxmoxError, match=f"user '{USER}' already exists"):
        root.call("POST", "access/users", userid=USER)
    root.call("DELETE", f"access/users/{USER}")
    assert not [e for e in root.get("access/acl") if e["ugid"] in (USER, made["full-tokenid"])]
    with pytest.raises(ProxmoxNotFound):
        root.get(f"access/users/{USER}")
    with pytest.raises(ProxmoxError, match="refused"):
        as_token(matrix, made["full-tokenid"], made["value"]).get("version")


def test_a_role_is_set_or_appended_and_unknown_privileges_are_refused(matrix):
    root = as_root(matrix)
    root.call("POST", "access/roles", roleid="R", privs="VM.Audit")
    root.call("PUT", "access/roles/R", privs="Sys.Audit", append=1)
    assert sorted(root.get("access/roles/R")) == ["Sys.Audit", "VM.Audit"]
    root.call("PUT", "access/roles/R", privs="Pool.Audit")
    assert sorted(root.get("access/roles/R")) == ["Pool.Audit"]
    with pytest.raises(ProxmoxError, match="invalid privilege 'VM.Everything'"):
        root.call("PUT", "access/roles/R", privs="VM.Everything")
    with pytest.raises(ProxmoxNotFound):
        root.get("access/roles/Missing")
