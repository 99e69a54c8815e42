"""Stack configuration (Pulumi.<stack>.yaml), read the same way by the program and by
the dynamic providers, which get the stack's config through `configure` rather
than through their inputs, so no secret is pickled into or stored in the state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .omnictl import Omnictl, resolve_binary
from .spec import SpecError

NAMESPACE = "omni-scale"


def truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


Lookup = Callable[[str], Optional[object]]

OMNI_CREDENTIALS = ("omniEndpoint", "omniServiceAccountKey")
PROXMOX_CREDENTIALS = ("proxmoxApiUrl", "proxmoxTokenId", "proxmoxTokenSecret")


def lookup_in(raw: dict) -> Lookup:
    """Reads this project's keys from the stack config a dynamic provider is handed."""
    return lambda key: raw.get(f"{NAMESPACE}:{key}")


def require(get: Lookup, keys: tuple[str, ...], stack_file: str) -> None:
    """Every missing key, named at once, in one message."""
    missing = [k for k in keys if not get(k)]
    if missing:
        raise SpecError(stack_file, ", ".join(f"config.{NAMESPACE}:{k}" for k in missing),
                        "a value (secrets with `pulumi config set --secret`)")


def _seconds(get: Lookup, key: str, default: float, stack_file: str) -> float:
    raw = get(key)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = -1.0
    if value <= 0:
        raise SpecError(stack_file, f"config.{NAMESPACE}:{key}", f"a positive number of seconds (got {raw!r})")
    return value


@dataclass(frozen=True)
class OmniSettings:
    omnictl_path: str
    insecure_skip_tls_verify: bool
    timeout_seconds: float
    # How long a cluster may take to become ready after sync.
    cluster_ready_timeout_seconds: float
    # A provider whose last heartbeat is older than this is treated as down.
    provider_heartbeat_max_age_seconds: float

    @staticmethod
    def from_lookup(get: Lookup, stack_file: str) -> "OmniSettings":
        return OmniSettings(
            omnictl_path=str(get("omnictlPath") or "omnictl"),
            insecure_skip_tls_verify=truthy(get("omniInsecureSkipTlsVerify") or False),
            timeout_seconds=_seconds(get, "omniTimeoutSeconds", 60, stack_file),
            cluster_ready_timeout_seconds=_seconds(get, "clusterReadyTimeoutSeconds", 1800, stack_file),
            provider_heartbeat_max_age_seconds=_seconds(get, "providerHeartbeatMaxAgeSeconds", 300, stack_file),
        )


def omnictl_from_config(raw: dict, stack_file: str = "Pulumi.<stack>.yaml",
                        offline: bool = False) -> tuple[Omnictl, OmniSettings]:
    """Builds the omnictl client inside a dynamic provider from the stack config it was handed.
    An offline client (template validate/render) needs no endpoint or key."""
    get = lookup_in(raw)
    settings = OmniSettings.from_lookup(get, stack_file)
    if not offline:
        require(get, OMNI_CREDENTIALS, stack_file)
    client = Omnictl(
        binary=resolve_binary(settings.omnictl_path),
        endpoint=str(get("omniEndpoint") or ""),
        service_account_key=str(get("omniServiceAccountKey") or ""),
        insecure_skip_tls_verify=settings.insecure_skip_tls_verify,
        timeout_seconds=settings.timeout_seconds,
    )
    return client, settings


def proxmox_from_config(raw: dict, stack_file: str = "Pulumi.<stack>.yaml") -> "ProxmoxSettings":
    """The Proxmox API settings a dynamic provider is handed with the stack config."""
    from .proxmox import ProxmoxSettings
    from .omnictl import PROJECT_ROOT
    get = lookup_in(raw)
    require(get, PROXMOX_CREDENTIALS, stack_file)
    verify: bool | str = True
    if get("proxmoxCaFile"):
        verify = str(PROJECT_ROOT / str(get("proxmoxCaFile")))  # absolute paths stay as they are
    elif truthy(get("proxmoxInsecureSkipTlsVerify") or False):
        verify = False  # a deliberate opt-out for self-signed PVE certificates
    return ProxmoxSettings(api_url=str(get("proxmoxApiUrl")), token_id=str(get("proxmoxTokenId")),
                           token_secret=str(get("proxmoxTokenSecret")), verify_tls=verify,
                           timeout_seconds=_seconds(get, "proxmoxTimeoutSeconds", 30, stack_file))
