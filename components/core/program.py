"""What the Pulumi program needs before it registers anything: the spec and the stack
settings, validated, with user mistakes turned into one clear message (no traceback).

The program's one reader of the stack config: components get values and secret Outputs from
here, never a pulumi.Config of their own (the dynamic providers read theirs in `configure`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pulumi

from components import PROJECT_ROOT
from components.core.errors import ConfigError, UserError
from components.core.settings import (
    BACKUP_S3_CREDENTIALS,
    BACKUP_S3_SESSION_TOKEN,
    NAMESPACE,
    OMNI_CREDENTIALS,
    OMNI_KEY_ENV,
    PROVIDER_STACK_CREDENTIALS,
    PROVIDER_TOKEN_CREDENTIALS,
    PROXMOX_ADMIN_CREDENTIALS,
    TAILSCALE_CLIENT_ID,
    TAILSCALE_CLIENT_SECRET,
    OmniSettings,
    key_expiry_warning_days,
    provider_secrets_from_lookup,
    provider_token_id,
    require,
    retry_policy,
    ssh_from_lookup,
    tailscale_credentials,
    truthy,
    with_omni_key_from_env,
)
from components.core.spec import Spec
from components.core.spec_file import load_spec
from components.proxmox.ssh import SshError, public_key_of


@dataclass(frozen=True)
class ProgramSettings:
    omni: OmniSettings
    protect: bool
    spec_file: str  # as the user named it, for messages
    helm_path: str | None
    cilium_chart_repository: str | None  # a mirror standing in for the spec's repositories
    tailscale_chart_repository: str | None
    config: pulumi.Config
    key_expiry_warning_days: float = 30.0
    # The Omni keys the stack holds: the program's own, and the provider's when the stack runs it.
    omni_key_names: tuple[str, ...] = ("omniServiceAccountKey",)

    def key_expiry_notices(self, now: datetime | None = None) -> tuple[list[str], list[str]]:
        """(a line per Omni key the stack holds that has expired or expires within the warning window, a line per
        key that cannot be read as one). The keys are read here, in the program's process; no line carries any
        of one."""
        from components.omni.service_account_key import KeyUnreadable, expiry_notice, key_facts

        now = now or datetime.now(UTC)
        due, unreadable = [], []
        get = with_omni_key_from_env(self.config.get)
        for name in self.omni_key_names:
            value = get(name)
            if not value:
                continue
            if name == "omniServiceAccountKey" and os.environ.get(OMNI_KEY_ENV):
                name = OMNI_KEY_ENV  # the run's own key (the drift job's), named where it came from
            try:
                facts = key_facts(str(value))
            except KeyUnreadable as exc:
                unreadable.append(f"{name}: {exc}; when it expires is not known")
                continue
            line = expiry_notice(name, facts, now, timedelta(days=self.key_expiry_warning_days))
            if line:
                due.append(line)
        return due, unreadable

    def provider_stack_secrets(self, provider_key: pulumi.Output, proxmox_token: pulumi.Output | None) -> pulumi.Output:
        """The provider LXC's compose secrets as one secret Output of ProviderSecrets, with the provider's Omni key
        the program holds (its registration's) and the Proxmox token it made (None: the config's)."""
        keys = (
            PROVIDER_STACK_CREDENTIALS
            + PROVIDER_TOKEN_CREDENTIALS
            + (
                "proxmoxApiUrl",
                "providerProxmoxApiUrl",
                "providerProxmoxInsecureSkipVerify",
                "providerOmniServiceAccountKey",
            )
        )
        values = pulumi.Output.all(provider_key, proxmox_token, {key: self.config.get_secret(key) for key in keys})
        return pulumi.Output.secret(
            values.apply(
                lambda got: provider_secrets_from_lookup(
                    got[2].get, f"Pulumi.{pulumi.get_stack()}.yaml", got[0], got[1]
                )
            )
        )

    def adoption_key(self, name: str) -> pulumi.Output | None:
        """A key the stack config holds for an Omni account that exists already (adoption), as a secret; None when
        unset."""
        return self.config.get_secret(name) if self.config.get(name) else None

    def key_rotation(self, name: str) -> str:
        """The stack's label for a deliberate rotation (changing it makes the accounts' keys anew)."""
        return str(self.config.get(name) or "")

    def provider_lxc_ssh_public_key(self) -> pulumi.Output:
        """The public half of the key the program logs in to the provider LXC with (it goes into the container)."""
        return self.config.require_secret("providerLxcSshPrivateKey").apply(public_key_of)  # a secret, as its key

    def backup_s3_credentials(self) -> dict[str, pulumi.Output | None]:
        """The etcd backup store's keys, as secrets (components/omni/etcd_backups.py SECRET_FIELDS)."""
        access_key_id, secret_access_key = BACKUP_S3_CREDENTIALS
        return {
            "access_key_id": self.config.require_secret(access_key_id),
            "secret_access_key": self.config.require_secret(secret_access_key),
            "session_token": self.config.get_secret(BACKUP_S3_SESSION_TOKEN),
        }

    def backup_s3_endpoint(self, spec_endpoint: str | None) -> str | None:
        """The store's endpoint: the spec's, unless the stack names another (the lab's S3 on loopback)."""
        return self.config.get("backupS3Endpoint") or spec_endpoint

    def restore_confirmed(self, cluster: str) -> bool:
        """Whether the stack confirms, for this run, the restore the spec asks of a cluster (restoreCluster)."""
        return str(self.config.get("restoreCluster") or "") == cluster

    def tailscale_oauth(self, audience: str | None) -> pulumi.Output:
        """The chart's OAuth client, a secret: the id and secret, or with workload identity federation (the spec's
        tailscale_operator.oauth.audience) the id alone."""
        pair = {"clientId": self.config.require_secret(TAILSCALE_CLIENT_ID)}
        if audience is None:
            pair["clientSecret"] = self.config.require_secret(TAILSCALE_CLIENT_SECRET)
        return pulumi.Output.secret(pulumi.Output.all(**pair).apply(lambda got: {k: str(v) for k, v in got.items()}))


