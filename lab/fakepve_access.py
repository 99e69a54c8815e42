"""PVE's users, roles, ACL and API tokens as a real node keeps them, for the lab's fakepve.

fakepve 0.5.0 answers /access/users, /access/roles, /access/acl and the token routes from the schema alone: a
token it "creates" is never stored, a deleted one stays, and a token's privileges are its user's and its own
together. Real PVE (PVE::AccessControl, PVE::RPCEnvironment) keeps them in user.cfg, and a token with privilege
separation (privsep, the default) holds only what its own ACL entries grant *and* its user holds; without it,
exactly its user's. This mixin keeps them, for the identities made through the API; the lab's own pre-made tokens
(fakepve's grant()) keep fakepve's rules.

Modelled: users (create, read, delete with their tokens and ACL entries), roles (create, read, set or append
privileges, delete), ACL entries on paths for users and tokens with propagation, tokens (create with privsep and
expiry, read, update, delete; the secret shown once), privilege checks and /access/permissions by those rules,
and an expired token refused at login. Not modelled: groups, realms other than pve/pam, passwords of these users.
"""

from __future__ import annotations

import time
import uuid

from fakepve import FakePve, shapes
from fakepve.model import PveError
from fakepve.routing import die, param_error, split_list

BUILT_IN_ROLES = {name: set(privs) for name, privs in shapes.ROLES.items()}


def _covers(granted: str, propagate: bool, paths: list[str]) -> bool:
    """An ACL entry on `granted` applies to any of paths: on the path itself, or below it when it propagates."""
    return any(p == granted or (propagate and (granted == "/" or p.startswith(granted + "/"))) for p in paths)


