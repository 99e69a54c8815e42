"""Stack configuration (Pulumi.<stack>.yaml), read the same way by the program and by
the dynamic providers, which get the stack's config through `configure` rather
than through their inputs, so no secret is pickled into or stored in the state."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.core.errors import ConfigError
from components.omni.omnictl import Omnictl, resolve_binary

if TYPE_CHECKING:
    from pulumi.dynamic.config import Config as DynamicConfig

    from components.core.retry import RetryPolicy
    from components.proxmox.client import ProxmoxSettings
    from components.proxmox.compose import ProviderSecrets
    from components.proxmox.ssh import SshSettings

NAMESPACE = "omni-scale"


def truthy(value: object) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


Lookup = Callable[[str], object | None]

OMNI_CREDENTIALS = ("omniEndpoint", "omniServiceAccountKey")
PROXMOX_CREDENTIALS = ("proxmoxApiUrl", "proxmoxTokenId", "proxmoxTokenSecret")
TAILSCALE_OAUTH_CREDENTIALS = ("tailscaleOAuthClientId", "tailscaleOAuthClientSecret")
TAILSCALE_CLIENT_ID, TAILSCALE_CLIENT_SECRET = TAILSCALE_OAUTH_CREDENTIALS
# The etcd backup store's keys (specs/omni.yaml backups.s3), and an optional session token beside them.
BACKUP_S3_CREDENTIALS = ("backupS3AccessKeyId", "backupS3SecretAccessKey")
BACKUP_S3_SESSION_TOKEN = "backupS3SessionToken"


def tailscale_credentials(get: Lookup, audience: str | None, stack_file: str, spec_file: str) -> tuple[str, ...]:
    """The stack keys the operator's OAuth client needs: the id and secret, or only the id with workload identity
    federation (the spec's tailscale_operator.oauth.audience). A secret beside an audience is refused: the chart
    would quietly prefer the secret."""
    if audience is None:
        return TAILSCALE_OAUTH_CREDENTIALS
    if get(TAILSCALE_CLIENT_SECRET):
        raise ConfigError(
            stack_file,
            f"config.{NAMESPACE}:{TAILSCALE_CLIENT_SECRET}",
            f"unset while {spec_file} sets tailscale_operator.oauth.audience (workload identity "
            "federation has no client secret): keep one of the two",
        )
    return (TAILSCALE_CLIENT_ID,)


# An Omni key for one run in place of the stack's omniServiceAccountKey: the drift job's Reader (its CI secret). From
# the environment, which reaches the program and every dynamic provider alike, never the stack file.
OMNI_KEY_ENV = "OMNI_SCALE_OMNI_KEY"


def with_omni_key_from_env(get: Lookup) -> Lookup:
    override = os.environ.get(OMNI_KEY_ENV)
    if not override:
        return get
    return lambda key: override if key == "omniServiceAccountKey" else get(key)


def lookup_in(config: DynamicConfig) -> Lookup:
    """Reads this project's keys from the stack config a dynamic provider is handed (pulumi.dynamic.Config). Keys
    are named in full: the SDK qualifies a bare key with PULUMI_PROJECT, which not every engine sets for plugins."""
    return with_omni_key_from_env(lambda key: config.get(f"{NAMESPACE}:{key}"))


def require(get: Lookup, keys: tuple[str, ...], stack_file: str) -> None:
    """Every missing key, named at once, in one message."""
    missing = [k for k in keys if not get(k)]
    if missing:
        raise ConfigError(
            stack_file,
            ", ".join(f"config.{NAMESPACE}:{k}" for k in missing),
            "a value (secrets with `pulumi config set --secret`)",
        )


def _number(get: Lookup, key: str, default: float, stack_file: str, refused, expected: str) -> float:
    """A number from the stack config (default when unset); refused(value) names what it may not be."""
    raw = get(key)
    try:
        value = float(str(raw)) if raw is not None else default
    except ValueError:
        raise ConfigError(stack_file, f"config.{NAMESPACE}:{key}", f"{expected} (got {raw!r})") from None
    if refused(value):
        raise ConfigError(stack_file, f"config.{NAMESPACE}:{key}", f"{expected} (got {raw!r})")
    return value


def _seconds(get: Lookup, key: str, default: float, stack_file: str, maximum: float | None = None) -> float:
    at_most = f" of at most {maximum:.0f}" if maximum is not None else ""
    return _number(
        get,
        key,
        default,
        stack_file,
        lambda value: value <= 0 or (maximum is not None and value > maximum),
        f"a positive number of seconds{at_most}",
    )


KEY_EXPIRY_WARNING_DAYS_DEFAULT = 30.0


def key_expiry_warning_days(get: Lookup, stack_file: str) -> float:
    """How many days before an Omni key expires the program warns (and the drift job reports drift)."""
    return _number(
        get,
        "keyExpiryWarningDays",
        KEY_EXPIRY_WARNING_DAYS_DEFAULT,
        stack_file,
        lambda value: value < 0,
        "a number of days, 0 or more",
    )


KUBECONFIG_TTL_DEFAULT = 90 * 86400  # well under omnictl's year: renewed by `up` once a third is left
KUBECONFIG_TTL_MAX = 10 * 365 * 86400  # what Omni accepts


def retry_policy(get: Lookup, stack_file: str) -> RetryPolicy:
    """How often a transient failure (unreachable, too slow) is tried again, and the first pause."""
    from components.core.retry import RetryPolicy

    raw = get("retryAttempts")
    try:
        attempts = int(str(raw)) if raw is not None else 3
    except ValueError:
        attempts = 0
    if not 1 <= attempts <= 10:
        raise ConfigError(stack_file, f"config.{NAMESPACE}:retryAttempts", f"a whole number from 1 to 10 (got {raw!r})")
    return RetryPolicy(attempts=attempts, first_delay_seconds=_seconds(get, "retryFirstDelaySeconds", 1, stack_file))


@dataclass(frozen=True)
class OmniSettings:
    omnictl_path: str
    insecure_skip_tls_verify: bool
    timeout_seconds: float
    # How long a cluster may take to become ready after sync.
    cluster_ready_timeout_seconds: float
    # A provider whose last heartbeat is older than this is treated as down.
    provider_heartbeat_max_age_seconds: float
    # How long a provider whose container was just (re)started may take to register with Omni.
    provider_registration_timeout_seconds: float = 300.0
    # The life of a cluster's service-account kubeconfig (omnictl's default is a year; Omni allows ten).
    kubeconfig_ttl_seconds: float = KUBECONFIG_TTL_DEFAULT

    @staticmethod
    def from_lookup(get: Lookup, stack_file: str) -> OmniSettings:
        return OmniSettings(
            omnictl_path=str(get("omnictlPath") or "omnictl"),
            insecure_skip_tls_verify=truthy(get("omniInsecureSkipTlsVerify") or False),
            timeout_seconds=_seconds(get, "omniTimeoutSeconds", 60, stack_file),
            cluster_ready_timeout_seconds=_seconds(get, "clusterReadyTimeoutSeconds", 1800, stack_file),
            provider_heartbeat_max_age_seconds=_seconds(get, "providerHeartbeatMaxAgeSeconds", 300, stack_file),
            provider_registration_timeout_seconds=_seconds(get, "providerRegistrationTimeoutSeconds", 300, stack_file),
            kubeconfig_ttl_seconds=_seconds(
                get, "kubeconfigTtlSeconds", KUBECONFIG_TTL_DEFAULT, stack_file, maximum=KUBECONFIG_TTL_MAX
            ),
        )


def omnictl_from_config(
    get: Lookup, stack_file: str = "Pulumi.<stack>.yaml", offline: bool = False
) -> tuple[Omnictl, OmniSettings]:
    """Builds the omnictl client inside a dynamic provider from the stack config it was handed.
    An offline client (template validate/render) needs no endpoint or key."""
    settings = OmniSettings.from_lookup(get, stack_file)
    if not offline:
        require(get, OMNI_CREDENTIALS, stack_file)
    client = Omnictl(
        binary=resolve_binary(settings.omnictl_path),
        endpoint=str(get("omniEndpoint") or ""),
        service_account_key=str(get("omniServiceAccountKey") or ""),
        insecure_skip_tls_verify=settings.insecure_skip_tls_verify,
        ca_file=_project_path(get("omniCaFile")),
        timeout_seconds=settings.timeout_seconds,
        retry=retry_policy(get, stack_file),
    )
    if not offline:
        client.require_version(str(get("omnictlVersion") or pinned_omnictl_version()))
    return client, settings


@functools.cache
def pinned_omnictl_version() -> str:
    """The omnictl this project builds and is tested with (tools/versions.env)."""
    from components.omni.omnictl import PROJECT_ROOT

    text = (PROJECT_ROOT / "tools" / "versions.env").read_text()
    found = re.search(r"^OMNICTL_VERSION=(\S+)", text, re.M)
    if found is None:
        raise RuntimeError("tools/versions.env names no OMNICTL_VERSION")
    return found.group(1)


def _project_path(value: object) -> str:
    """A file named in the stack config: relative to the project root; absolute paths stay as they are."""
    from components.omni.omnictl import PROJECT_ROOT

    return str(PROJECT_ROOT / str(value)) if value else ""


def _proxmox_verify(get: Lookup) -> bool | str:
    if get("proxmoxCaFile"):
        return _project_path(get("proxmoxCaFile"))
    # A deliberate opt-out for self-signed PVE certificates.
    return not truthy(get("proxmoxInsecureSkipTlsVerify") or False)


def proxmox_from_config(get: Lookup, stack_file: str = "Pulumi.<stack>.yaml") -> ProxmoxSettings:
    """The read-only API token the preflight uses, from the stack config a dynamic provider is handed."""
    from components.proxmox.client import ProxmoxSettings

    require(get, PROXMOX_CREDENTIALS, stack_file)
    if "!" not in str(get("proxmoxTokenId")):
        raise ConfigError(stack_file, f"config.{NAMESPACE}:proxmoxTokenId", "an API token id, USER@REALM!TOKENID")
    return ProxmoxSettings(
        api_url=str(get("proxmoxApiUrl")),
        user=str(get("proxmoxTokenId")),
        secret=str(get("proxmoxTokenSecret")),
        verify_tls=_proxmox_verify(get),
        timeout_seconds=_seconds(get, "proxmoxTimeoutSeconds", 30, stack_file),
        retry=retry_policy(get, stack_file),
    )


# The shape of a PVE token id, USER@REALM!TOKENID (PVE's own pattern wants realm and token id 2 characters long).
PVE_TOKEN_ID = re.compile(r"[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]*![A-Za-z][A-Za-z0-9.\-_]*")


def provider_token_id(get: Lookup, stack_file: str = "Pulumi.<stack>.yaml") -> str | None:
    """The infra provider's own Proxmox token id (its config.yaml), whose pool privileges the preflight reads;
    None when the stack does not name it (the provider runs elsewhere)."""
    raw = get("providerProxmoxTokenId")
    if not raw:
        return None
    if not PVE_TOKEN_ID.fullmatch(str(raw)):
        raise ConfigError(
            stack_file,
            f"config.{NAMESPACE}:providerProxmoxTokenId",
            f"an API token id, USER@REALM!TOKENID (got {raw!r})",
        )
    return str(raw)


PROXMOX_ADMIN_CREDENTIALS = ("proxmoxApiUrl", "proxmoxLxcPassword")


def proxmox_admin_from_config(get: Lookup, stack_file: str = "Pulumi.<stack>.yaml") -> ProxmoxSettings:
    """The login that creates the provider LXC. Proxmox lets only root@pam itself (not its API tokens)
    set the keyctl feature and /dev/net/tun passthrough the Tailscale sidecar needs."""
    from components.proxmox.client import ProxmoxSettings

    require(get, PROXMOX_ADMIN_CREDENTIALS, stack_file)
    return ProxmoxSettings(
        api_url=str(get("proxmoxApiUrl")),
        user=str(get("proxmoxLxcUser") or "root@pam"),
        secret=str(get("proxmoxLxcPassword")),
        verify_tls=_proxmox_verify(get),
        timeout_seconds=_seconds(get, "proxmoxTimeoutSeconds", 30, stack_file),
        keys="proxmoxApiUrl / proxmoxLxcUser",
        retry=retry_policy(get, stack_file),
    )


# What the compose stack in the provider LXC needs; secrets are set with `pulumi config set --secret`. The provider's
# Omni key is the program's own (components/omni/service_accounts.py); providerOmniServiceAccountKey only adopts one.
PROVIDER_STACK_CREDENTIALS = (
    "omniEndpoint",
    "tailscaleAuthKey",
    "providerLxcSshPrivateKey",
)
# The provider's Proxmox token, unless the program makes it (infra_provider.proxmox_identity).
PROVIDER_TOKEN_CREDENTIALS = ("providerProxmoxTokenId", "providerProxmoxTokenSecret")


def provider_secrets_from_lookup(
    get: Lookup, stack_file: str, provider_key: str | None = None, proxmox_token: dict | None = None
) -> ProviderSecrets:
    """provider_key: the Omni key the program holds for the provider (its registration's); proxmox_token: the
    Proxmox token it made for it ({"id", "secret"}). The config's where they are None."""
    from components.proxmox.compose import ProviderSecrets

    require(get, PROVIDER_STACK_CREDENTIALS, stack_file)
    key = provider_key or get("providerOmniServiceAccountKey")
    if not key:
        require(get, ("providerOmniServiceAccountKey",), stack_file)
    if not proxmox_token:
        require(get, PROVIDER_TOKEN_CREDENTIALS, stack_file)
        proxmox_token = {"id": get("providerProxmoxTokenId"), "secret": get("providerProxmoxTokenSecret")}
    return ProviderSecrets(
        omni_endpoint=str(get("omniEndpoint")),
        omni_service_account_key=str(key),
        tailscale_auth_key=str(get("tailscaleAuthKey")),
        # The provider reaches the same Proxmox API as this program unless the stack says otherwise.
        proxmox_api_url=str(get("providerProxmoxApiUrl") or get("proxmoxApiUrl") or ""),
        proxmox_token_id=str(proxmox_token["id"]),
        proxmox_token_secret=str(proxmox_token["secret"]),
        proxmox_insecure_skip_verify=truthy(get("providerProxmoxInsecureSkipVerify") or False),
    )


def ssh_from_lookup(get: Lookup, default_host: str, stack_file: str, pinned_host_key: str = "") -> SshSettings:
    """How to reach the provider LXC: its own address from the spec unless the stack names another
    (the lab's loopback SSH server). A host key in the config wins over the one remembered in state."""
    from components.proxmox.ssh import SshSettings

    require(get, ("providerLxcSshPrivateKey",), stack_file)
    port_raw = get("providerLxcSshPort") or 22
    try:
        port = int(str(port_raw))
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(stack_file, f"config.{NAMESPACE}:providerLxcSshPort", f"a TCP port (got {port_raw!r})")
    return SshSettings(
        host=str(get("providerLxcSshHost") or default_host),
        port=port,
        user=str(get("providerLxcSshUser") or "root"),
        private_key=str(get("providerLxcSshPrivateKey")),
        host_key=str(get("providerLxcSshHostKey") or pinned_host_key),
        timeout_seconds=_seconds(get, "providerLxcSshTimeoutSeconds", 120, stack_file),
        retry=retry_policy(get, stack_file),
    )