def load_program_inputs() -> tuple[Spec, ProgramSettings]:
    stack = pulumi.get_stack()
    stack_file = f"Pulumi.{stack}.yaml"
    config = pulumi.Config(NAMESPACE)
    try:
        spec_path = config.get("spec") or "specs/omni.yaml"
        spec = load_spec(PROJECT_ROOT / spec_path, display_name=spec_path)
        required: tuple[str, ...] = OMNI_CREDENTIALS
        if spec.provider_lxc is not None:
            required += PROXMOX_ADMIN_CREDENTIALS + PROVIDER_STACK_CREDENTIALS
            if spec.infra_provider.proxmox_identity is None:
                required += PROVIDER_TOKEN_CREDENTIALS
        operator = spec.tailscale_operator
        if operator is not None and operator.enabled:
            required += tailscale_credentials(config.get, operator.oauth.audience, stack_file, spec_path)
        if spec.backups is not None:
            required += BACKUP_S3_CREDENTIALS
        require(with_omni_key_from_env(config.get), tuple(dict.fromkeys(required)), stack_file)
        # The settings the providers read later, checked now: a bad value stops before anything registers.
        retry_policy(config.get, stack_file)
        provider_token_id(config.get, stack_file)  # the preflight asks Proxmox about it
        if spec.provider_lxc is not None:
            ssh_from_lookup(config.get, str(spec.provider_lxc.network.address.ip), stack_file)
            try:
                public_key_of(str(config.get("providerLxcSshPrivateKey")))
            except SshError as exc:
                raise ConfigError(
                    stack_file, f"config.{NAMESPACE}:providerLxcSshPrivateKey", f"an OpenSSH private key ({exc})"
                ) from None
        omni = OmniSettings.from_lookup(config.get, stack_file)
        protect_raw = config.get("protect")
        # Production things are protected unless the stack deliberately says otherwise.
        protect = True if protect_raw is None else truthy(protect_raw)
    except UserError as exc:
        # RunError prints the message alone: a user mistake, not a bug.
        raise pulumi.RunError(str(exc)) from None
    return spec, ProgramSettings(
        omni=omni,
        protect=protect,
        spec_file=spec_path,
        helm_path=config.get("helmPath"),
        cilium_chart_repository=config.get("ciliumChartRepository"),
        tailscale_chart_repository=config.get("tailscaleChartRepository"),
        config=config,
        key_expiry_warning_days=key_expiry_warning_days(config.get, stack_file),
        # The provider's key, when the program runs the provider, is its own (warned about from its registration).
        omni_key_names=("omniServiceAccountKey",),
    )


def cluster_manifests(spec: Spec, name: str, settings: ProgramSettings) -> list[dict]:
    """The cluster's kubernetes.manifests: its CNI, rendered (components/kubernetes/cni.py; a chart that cannot be
    had stops the program in one line), then the spec's own manifests."""
    from components.kubernetes.cni import cluster_manifests as render
    from components.kubernetes.helm import HelmError, helm_binary
    from components.omni.render import user_manifests

    try:
        cni = render(spec.clusters[name], helm_binary(settings.helm_path), settings.cilium_chart_repository)
        return cni + user_manifests(spec.clusters[name])
    except HelmError as exc:
        raise pulumi.RunError(
            f"{settings.spec_file}: clusters.{name}.cni.cilium: the chart could not be rendered ({exc})"
        ) from None
