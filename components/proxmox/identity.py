"""The Omni Proxmox provider's own Proxmox identity, made through the PVE API (infra_provider.proxmox_identity), as
root@pam (the login that makes the provider LXC: proxmoxLxcPassword). One component, three dynamic resources:

- access: a user (NAME@pve, no password), a role holding exactly the privileges the provider needs, and that role
  on / for the user. Each is made, or taken as it is when it exists and set right. `read` returns the role's
  privileges and whether the entry is there: a privilege taken away by hand, or the entry removed, is drift, and
  `up` puts it back. Apart from the token, so that putting a privilege back changes nothing the compose stack holds.
- token: an API token of the user with privilege separation and the role on / of its own (a privsep token holds
  what its own entries grant and its user holds too), expiring after token_ttl_days. Its secret exists only in
  PVE's answer to its creation: it becomes a secret output, written into the compose stack's config.yaml. A new
  token (the next serial, PREFIX-N) replaces it when it is in the last third of its life, gone, or a rotation label
  (providerTokenRotation) is new; adoption takes the token the stack config names (providerProxmoxTokenId/Secret)
  if it is this user's.
- retired tokens (after the compose deployment, which waits for the provider to register on the new token):
  deletes the program's other tokens of the user. Tokens the program did not name are left alone.
"""

from __future__ import annotations

import time

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, UpdateResult

from components.core.console import progress
from components.core.credential_life import rotation_asked, running_out
from components.core.dynamic import TypedResource
from components.omni.service_account_key import KEY_EXPIRY_MARK
from components.proxmox.client import ProxmoxClient, ProxmoxNotFound
from components.proxmox.lxc import AsRootProvider

# The program's tokens are named PREFIX-SERIAL; a rotation makes the next serial.
TOKEN_PREFIX = "omni-scale"


def token_name(serial: int) -> str:
    return f"{TOKEN_PREFIX}-{serial}"


def is_programs_token(name: str) -> bool:
    prefix, _, serial = name.rpartition("-")
    return prefix == TOKEN_PREFIX and serial.isdigit()


def token_due(expire: int | None, ttl_seconds: float, now: float) -> bool:
    """A token expiring at `expire` (epoch seconds; 0 or None: never) is renewed once a third of its life is left."""
    return bool(expire) and running_out(float(expire or 0), ttl_seconds, now)


def token_path(token_id: str) -> str:
    """The API path of a token, USER@REALM!NAME."""
    user, _, name = str(token_id).partition("!")
    return f"access/users/{user}/token/{name}"


def _granted(entries: list[dict], kind: str, ugid: str | None, role: str) -> bool:
    return any(
        e.get("path") == "/" and e.get("type") == kind and e.get("ugid") == ugid and e.get("roleid") == role
        for e in entries
    )


def _grant(api: ProxmoxClient, role: str, **subject: str) -> None:
    api.call("PUT", "access/acl", path="/", roles=role, propagate=1, **subject)


