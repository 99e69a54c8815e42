"""The one way this program reads the Proxmox API: proxmoxer with an API token.

It gathers what the storage preflight needs in one pass whose request count grows
with the number of nodes, never with nodes x classes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from components.core.retry import DEFAULT_POLICY, RetryPolicy, with_retries


class ProxmoxError(Exception):
    """The Proxmox API could not be read; the message says what and why."""


class ProxmoxUnreachable(ProxmoxError):
    """No answer (refused, reset, timed out): transient, so reads are tried again."""


class ProxmoxNotFound(ProxmoxError):
    """The guest or object asked for does not exist (PVE answers 500 '... does not exist')."""


class ProxmoxForbidden(ProxmoxError):
    """The token may not make this request (PVE answers 403 'Permission check failed (PATH, PRIVILEGE)')."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason  # PVE's own words


@dataclass(frozen=True)
class NodeFacts:
    name: str
    online: bool
    maxcpu: int = 0
    maxmem: int = 0  # bytes
    mem: int = 0  # bytes in use: what runs on the node (its guests included), as PVE measures it now
    storages: tuple[dict, ...] = ()  # in the order the node lists them: the provider takes the first match
    bridges: frozenset[str] = frozenset()
    resolvers: tuple[str, ...] = ()

    @property
    def free_memory_mb(self) -> int:
        return max(self.maxmem - self.mem, 0) // (1024 * 1024)

    @property
    def free_memory_fraction(self) -> float:
        """What the infra provider ranks nodes by (its pickNode: (maxmem - mem) / maxmem)."""
        return (self.maxmem - self.mem) / self.maxmem if self.maxmem else 0.0


@dataclass(frozen=True)
class Guest:
    """A VM or container, as GET /cluster/resources lists it."""

    vmid: int
    node: str
    kind: str  # qemu or lxc
    running: bool
    vcpus: int
    memory_mb: int
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PoolFacts:
    """The Proxmox pools, and what the infra provider's own token may do with them: it puts every VM it makes in a
    pool, and creates the one named after the VM's machine request set when it is missing."""

    existing: frozenset[str]
    provider_token: str | None = None  # None: the stack does not name it
    # GET /access/permissions?userid=<provider token>: path -> {privilege: propagates to the paths below (1/0)};
    # None when not read (no token named, or the read refused: see unread_because).
    provider_permissions: dict[str, dict[str, int]] | None = None
    unread_because: str = ""


@dataclass(frozen=True)
class ClusterFacts:
    nodes: dict[str, NodeFacts]
    guests: tuple[Guest, ...] = ()
    pools: PoolFacts | None = None  # None: not read, as no machine set has a VM still to build


def _tags(text: object) -> frozenset[str]:
    # PVE stores tags ';'-separated (older releases also wrote ',' or ' ').
    return frozenset(t for t in re.split(r"[;, ]+", str(text or "")) if t)


@dataclass(frozen=True)
class ProxmoxSettings:
    api_url: str
    user: str  # USER@REALM!TOKENID for an API token, USER@REALM for a password login
    secret: str = field(repr=False)  # the token's secret or the user's password
    verify_tls: bool | str = True  # True, False (the stack opted out) or a CA bundle path
    timeout_seconds: float = 30.0
    # Which stack config keys these came from, so an error names them.
    keys: str = "proxmoxApiUrl / proxmoxTokenId"
    retry: RetryPolicy = DEFAULT_POLICY

    @property
    def is_token(self) -> bool:
        return "!" in self.user


