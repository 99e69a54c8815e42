"""Stack config mistakes end in one message naming Pulumi.<stack>.yaml and the key."""

import pytest

from components.core.errors import ConfigError
from components.core.settings import OmniSettings, omnictl_from_config
from tests.conftest import stack_lookup


def lookup(**values):
    return lambda key: values.get(key)


@pytest.mark.parametrize(
    "key,value",
    [("omniTimeoutSeconds", "soon"), ("clusterReadyTimeoutSeconds", "-5"), ("providerHeartbeatMaxAgeSeconds", "0")],
)
def test_bad_durations_name_the_stack_file_and_key(key, value):
    with pytest.raises(ConfigError) as info:
        OmniSettings.from_lookup(lookup(**{key: value}), "Pulumi.prod.yaml")
    assert str(info.value) == (
        f"Pulumi.prod.yaml: config.omni-scale:{key}: a positive number of seconds (got {value!r})"
    )


def test_defaults():
    settings = OmniSettings.from_lookup(lookup(), "Pulumi.prod.yaml")
    assert (
        settings.omnictl_path,
        settings.timeout_seconds,
        settings.cluster_ready_timeout_seconds,
        settings.provider_heartbeat_max_age_seconds,
        settings.insecure_skip_tls_verify,
    ) == ("omnictl", 60, 1800, 300, False)


def test_missing_credentials_are_named_unless_offline():
    with pytest.raises(ConfigError, match="config.omni-scale:omniEndpoint, config.omni-scale:omniServiceAccountKey"):
        omnictl_from_config(stack_lookup({"omni-scale:omnictlPath": "lab/bin/omnictl"}))
    client, _ = omnictl_from_config(stack_lookup({"omni-scale:omnictlPath": "lab/bin/omnictl"}), offline=True)
    assert client.binary.endswith("lab/bin/omnictl") and "key" not in repr(client)


def test_workload_identity_needs_only_the_client_id_and_refuses_a_client_secret_beside_it():
    from components.core.settings import TAILSCALE_OAUTH_CREDENTIALS, tailscale_credentials

    assert tailscale_credentials({}.get, None, "Pulumi.prod.yaml", "specs/omni.yaml") == TAILSCALE_OAUTH_CREDENTIALS
    assert tailscale_credentials({}.get, "api.tailscale.com/x", "Pulumi.prod.yaml", "specs/omni.yaml") == (
        "tailscaleOAuthClientId",
    )
    with pytest.raises(ConfigError) as info:
        tailscale_credentials(
            {"tailscaleOAuthClientSecret": "s"}.get, "api.tailscale.com/x", "Pulumi.prod.yaml", "specs/omni.yaml"
        )
    assert str(info.value) == (
        "Pulumi.prod.yaml: config.omni-scale:tailscaleOAuthClientSecret: unset while "
        "specs/omni.yaml sets tailscale_operator.oauth.audience (workload identity federation "
        "has no client secret): keep one of the two"
    )