class ProxmoxAccessProvider(AsRootProvider):
    """The user, the role and the role on / for the user. Apart from the token, so that putting a privilege back
    changes nothing the compose stack is made from."""

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        replaces = [k for k in ("user", "role") if olds.get(k) != news.get(k)]
        changed = list(replaces)
        if sorted(olds.get("role_privileges") or []) != sorted(news["privileges"]):
            changed.append("role_privileges")
        if not olds.get("acl_user"):
            changed.append("acl_user")
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def _apply(self, props: dict) -> dict:
        api = self._api()
        privs = ",".join(sorted(props["privileges"]))
        try:
            api.get(f"access/roles/{props['role']}")
            api.call("PUT", f"access/roles/{props['role']}", privs=privs)
        except ProxmoxNotFound:
            progress(f"Proxmox: making role {props['role']} ({len(props['privileges'])} privileges)")
            api.call("POST", "access/roles", roleid=props["role"], privs=privs)
        try:
            api.get(f"access/users/{props['user']}")
        except ProxmoxNotFound:
            progress(f"Proxmox: making user {props['user']} (no password: it logs in only by its tokens)")
            api.call("POST", "access/users", userid=props["user"], comment="Omni infra provider (omni-scale)")
        _grant(api, props["role"], users=props["user"])
        return {**props, "role_privileges": sorted(props["privileges"]), "acl_user": True}

    def create(self, props: dict) -> CreateResult:
        return CreateResult(props["user"], self._apply(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        api = self._api()
        try:
            api.get(f"access/users/{props['user']}")
        except ProxmoxNotFound:
            return ReadResult(None, {})
        try:
            privileges = sorted(api.get(f"access/roles/{props['role']}"))
        except ProxmoxNotFound:
            privileges = []
        acl_user = _granted(api.get("access/acl"), "user", props["user"], props["role"])
        return ReadResult(id_, {**props, "role_privileges": privileges, "acl_user": acl_user})

    def delete(self, _id: str, props: dict) -> None:
        api = self._api()
        for path in (f"access/users/{props['user']}", f"access/roles/{props['role']}"):
            try:
                api.call("DELETE", path)  # a user goes with its tokens and ACL entries; a role with its entries
            except ProxmoxNotFound:
                pass


class ProxmoxTokenProvider(AsRootProvider):
    """The user's API token, with privilege separation and the role on / of its own."""

    @staticmethod
    def _renew(olds: dict, news: dict) -> bool:
        return (
            not olds.get("token_id")
            or rotation_asked(olds, news)
            or token_due(olds.get("token_expire"), float(news["ttl_seconds"]), time.time())
        )

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        replaces = [k for k in ("user",) if olds.get(k) != news.get(k)]
        changed = list(replaces)
        if self._renew(olds, news):
            changed.append("token_id")
        if olds.get("role") != news.get("role") or not olds.get("acl_token"):
            changed.append("acl_token")
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def _next_serial(self, api: ProxmoxClient, user: str, after: int) -> int:
        """After the state's last, and past any of the program's tokens PVE holds (a state lost, say)."""
        names = [str(t["tokenid"]) for t in api.get(f"access/users/{user}/token")]
        held = [int(n.rpartition("-")[2]) for n in names if is_programs_token(n)]
        return max([after, *held]) + 1

    def _new_token(self, api: ProxmoxClient, props: dict, after: int) -> dict:
        serial = self._next_serial(api, props["user"], after)
        name = token_name(serial)
        expire = int(time.time() + float(props["ttl_seconds"]))
        days = float(props["ttl_seconds"]) / 86400
        progress(f"Proxmox: making API token {props['user']}!{name} (privilege separation, {days:g} days)")
        made = api.call(
            "POST",
            token_path(f"{props['user']}!{name}"),
            privsep=1,
            expire=expire,
            comment="the Omni Proxmox provider's; rotated by omni-scale",
        )
        full = str(made["full-tokenid"])
        _grant(api, props["role"], tokens=full)
        return {"token_id": full, "token_secret": str(made["value"]), "token_expire": expire, "token_serial": serial}

    def _adopted(self, api: ProxmoxClient, props: dict) -> dict | None:
        """The token the stack config names, if it is this user's and exists: taken over (its secret from config)."""
        token_id, secret = props.get("token_id"), props.get("token_secret")
        if not token_id or not secret or str(token_id).split("!")[0] != props["user"]:
            return None
        name = str(token_id).split("!", 1)[1]
        try:
            info = api.get(token_path(str(token_id)))
        except ProxmoxNotFound:
            return None
        progress(f"Proxmox: API token {token_id} exists: taken over with the secret the stack config holds")
        _grant(api, props["role"], tokens=str(token_id))
        serial = int(name.rpartition("-")[2]) if is_programs_token(name) else 0
        return {
            "token_id": str(token_id),
            "token_secret": str(secret),
            "token_expire": int(info.get("expire") or 0),
            "token_serial": serial,
        }

    @staticmethod
    def _settle(props: dict, token: dict) -> dict:
        return {**props, **token, "acl_token": True, "rotated": props.get("rotation") or props.get("rotated") or ""}

    def create(self, props: dict) -> CreateResult:
        api = self._api()
        token = self._adopted(api, props) or self._new_token(api, props, 0)
        return CreateResult(f"{props['user']}:token", self._settle(props, token))

    def update(self, _id: str, olds: dict, news: dict) -> UpdateResult:
        api = self._api()
        news = {**news, "rotated": olds.get("rotated")}
        if self._renew(olds, news):
            token = self._new_token(api, news, int(olds.get("token_serial") or 0))
        else:
            token = {k: olds.get(k) for k in ("token_id", "token_secret", "token_expire", "token_serial")}
            _grant(api, news["role"], tokens=str(olds["token_id"]))
        return UpdateResult(self._settle(news, token))

    def read(self, id_: str, props: dict) -> ReadResult:
        api = self._api()
        token_id = props.get("token_id")
        if not token_id:
            return ReadResult(id_, props)
        try:
            info = api.get(token_path(str(token_id)))
        except ProxmoxNotFound:
            # Gone (or its user): `up` makes the next one. The secret the state held is of no use any more.
            return ReadResult(id_, {**props, "token_id": None, "token_secret": None, "acl_token": False})
        acl_token = _granted(api.get("access/acl"), "token", str(token_id), props["role"])
        return ReadResult(id_, {**props, "token_expire": int(info.get("expire") or 0), "acl_token": acl_token})

    def delete(self, _id: str, props: dict) -> None:
        if not props.get("token_id"):
            return
        try:
            self._api().call("DELETE", token_path(props["token_id"]))
        except ProxmoxNotFound:
            pass


class RetiredTokensProvider(AsRootProvider):
    """Deletes the program's tokens of the user but `keep`; runs after the compose stack deployed `keep`."""

    def _stale(self, api: ProxmoxClient, user: str, keep: str) -> list[str]:
        try:
            tokens = api.get(f"access/users/{user}/token")
        except ProxmoxNotFound:
            return []
        return sorted(
            f"{user}!{t['tokenid']}"
            for t in tokens
            if is_programs_token(str(t["tokenid"])) and f"{user}!{t['tokenid']}" != keep
        )

    def _retire(self, props: dict) -> dict:
        api = self._api()
        for full in self._stale(api, props["user"], props["keep"]):
            progress(f"Proxmox: deleting API token {full} (the provider runs on {props['keep']} now)")
            try:
                api.call("DELETE", token_path(full))
            except ProxmoxNotFound:
                pass
        return {**props, "stale": []}

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = olds.get("keep") != news.get("keep") or bool(olds.get("stale"))
        return DiffResult(changes=changed, replaces=[], delete_before_replace=False)

    def create(self, props: dict) -> CreateResult:
        return CreateResult(f"{props['user']}:retired-tokens", self._retire(props))

    def update(self, _id: str, _olds: dict, news: dict) -> UpdateResult:
        return UpdateResult(self._retire(news))

    def read(self, id_: str, props: dict) -> ReadResult:
        return ReadResult(id_, {**props, "stale": self._stale(self._api(), props["user"], props["keep"])})

    def delete(self, _id: str, _props: dict) -> None:
        pass  # the tokens go with the identity


class _ProxmoxAccess(TypedResource, module="proxmox", name="ProviderAccess"):
    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(ProxmoxAccessProvider(), name, {**props, "role_privileges": None, "acl_user": None}, opts)


class _ProxmoxToken(TypedResource, module="proxmox", name="ProviderToken"):
    token_id: pulumi.Output[str]
    token_secret: pulumi.Output[str]
    token_expire: pulumi.Output[int]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        # token_id and token_secret as inputs are the token the stack config holds for adoption (or none): a preview
        # of the adopting create shows them, so the compose stack built from them shows no change.
        outputs = dict.fromkeys(("token_expire", "token_serial", "acl_token", "rotated"))
        super().__init__(ProxmoxTokenProvider(), name, {**props, **outputs}, opts)


class _RetiredTokens(TypedResource, module="proxmox", name="RetiredProviderTokens"):
    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(RetiredTokensProvider(), name, {**props, "stale": None}, opts)


def token_expiry_notice(token_id: str, expire: int, now: float, warn_days: float) -> str | None:
    """A line for a token that has expired or expires within warn_days (PVE refuses it from then on)."""
    if not expire:
        return None
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expire))
    left, token = expire - now, f"the provider's Proxmox token {token_id}"
    if left <= 0:
        return f"{token} expired at {when}: `pulumi up` makes a new one"
    if left <= warn_days * 86400:
        return f"{token} expires at {when}, in {left / 86400:.1f} days: `pulumi up` renews it"
    return None


