"""The bad-input corpus through the whole program (__main__.py under Pulumi mocks): every case stops with
one message naming the file and the field, registers nothing, and shows no traceback.

Spec cases come from tests/unit/test_spec.py's BAD_SPECS; the stack-config and file-level cases are here.
"""

import copy
import runpy

import asyncssh
import pulumi
import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.unit.mocks import RecordingMocks
from tests.unit.test_spec import BAD_SPECS, _set, seed

REGISTERED = []
GOOD_CONFIG = {
    "omniEndpoint": "https://127.0.0.1:1",
    "omniServiceAccountKey": "k",
    "proxmoxApiUrl": "https://127.0.0.1:2/api2/json",
    "proxmoxTokenId": "a@pve!b",
    "proxmoxTokenSecret": "s",
    "proxmoxLxcPassword": "p",
    "providerLxcSshPrivateKey": asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode(),
    "tailscaleAuthKey": "t",
    # No providerOmniServiceAccountKey: the program makes the provider's key (the config's only adopts one).
    "providerProxmoxTokenId": "c@pve!d",
    "providerProxmoxTokenSecret": "u",
    "tailscaleOAuthClientId": "i",
    "tailscaleOAuthClientSecret": "j",
    "backupS3AccessKeyId": "v",
    "backupS3SecretAccessKey": "w",
}


def run_program(tmp_path, spec_text: str, config: dict) -> str | None:
    """Runs __main__.py; returns the user-facing message of a stop, or None if it ran through."""
    REGISTERED.clear()
    spec_file = tmp_path / "omni.yaml"
    spec_file.write_text(spec_text)
    pulumi.runtime.set_all_config({f"omni-scale:{k}": v for k, v in {"spec": str(spec_file), **config}.items()})
    pulumi.runtime.set_mocks(RecordingMocks(REGISTERED), project="omni-scale", stack="prod", preview=True)
    stopped = []

    @pulumi.runtime.test  # runs the program and waits for every registration it started
    def program():
        try:
            runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__")
        except pulumi.RunError as exc:
            assert exc.__cause__ is None and exc.__suppress_context__, "a user mistake must not chain a traceback"
            stopped.append(str(exc))

    program()
    return stopped[0] if stopped else None


def seed_text(edit=None) -> str:
    data = copy.deepcopy(seed())
    if edit:
        edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def test_the_good_spec_and_config_run_through_and_register_the_estate(tmp_path):
    assert run_program(tmp_path, seed_text(), GOOD_CONFIG) is None
    assert any(r.name == "talos-prod-01" for r in REGISTERED)


@pytest.mark.parametrize("field,value,path,expected", BAD_SPECS, ids=[f"{c[0]}={c[1]!r}"[-60:] for c in BAD_SPECS])
def test_bad_spec_stops_the_program_before_anything_registers(tmp_path, field, value, path, expected):
    message = run_program(tmp_path, seed_text(lambda d: _set(d, field, value)), GOOD_CONFIG)
    assert message is not None, "the program ran through"
    line = next((ln for ln in message.splitlines() if ln.startswith(f"{tmp_path / 'omni.yaml'}: {path}: ")), None)
    assert line is not None and expected in line, message
    assert REGISTERED == []


BAD_CONFIG = [
    # (config change, what the message must name)
    ({"omniEndpoint": None}, "config.omni-scale:omniEndpoint"),
    ({"omniServiceAccountKey": None}, "config.omni-scale:omniServiceAccountKey"),
    ({"proxmoxLxcPassword": None}, "config.omni-scale:proxmoxLxcPassword"),
    ({"providerLxcSshPrivateKey": None}, "config.omni-scale:providerLxcSshPrivateKey"),
    (
        {"tailscaleAuthKey": None, "proxmoxLxcPassword": None},
        "config.omni-scale:proxmoxLxcPassword, config.omni-scale:tailscaleAuthKey",
    ),
    ({"tailscaleOAuthClientSecret": None}, "config.omni-scale:tailscaleOAuthClientSecret"),
    ({"omniTimeoutSeconds": "-5"}, "config.omni-scale:omniTimeoutSeconds: a positive number of seconds"),
    ({"clusterReadyTimeoutSeconds": "soon"}, "config.omni-scale:clusterReadyTimeoutSeconds"),
    ({"retryAttempts": "0"}, "config.omni-scale:retryAttempts: a whole number from 1 to 10"),
    ({"providerLxcSshPort": "70000"}, "config.omni-scale:providerLxcSshPort: a TCP port"),
    # The preflight asks Proxmox for this token's pool privileges.
    ({"providerProxmoxTokenId": "omni-provider@pve"}, "config.omni-scale:providerProxmoxTokenId: an API token id"),
    ({"providerLxcSshPrivateKey": "not a key"}, "config.omni-scale:providerLxcSshPrivateKey: an OpenSSH private key"),
    (
        {"providerRegistrationTimeoutSeconds": "soon"},
        "config.omni-scale:providerRegistrationTimeoutSeconds: a positive",
    ),
    ({"kubeconfigTtlSeconds": "0"}, "config.omni-scale:kubeconfigTtlSeconds: a positive number of seconds of at most"),
    # Omni refuses a service-account kubeconfig living longer than ten years.
    (
        {"kubeconfigTtlSeconds": "400000000"},
        "config.omni-scale:kubeconfigTtlSeconds: a positive number of seconds of at most 315360000 (got '400000000')",
    ),
]


