"""The one way this program reads the Proxmox API: proxmoxer with an API token.

It gathers what the storage preflight needs in one pass whose request count grows
with the number of nodes, never with nodes x classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException


class ProxmoxError(Exception):
    """The Proxmox API could not be read; the message says what and why."""


@dataclass(frozen=True)
class NodeFacts:
    name: str
    online: bool
    maxcpu: int = 0
    maxmem: int = 0  # bytes
    mem: int = 0  # bytes in use
    storages: tuple[dict, ...] = ()  # in the order the node lists them: the provider takes the first match
    bridges: frozenset[str] = frozenset()
    resolvers: tuple[str, ...] = ()

    @property
    def free_memory_mb(self) -> int:
        return max(self.maxmem - self.mem, 0) // (1024 * 1024)


@dataclass(frozen=True)
class ProxmoxSettings:
    api_url: str
    token_id: str  # USER@REALM!TOKENID
    token_secret: str = field(repr=False)
    verify_tls: bool | str = True  # True, False (the stack opted out) or a CA bundle path
    timeout_seconds: float = 30.0


class ProxmoxClient:
    def __init__(self, settings: ProxmoxSettings):
        url = urlparse(settings.api_url)
        user, _, token_name = settings.token_id.partition("!")
        if not (url.hostname and user and token_name):
            raise ProxmoxError(f"proxmoxApiUrl {settings.api_url!r} / proxmoxTokenId {settings.token_id!r}: "
                               "expected https://HOST:PORT/api2/json and USER@REALM!TOKENID")
        self._api = ProxmoxAPI(url.hostname, port=url.port or 8006, user=user, token_name=token_name,
                               token_value=settings.token_secret, verify_ssl=settings.verify_tls,
                               timeout=settings.timeout_seconds, service="PVE")
        self.requests = 0  # what a benchmark counts

    def get(self, path: str, **params) -> list | dict:
        self.requests += 1
        try:
            return self._api.get(path, **params)
        except (AuthenticationError, ResourceException) as exc:
            if isinstance(exc, AuthenticationError) or getattr(exc, "status_code", None) in (401, 403):
                raise ProxmoxError(f"GET {path}: the API token was refused ({exc}); is it valid, unexpired "
                                   "and allowed to audit the nodes?") from None
            raise ProxmoxError(f"GET {path}: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise ProxmoxError(f"GET {path}: Proxmox API unreachable ({type(exc).__name__}: {exc})") from None

    def node_facts(self) -> dict[str, NodeFacts]:
        facts = {}
        for node in self.get("nodes"):
            name = node["node"]
            if node.get("status") != "online":
                facts[name] = NodeFacts(name=name, online=False)
                continue
            dns = self.get(f"nodes/{name}/dns")
            facts[name] = NodeFacts(
                name=name, online=True, maxcpu=int(node.get("maxcpu", 0)), maxmem=int(node.get("maxmem", 0)),
                mem=int(node.get("mem", 0)),
                storages=tuple(self.get(f"nodes/{name}/storage")),
                bridges=frozenset(b["iface"] for b in self.get(f"nodes/{name}/network", type="bridge")),
                resolvers=tuple(dns[k] for k in ("dns1", "dns2", "dns3") if dns.get(k)),
            )
        return facts