class ProviderProxmoxIdentity(pulumi.ComponentResource):
    """The provider's Proxmox user, role and ACL entry (`access`), its token (`token`); `retire_after(deployment)`
    deletes replaced tokens once the deployment (which waits for the provider to register) is done."""

    def __init__(
        self,
        name: str,
        spec,
        rotation: str,
        adoption_token_id: str | None,
        adoption_token_secret: pulumi.Output | None,
        protect: bool,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("omni-scale:proxmox:ProviderProxmoxIdentity", name, None, opts)
        self.name, self.spec = name, spec
        self.access = _ProxmoxAccess(
            f"{name}-access",
            {"user": spec.user, "role": spec.role, "privileges": spec.privileges},
            pulumi.ResourceOptions(parent=self, protect=protect),
        )
        self.token = _ProxmoxToken(
            f"{name}-token",
            {
                "user": spec.user,
                "role": spec.role,
                "ttl_seconds": spec.token_ttl_days * 86400,
                "rotation": rotation,
                "token_id": adoption_token_id,
                "token_secret": adoption_token_secret,
            },
            pulumi.ResourceOptions(
                parent=self, protect=protect, depends_on=[self.access], additional_secret_outputs=["token_secret"]
            ),
        )
        self.register_outputs({"token_id": self.token.token_id})

    def warn_when_due(self, warn_days: float) -> None:
        """A warning in every preview and `up` (the drift job counts it as drift) while the token the state holds
        expires within warn_days."""

        def warn(token: list) -> None:
            line = token_expiry_notice(str(token[0]), int(token[1] or 0), time.time(), warn_days)
            if line:
                pulumi.log.warn(KEY_EXPIRY_MARK + line, resource=self.token)

        pulumi.Output.all(self.token.token_id, self.token.token_expire).apply(warn)

    def retire_after(self, deployment: pulumi.Resource) -> None:
        _RetiredTokens(
            f"{self.name}-retired-tokens",
            {"user": self.spec.user, "keep": self.token.token_id},
            pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