class AccessControlledPve(FakePve):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.access_users: dict[str, dict] = {}
        self.access_roles: dict[str, set[str]] = {}
        self.access_tokens: dict[str, dict] = {}  # full token id (user!name) -> privsep, expire, comment
        self.acl_entries: list[dict] = []  # {path, type: user|token, ugid, roleid, propagate}

    # ------------------------------------------------------------------ who may do what

    def _managed(self, who: str) -> bool:
        return who in self.access_tokens or who in self.access_users

    def _role_privs(self, roleid: str) -> set[str]:
        return self.access_roles.get(roleid) or BUILT_IN_ROLES.get(roleid, set())

    def _paths(self, path: str) -> list[str]:
        """The path and where else PVE looks: a guest's pool, a storage's pool (as fakepve's own allowed())."""
        paths = [path]
        if path.startswith("/vms/"):
            try:
                vmid = int(path.split("/")[2])
            except ValueError:
                return paths
            paths += ["/pool/" + name for name, ids in self.pools.items() if vmid in ids]
        elif path.startswith("/storage/"):
            sid = path.split("/")[2]
            paths += ["/pool/" + name for name, meta in self.pool_info.items() if sid in meta["storage"]]
        return paths

    def _granted(self, kind: str, ugid: str, path: str, priv: str) -> bool:
        paths = self._paths(path)
        return any(
            e["type"] == kind
            and e["ugid"] == ugid
            and priv in self._role_privs(e["roleid"])
            and _covers(e["path"], e["propagate"], paths)
            for e in self.acl_entries
        )

    def allowed(self, user, path, priv):
        if user in self.access_tokens:
            owner = user.split("!")[0]
            by_user = self._granted("user", owner, path, priv)
            if not self.access_tokens[user]["privsep"]:
                return by_user
            return by_user and self._granted("token", user, path, priv)
        if user in self.access_users:
            return self._granted("user", user, path, priv)
        return super().allowed(user, path, priv)

    async def _permissions(self, v, user):
        who = v.get("userid") or user
        if not self._managed(who):
            return await super()._permissions(v, user)
        paths = sorted({e["path"] for e in self.acl_entries})
        held = {}
        for path in paths:
            privs = {p for p in shapes.PRIVILEGES if self.allowed(who, path, p)}
            if privs:
                held[path] = privs
        if v.get("path") is not None:
            held = {p: ps for p, ps in held.items() if v["path"] == p or p == "/" or v["path"].startswith(p + "/")}
        return {path: dict.fromkeys(sorted(privs), 1) for path, privs in sorted(held.items())}

    def _authenticate(self, request):
        who = super()._authenticate(request)
        token = self.access_tokens.get(who or "")
        if token and token["expire"] and token["expire"] < time.time():
            raise PveError(401, "authentication failure")
        return who

    # ------------------------------------------------------------------ the routes

    def _routes_access_identities(self):
        return [
            ("GET", "/access/users", self._users),
            ("POST", "/access/users", self._user_create),
            ("GET", "/access/users/{userid}", self._user),
            ("DELETE", "/access/users/{userid}", self._user_delete),
            ("GET", "/access/roles", self._roles),
            ("POST", "/access/roles", self._role_create),
            ("GET", "/access/roles/{roleid}", self._role),
            ("PUT", "/access/roles/{roleid}", self._role_update),
            ("DELETE", "/access/roles/{roleid}", self._role_delete),
            ("GET", "/access/acl", self._acl),
            ("PUT", "/access/acl", self._acl_update),
            ("GET", "/access/users/{userid}/token", self._tokens),
            ("POST", "/access/users/{userid}/token/{tokenid}", self._token_create),
            ("GET", "/access/users/{userid}/token/{tokenid}", self._token),
            ("PUT", "/access/users/{userid}/token/{tokenid}", self._token_update),
            ("DELETE", "/access/users/{userid}/token/{tokenid}", self._token_delete),
        ]

    def _known_user(self, userid: str) -> dict:
        found = self.access_users.get(userid)
        if found is None:
            raise die(f"no such user ('{userid}')")
        return found

    async def _users(self, _v, _user):
        return [{"userid": u, **info} for u, info in sorted(self.access_users.items())]

    async def _user_create(self, v, _user):
        userid = v["userid"]
        if userid in self.access_users:
            raise die(f"create user failed: user '{userid}' already exists")
        self.access_users[userid] = {
            "enable": int(v.get("enable", 1)),
            "expire": int(v.get("expire", 0)),
            "comment": v.get("comment", ""),
        }

    async def _user(self, v, _user):
        info = self._known_user(v["userid"])
        tokens = {
            t.split("!", 1)[1]: {k: d[k] for k in ("privsep", "expire", "comment")}
            for t, d in self.access_tokens.items()
            if t.split("!")[0] == v["userid"]
        }
        return {**info, "tokens": tokens}

    async def _user_delete(self, v, _user):
        userid = v["userid"]
        self._known_user(userid)
        for token in [t for t in self.access_tokens if t.split("!")[0] == userid]:
            self._drop_token(token)
        self.acl_entries = [e for e in self.acl_entries if not (e["type"] == "user" and e["ugid"] == userid)]
        del self.access_users[userid]

    async def _roles(self, _v, _user):
        roles = [{"roleid": r, "privs": ",".join(sorted(p)), "special": 0} for r, p in self.access_roles.items()]
        built_in = [{"roleid": r, "privs": ",".join(sorted(p)), "special": 1} for r, p in BUILT_IN_ROLES.items()]
        return sorted(roles + built_in, key=lambda r: r["roleid"])

    def _privileges(self, text) -> set[str]:
        privs = set(split_list(text))
        unknown = sorted(privs - set(shapes.PRIVILEGES))
        if unknown:
            raise die(f"invalid privilege '{unknown[0]}'")
        return privs

    async def _role_create(self, v, _user):
        roleid = v["roleid"]
        if roleid in self.access_roles or roleid in BUILT_IN_ROLES:
            raise die(f"create role failed: role '{roleid}' already exists")
        self.access_roles[roleid] = self._privileges(v.get("privs", ""))

    async def _role(self, v, _user):
        roleid = v["roleid"]
        if roleid not in self.access_roles and roleid not in BUILT_IN_ROLES:
            raise die(f"role '{roleid}' does not exist")
        return dict.fromkeys(sorted(self._role_privs(roleid)), 1)

    async def _role_update(self, v, _user):
        roleid = v["roleid"]
        if roleid in BUILT_IN_ROLES:
            raise die(f"cannot modify role '{roleid}'")
        if roleid not in self.access_roles:
            raise die(f"role '{roleid}' does not exist")
        privs = self._privileges(v.get("privs", ""))
        self.access_roles[roleid] = self.access_roles[roleid] | privs if v.get("append") else privs

    async def _role_delete(self, v, _user):
        roleid = v["roleid"]
        if roleid not in self.access_roles:
            raise die(f"role '{roleid}' does not exist")
        del self.access_roles[roleid]
        self.acl_entries = [e for e in self.acl_entries if e["roleid"] != roleid]

    async def _acl(self, _v, _user):
        return [
            {
                "path": e["path"],
                "type": e["type"],
                "ugid": e["ugid"],
                "roleid": e["roleid"],
                "propagate": e["propagate"],
            }
            for e in self.acl_entries
        ]

    async def _acl_update(self, v, _user):
        path = v["path"].rstrip("/") or "/"
        roles = split_list(v["roles"])
        for roleid in roles:
            if roleid not in self.access_roles and roleid not in BUILT_IN_ROLES:
                raise die(f"role '{roleid}' does not exist")
        subjects = [("user", u) for u in split_list(v.get("users"))]
        subjects += [("token", t) for t in split_list(v.get("tokens"))]
        if v.get("groups"):
            raise param_error(groups="groups are not modelled in the lab")
        for kind, ugid in subjects:
            if kind == "user" and ugid not in self.access_users and "@" not in ugid:
                raise die(f"no such user ('{ugid}')")
            if kind == "token" and ugid not in self.access_tokens and ugid not in self.apitokens:
                raise die(f"no such token '{ugid}'")
            for roleid in roles:
                self.acl_entries = [
                    e
                    for e in self.acl_entries
                    if not (e["path"] == path and e["type"] == kind and e["ugid"] == ugid and e["roleid"] == roleid)
                ]
                if not v.get("delete"):
                    entry = {"path": path, "type": kind, "ugid": ugid, "roleid": roleid}
                    self.acl_entries.append({**entry, "propagate": int(v.get("propagate", 1))})

    async def _tokens(self, v, _user):
        self._known_user(v["userid"])
        return [
            {"tokenid": t.split("!", 1)[1], **{k: d[k] for k in ("privsep", "expire", "comment")}}
            for t, d in sorted(self.access_tokens.items())
            if t.split("!")[0] == v["userid"]
        ]

    def _full(self, v) -> str:
        return f"{v['userid']}!{v['tokenid']}"

    def _known_token(self, v) -> dict:
        self._known_user(v["userid"])
        found = self.access_tokens.get(self._full(v))
        if found is None:
            raise die(f"no such token '{v['tokenid']}' for user '{v['userid']}'")
        return found

    async def _token_create(self, v, _user):
        self._known_user(v["userid"])
        full = self._full(v)
        if full in self.access_tokens:
            raise die("Token already exists.")
        info = {"privsep": int(v.get("privsep", 1)), "expire": int(v.get("expire", 0)), "comment": v.get("comment", "")}
        self.access_tokens[full] = info
        secret = str(uuid.uuid4())
        self.apitokens[full] = secret
        return {"full-tokenid": full, "info": dict(info), "value": secret}

    async def _token(self, v, _user):
        return dict(self._known_token(v))

    async def _token_update(self, v, _user):
        info = self._known_token(v)
        for key in ("privsep", "expire"):
            if key in v:
                info[key] = int(v[key])
        if "comment" in v:
            info["comment"] = v["comment"]
        if v.get("regenerate"):
            secret = str(uuid.uuid4())
            self.apitokens[self._full(v)] = secret
            return {"full-tokenid": self._full(v), "info": dict(info), "value": secret}
        return dict(info)

    async def _token_delete(self, v, _user):
        self._known_token(v)
        self._drop_token(self._full(v))

    def _drop_token(self, full: str) -> None:
        self.access_tokens.pop(full, None)
        self.apitokens.pop(full, None)
        self.acl_entries = [e for e in self.acl_entries if not (e["type"] == "token" and e["ugid"] == full)]
