"""What the Pulumi program needs before it registers anything: the spec and the stack
settings, validated, with user mistakes turned into one clear message (no traceback)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from .settings import (NAMESPACE, OMNI_CREDENTIALS, PROVIDER_STACK_CREDENTIALS, PROXMOX_ADMIN_CREDENTIALS,
                       OmniSettings, provider_secrets_from_lookup, require, retry_policy,
                       ssh_from_lookup, tailscale_credentials, truthy)
from .spec import Spec, SpecError, load_spec
from .ssh import SshError, public_key_of

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProgramSettings:
    omni: OmniSettings
    protect: bool


def load_program_inputs() -> tuple[Spec, ProgramSettings]:
    stack = pulumi.get_stack()
    stack_file = f"Pulumi.{stack}.yaml"
    config = pulumi.Config(NAMESPACE)
    try:
        spec_path = config.get("spec") or "specs/omni.yaml"
        spec = load_spec(PROJECT_ROOT / spec_path, display_name=spec_path)
        required = OMNI_CREDENTIALS
        if spec.provider_lxc is not None:
            required += PROXMOX_ADMIN_CREDENTIALS + PROVIDER_STACK_CREDENTIALS
        operator = spec.tailscale_operator
        if operator is not None and operator.enabled:
            required += tailscale_credentials(config.get, operator.oauth.audience, stack_file, spec_path)
        require(config.get, tuple(dict.fromkeys(required)), stack_file)
        # The settings the providers read later, checked now: a bad value stops before anything registers.
        retry_policy(config.get, stack_file)
        if spec.provider_lxc is not None:
            ssh_from_lookup(config.get, str(spec.provider_lxc.network.address.ip), stack_file)
            try:
                public_key_of(str(config.get("providerLxcSshPrivateKey")))
            except SshError as exc:
                raise SpecError(stack_file, f"config.{NAMESPACE}:providerLxcSshPrivateKey",
                                f"an OpenSSH private key ({exc})") from None
        omni = OmniSettings.from_lookup(config.get, stack_file)
        protect_raw = config.get("protect")
        # Production things are protected unless the stack deliberately says otherwise.
        protect = True if protect_raw is None else truthy(protect_raw)
    except SpecError as exc:
        # RunError prints the message alone: a user mistake, not a bug.
        raise pulumi.RunError(str(exc)) from None
    return spec, ProgramSettings(omni=omni, protect=protect)


def cluster_manifests(spec: Spec, name: str) -> list[dict]:
    """The cluster's CNI, rendered (components/cni.py); a chart that cannot be had stops the program in one line."""
    from .cni import cluster_manifests as render
    from .helm import HelmError, helm_binary
    config = pulumi.Config(NAMESPACE)
    try:
        return render(spec.clusters[name], helm_binary(config.get("helmPath")), config.get("ciliumChartRepository"))
    except HelmError as exc:
        raise pulumi.RunError(f"{config.get('spec') or 'specs/omni.yaml'}: clusters.{name}.cni.cilium: the chart "
                              f"could not be rendered ({exc})") from None


def provider_stack_secrets() -> pulumi.Output:
    """The provider LXC's compose secrets as one secret Output of ProviderSecrets."""
    config = pulumi.Config(NAMESPACE)
    keys = PROVIDER_STACK_CREDENTIALS + ("proxmoxApiUrl", "providerProxmoxApiUrl", "providerProxmoxInsecureSkipVerify")
    values = pulumi.Output.all(**{key: config.get_secret(key) for key in keys})
    return pulumi.Output.secret(values.apply(
        lambda got: provider_secrets_from_lookup(got.get, f"Pulumi.{pulumi.get_stack()}.yaml")))