@pytest.mark.parametrize("change,named", BAD_CONFIG, ids=[c[1][:50] for c in BAD_CONFIG])
def test_bad_stack_config_stops_the_program_naming_the_key(tmp_path, change, named):
    config = {k: v for k, v in {**GOOD_CONFIG, **change}.items() if v is not None}
    message = run_program(tmp_path, seed_text(), config)
    assert message is not None and message.startswith("Pulumi.prod.yaml: ") and named in message, message
    assert REGISTERED == []


def test_the_providers_proxmox_token_is_asked_for_only_when_the_program_does_not_make_it(tmp_path):
    config = {k: v for k, v in GOOD_CONFIG.items() if not k.startswith("providerProxmoxToken")}
    assert run_program(tmp_path, seed_text(), config) is None  # the seed's proxmox_identity: the program makes it
    REGISTERED.clear()
    given = seed_text(lambda d: d["infra_provider"].pop("proxmox_identity"))
    message = run_program(tmp_path, given, config)
    assert message is not None and message.startswith("Pulumi.prod.yaml: "), message
    assert "config.omni-scale:providerProxmoxTokenId, config.omni-scale:providerProxmoxTokenSecret" in message
    assert REGISTERED == []


FILE_CASES = [
    ("clusters: [unclosed\n", "line 2, column 1: valid YAML (expected ',' or ']'"),
    (seed_text().replace("  matrix-worker:\n", "  matrix-control-plane:\n", 1), "duplicate key 'matrix-control-plane'"),
    ("- just\n- a list\n", "a YAML mapping at the top level"),
    (
        seed_text(lambda d: d["clusters"]["talos-prod-01"]["patches"].append({"name": "ntp", "file": "missing.yaml"})),
        "clusters.talos-prod-01.patches[1].file",
    ),
]


@pytest.mark.parametrize(
    "text,named", FILE_CASES, ids=["yaml-syntax", "duplicate-class", "not-a-mapping", "unreadable-patch"]
)
def test_bad_spec_files_stop_the_program(tmp_path, text, named):
    message = run_program(tmp_path, text, GOOD_CONFIG)
    assert message is not None and str(tmp_path / "omni.yaml") in message and named in message, message
    assert REGISTERED == []


def test_corpus_size():
    assert len(BAD_SPECS) + len(BAD_CONFIG) + len(FILE_CASES) >= 50


def test_a_client_secret_beside_a_workload_identity_audience_is_refused_and_alone_runs(tmp_path):
    with_audience = seed_text(lambda d: d["tailscale_operator"].update(oauth={"audience": "api.tailscale.com/k8s"}))
    message = run_program(tmp_path, with_audience, GOOD_CONFIG)
    assert message == (
        f"Pulumi.prod.yaml: config.omni-scale:tailscaleOAuthClientSecret: unset while "
        f"{tmp_path / 'omni.yaml'} sets tailscale_operator.oauth.audience (workload identity "
        "federation has no client secret): keep one of the two"
    )
    assert REGISTERED == []
    config = {k: v for k, v in GOOD_CONFIG.items() if k != "tailscaleOAuthClientSecret"}
    assert run_program(tmp_path, with_audience, config) is None
    assert any(r.name == "tailscale-operator" and r.typ == "kubernetes:helm.sh/v3:Release" for r in REGISTERED)