class ProxmoxClient:
    def __init__(self, settings: ProxmoxSettings):
        url = urlparse(settings.api_url)
        user, _, token_name = settings.user.partition("!")
        if not (url.hostname and "@" in user and (token_name or not settings.is_token)):
            raise ProxmoxError(
                f"{settings.keys} = {settings.api_url!r} / {settings.user!r}: expected "
                "https://HOST:PORT/api2/json and USER@REALM!TOKENID (or USER@REALM with a password)"
            )
        auth = (
            dict(token_name=token_name, token_value=settings.secret)
            if settings.is_token
            else dict(password=settings.secret)
        )
        self._describe = "API token" if settings.is_token else f"login of {user}"
        try:
            self._api = ProxmoxAPI(
                url.hostname,
                port=url.port or 8006,
                user=user,
                verify_ssl=settings.verify_tls,
                timeout=settings.timeout_seconds,
                service="PVE",
                **auth,
            )
        except Exception as exc:  # a password login talks to the API at once
            raise self._error("POST", "access/ticket", exc) from None
        self.requests = 0  # what a benchmark counts
        self._retry = settings.retry

    def _error(self, method: str, path: str, exc: Exception) -> ProxmoxError:
        if isinstance(exc, AuthenticationError) or getattr(exc, "status_code", None) in (401, 403):
            message = (
                f"{method} {path}: the {self._describe} was refused ({exc}); is it valid, "
                "unexpired and allowed to do this?"
            )
            if getattr(exc, "status_code", None) == 403:
                return ProxmoxForbidden(message, str(exc))
            return ProxmoxError(message)
        if isinstance(exc, requests.exceptions.RequestException):
            return ProxmoxUnreachable(f"{method} {path}: Proxmox API unreachable ({type(exc).__name__}: {exc})")
        if (
            isinstance(exc, ResourceException)
            and getattr(exc, "status_code", None) == 500
            and ("does not exist" in str(exc) or "no such " in str(exc))
        ):
            return ProxmoxNotFound(f"{method} {path}: {exc}")
        return ProxmoxError(f"{method} {path}: {exc}")

    def call(self, method: str, api_path: str, /, **params) -> Any:
        """One API call, answering the API's JSON (a mapping, a list, or a task's UPID string). A read that gets
        no answer is tried again; a write is not (PVE's creates are not idempotent: a retried create whose first
        answer was lost would fail as 'already exists')."""

        def once():
            self.requests += 1
            try:
                return getattr(self._api, method.lower())(api_path, **params)
            except (AuthenticationError, ResourceException, requests.exceptions.RequestException) as exc:
                raise self._error(method, api_path, exc) from None

        if method.upper() != "GET":
            return once()
        return with_retries(once, lambda e: isinstance(e, ProxmoxUnreachable), f"GET {api_path}", self._retry)

    def get(self, api_path: str, /, **params) -> Any:
        return self.call("GET", api_path, **params)

    def wait_task(self, node: str, upid: str, timeout_seconds: float) -> None:
        """Polls a task (create, start, stop, destroy) until it ends; its failure is an error."""
        deadline = time.monotonic() + timeout_seconds
        delay = 0.05
        while True:
            status = self.get(f"nodes/{node}/tasks/{upid}/status")
            if status.get("status") == "stopped":
                if status.get("exitstatus") != "OK":
                    raise ProxmoxError(f"task {upid} failed: {status.get('exitstatus')}")
                return
            if time.monotonic() > deadline:
                raise ProxmoxError(f"task {upid} still running after {timeout_seconds:g}s")
            time.sleep(delay)  # polling a remote task: the API has no way to wait on it
            delay = min(delay * 2, 2.0)

    def cluster_facts(self, details: bool = True) -> ClusterFacts:
        """Nodes (with what runs on them) and guests from one GET /cluster/resources, then (with details) each
        online node's storages (in its order), bridges and DNS: 1 + 3 requests per node, whatever the spec asks."""
        resources = self.get("cluster/resources")
        nodes: dict[str, NodeFacts] = {}
        for item in sorted((r for r in resources if r.get("type") == "node"), key=lambda r: r["node"]):
            name = item["node"]
            if item.get("status") != "online" or not details:
                nodes[name] = NodeFacts(name=name, online=item.get("status") == "online")
                continue
            dns = self.get(f"nodes/{name}/dns")
            nodes[name] = NodeFacts(
                name=name,
                online=True,
                maxcpu=int(item.get("maxcpu", 0)),
                maxmem=int(item.get("maxmem", 0)),
                mem=int(item.get("mem", 0)),
                storages=tuple(self.get(f"nodes/{name}/storage")),
                bridges=frozenset(b["iface"] for b in self.get(f"nodes/{name}/network", type="bridge")),
                resolvers=tuple(dns[k] for k in ("dns1", "dns2", "dns3") if dns.get(k)),
            )
        guests = tuple(
            Guest(
                vmid=int(r["vmid"]),
                node=str(r.get("node", "")),
                kind=str(r["type"]),
                running=r.get("status") == "running",
                vcpus=int(r.get("maxcpu", 0) or 0),
                memory_mb=int(r.get("maxmem", 0) or 0) // (1024 * 1024),
                tags=_tags(r.get("tags")),
            )
            for r in resources
            if r.get("type") in ("qemu", "lxc") and not int(r.get("template", 0) or 0)
        )
        return ClusterFacts(nodes=nodes, guests=guests)

    def pool_facts(self, provider_token: str | None) -> PoolFacts:
        """GET /pools, then the provider token's privileges: 2 requests, once per run. Another token's permissions
        are readable with Sys.Audit on /access (PVEAuditor on / has it); refused, they are left unknown."""
        existing = frozenset(str(p["poolid"]) for p in self.get("pools"))
        if provider_token is None:
            return PoolFacts(existing)
        try:
            permissions = self.get("access/permissions", userid=provider_token)
        except ProxmoxForbidden as exc:
            return PoolFacts(existing, provider_token, unread_because=f"GET /access/permissions: {exc.reason}")
        return PoolFacts(
            existing,
            provider_token,
            {str(path): {str(p): int(v) for p, v in (privs or {}).items()} for path, privs in permissions.items()},
        )
