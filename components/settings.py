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


@dataclass(frozen=True)
class OmniSettings:
    omnictl_path: str
    insecure_skip_tls_verify: bool
    timeout_seconds: float

    @staticmethod
    def from_lookup(get: Callable[[str], Optional[object]], stack_file: str) -> "OmniSettings":
        timeout = get("omniTimeoutSeconds") or 60
        try:
            timeout = float(timeout)
        except ValueError:
            raise SpecError(stack_file, f"config.{NAMESPACE}:omniTimeoutSeconds",
                            f"a number of seconds (got {timeout!r})") from None
        return OmniSettings(
            omnictl_path=str(get("omnictlPath") or "omnictl"),
            insecure_skip_tls_verify=truthy(get("omniInsecureSkipTlsVerify") or False),
            timeout_seconds=timeout,
        )


def omnictl_from_config(raw: dict, stack_file: str = "Pulumi.<stack>.yaml") -> Omnictl:
    """Builds the omnictl client inside a dynamic provider from the stack config it was handed."""

    def get(key: str):
        return raw.get(f"{NAMESPACE}:{key}")

    settings = OmniSettings.from_lookup(get, stack_file)
    missing = [k for k in ("omniEndpoint", "omniServiceAccountKey") if not get(k)]
    if missing:
        raise SpecError(stack_file, ", ".join(f"config.{NAMESPACE}:{k}" for k in missing),
                        "a value (set it with `pulumi config set --secret`)")
    return Omnictl(
        binary=resolve_binary(settings.omnictl_path),
        endpoint=str(get("omniEndpoint")),
        service_account_key=str(get("omniServiceAccountKey")),
        insecure_skip_tls_verify=settings.insecure_skip_tls_verify,
        timeout_seconds=settings.timeout_seconds,
    )
