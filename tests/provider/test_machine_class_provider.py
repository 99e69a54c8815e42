"""The MachineClass dynamic provider driven directly against the lab's real Omni: every verb and
every error path, through the same omnictl argv the engine would use."""

import pytest
import yaml

from components.core.errors import ConfigError
from components.omni import omnictl as omnictl_mod
from components.omni.infra_provider import ProviderNotReady
from components.omni.machine_class import MachineClassProvider
from components.omni.render import MACHINE_CLASS_TYPE, label_class_document, machine_class_document
from lab import omni_lab, provider_standin
from tests.conftest import SEED_CONTROL_PLANE_DATA
from tests.provider.conftest import PROVIDER_ID, configured, stack_config

PROVIDER_DATA = SEED_CONTROL_PLANE_DATA
INPUTS = {
    "class_id": "matrix-control-plane",
    "namespace": "default",
    "provider_id": PROVIDER_ID,
    "provider_data": PROVIDER_DATA,
}


def provider_for(config: dict) -> MachineClassProvider:
    return configured(MachineClassProvider, config)


@pytest.fixture
def provider(lab):
    return provider_for(stack_config(lab["omni"]))


def live(provider, class_id="matrix-control-plane"):
    return provider.client.get_or_none(MACHINE_CLASS_TYPE, class_id, "default")


def test_check_normalises_and_rejects_bad_provider_data(provider):
    ok = provider.check({}, {**INPUTS, "provider_data": dict(reversed(list(PROVIDER_DATA.items())))})
    assert ok.failures == [] and ok.inputs["provider_data"] == PROVIDER_DATA
    bad = provider.check({}, {**INPUTS, "provider_data": {**PROVIDER_DATA, "memory": 512, "disk_cache": "fast"}})
    assert {f.property for f in bad.failures} == {"provider_data.memory", "provider_data.disk_cache"}


def test_check_needs_no_credentials():
    assert provider_for({}).check({}, INPUTS).failures == []


def test_create_read_update_delete_round_trip(provider):
    created = provider.create(INPUTS)
    assert created.id == "default/matrix-control-plane"
    assert created.outs == INPUTS
    stored = live(provider)
    assert yaml.safe_load(stored["spec"]["autoprovision"]["providerdata"]) == PROVIDER_DATA

    read = provider.read(created.id, created.outs)
    assert (read.id, read.outs, read.inputs) == (created.id, INPUTS, INPUTS)

    changed = {**INPUTS, "provider_data": {**PROVIDER_DATA, "memory": 16384}}
    updated = provider.update(created.id, created.outs, changed)
    assert updated.outs["provider_data"]["memory"] == 16384
    assert yaml.safe_load(live(provider)["spec"]["autoprovision"]["providerdata"])["memory"] == 16384

    provider.delete(created.id, updated.outs)
    assert live(provider) is None
    provider.delete(created.id, updated.outs)  # already gone: deleting again is not an error


def test_diff_compares_parsed_provider_data_not_text(provider):
    as_text = {
        **INPUTS,
        "provider_data": 'storage_selector: name == "vm_ssd"\ncores: 4\nsockets: 1\n'
        "memory: 8192\ndisk_size: 40\nnetwork_bridge:   vmbr0\n",
    }
    assert provider.diff("id", as_text, INPUTS).changes is False
    more_memory = provider.diff("id", INPUTS, {**INPUTS, "provider_data": {**PROVIDER_DATA, "memory": 16384}})
    assert more_memory.changes is True and more_memory.replaces == []
    renamed = provider.diff("id", INPUTS, {**INPUTS, "class_id": "other"})
    assert renamed.changes is True and renamed.replaces == ["class_id"]


def test_read_reports_out_of_band_changes_and_deletion(provider, lab, tmp_path):
    created = provider.create(INPUTS)
    drifted = machine_class_document("matrix-control-plane", PROVIDER_ID, {**PROVIDER_DATA, "memory": 4096})
    provider.client.apply(drifted)
    assert provider.read(created.id, created.outs).inputs["provider_data"]["memory"] == 4096

    provider.client.delete(MACHINE_CLASS_TYPE, "matrix-control-plane", "default")
    assert provider.read(created.id, created.outs).id is None


@pytest.mark.parametrize("kind", ["malformed", "revoked"])
def test_wrong_key_is_unauthorized_and_keeps_omnictl_message(lab, kind):
    key = "not-base64!" if kind == "malformed" else omni_lab.revoked_key(lab["omni"])
    with pytest.raises(omnictl_mod.Unauthorized) as info:
        provider_for(stack_config(lab["omni"], key)).create(INPUTS)
    assert info.value.message and key not in str(info.value)
    expected = "illegal base64 data" if kind == "malformed" else "code = Unauthenticated"
    assert expected in info.value.message


def test_stopped_omni_is_unreachable(fresh_lab):
    provider = provider_for(stack_config(fresh_lab["omni"]))
    omni_lab.stop(fresh_lab["omni"])
    with pytest.raises(omnictl_mod.Unreachable):
        provider.read("default/matrix-control-plane", INPUTS)


def test_timeout_is_typed(lab, tmp_path):
    slow = tmp_path / "slow-omnictl"
    slow.write_text("#!/bin/sh\nexec sleep 5\n")
    slow.chmod(0o755)
    provider = provider_for(stack_config(lab["omni"], omnictlPath=str(slow), omniTimeoutSeconds="0.2"))
    with pytest.raises(omnictl_mod.Timeout):
        provider.create(INPUTS)


def test_missing_omnictl_and_missing_credentials_are_clear(lab, tmp_path):
    with pytest.raises(omnictl_mod.OmnictlMissing, match="not an executable"):
        provider_for(stack_config(lab["omni"], omnictlPath=str(tmp_path / "nope"))).create(INPUTS)
    with pytest.raises(ConfigError, match="omniServiceAccountKey"):
        provider_for({"omni-scale:omniEndpoint": lab["omni"]["endpoint"]}).create(INPUTS)


def test_secrets_reach_omnictl_only_through_its_environment(lab, tmp_path):
    recorder = tmp_path / "omnictl"
    log = tmp_path / "argv.log"
    recorder.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\necho "$OMNI_SERVICE_ACCOUNT_KEY" > {tmp_path}/env\n'
        f'exec {omni_lab.TOOLS / "omnictl"} "$@"\n'
    )
    recorder.chmod(0o755)
    provider = provider_for(stack_config(lab["omni"], omnictlPath=str(recorder)))
    provider.create(INPUTS)
    assert lab["key"] not in log.read_text()
    assert (tmp_path / "env").read_text().strip() == lab["key"]


def test_unregistered_provider_is_named(provider):
    with pytest.raises(ProviderNotReady, match="infra provider 'elsewhere' is not registered with Omni"):
        provider.create({**INPUTS, "provider_id": "elsewhere"})


def test_omni_itself_refuses_a_class_for_an_unregistered_provider(provider):
    # What our own check (above) spares the operator: Omni's answer, through the same client.
    with pytest.raises(
        omnictl_mod.OmnictlError, match=r"InfraProviderStatuses.omni.sidero.dev\(infra-provider/elsewhere"
    ):
        provider.client.apply(machine_class_document("matrix-control-plane", "elsewhere", PROVIDER_DATA))
    assert live(provider) is None


def test_providerdata_is_checked_against_the_schema_the_provider_published(provider):
    # Bypasses `check` on purpose: the provider's own schema is the last word before Omni.
    with pytest.raises(ProviderNotReady, match=r"memory: 1024 is less than the minimum of 2048"):
        provider.create({**INPUTS, "provider_data": {**PROVIDER_DATA, "memory": 1024}})
    assert live(provider) is None


def test_omni_itself_validates_providerdata_against_the_published_schema(provider):
    with pytest.raises(omnictl_mod.InvalidInput, match=r'config value "\.memory"'):
        provider.client.apply(
            machine_class_document("matrix-control-plane", PROVIDER_ID, {**PROVIDER_DATA, "memory": 1024})
        )
    assert live(provider) is None


def test_stale_heartbeat_and_provider_error_stop_the_apply(provider, lab):
    provider_standin.set_heartbeat(lab["dir"], age_seconds=3600)
    with pytest.raises(ProviderNotReady, match=r"last reported \d+s ago"):
        provider.create(INPUTS)
    provider_standin.set_heartbeat(lab["dir"], error="failed to authenticate: key expired")
    with pytest.raises(ProviderNotReady, match="reports an error: failed to authenticate: key expired"):
        provider.create(INPUTS)
    assert live(provider) is None


def test_kernel_args_meta_values_and_grpc_tunnel_round_trip_through_omni(provider):
    provisioned = {
        **INPUTS,
        "kernel_args": ["console=ttyS0", "net.ifnames=0"],
        "meta_values": [{"key": 10, "value": "interfaces: []"}],
        "grpc_tunnel": "enabled",
    }
    created = provider.create(provisioned)
    assert created.outs == provisioned  # what Omni holds, read back, is what was asked
    auto = live(provider)["spec"]["autoprovision"]
    assert auto["kernelargs"] == ["console=ttyS0", "net.ifnames=0"] and auto["grpctunnel"] == 1
    assert provider.read(created.id, created.outs).inputs == provisioned
    # Unset again: Omni's empty fields read back as nothing set, and the class is its plain self.
    assert provider.diff(created.id, created.outs, INPUTS).changes
    assert provider.update(created.id, created.outs, INPUTS).outs == INPUTS


LABEL_CLASS = {
    "class_id": "bare-metal-workers",
    "namespace": "default",
    "match_labels": ["omni.sidero.dev/arch = amd64, rack in (a, b)", "!omni.sidero.dev/cluster"],
}


def test_a_class_that_matches_labels_round_trips_through_omni_without_any_provider(provider, lab):
    # No provider is asked: the class selects machines already registered, so not even a stale one stops it.
    provider_standin.set_heartbeat(lab["dir"], age_seconds=3600)
    assert provider.check({}, LABEL_CLASS).failures == []
    created = provider.create(LABEL_CLASS)
    assert created.outs == LABEL_CLASS
    assert live(provider, "bare-metal-workers")["spec"]["matchlabels"] == LABEL_CLASS["match_labels"]
    assert provider.read(created.id, created.outs).inputs == LABEL_CLASS
    narrower = {**LABEL_CLASS, "match_labels": ["rack = a"]}
    assert provider.diff(created.id, created.outs, narrower).changes
    assert provider.update(created.id, created.outs, narrower).outs == narrower
    # From matching labels to provisioning: the same class, now with the provider's data only.
    assert provider.diff(created.id, narrower, {**INPUTS, "class_id": "bare-metal-workers"}).replaces == []


def test_omni_refuses_what_the_spec_refuses_of_a_label_class(provider):
    # The spec's checks (components/core/label_selector.py) restate these answers of Omni's.
    with pytest.raises(omnictl_mod.OmnictlError, match="failed to parse matchLabels"):
        provider.client.apply({**label_document(["a b"])})
    with pytest.raises(omnictl_mod.OmnictlError, match="omni.sidero.dev/no-manual-allocation are not allowed"):
        provider.client.apply(label_document(["omni.sidero.dev/no-manual-allocation"]))
    both = label_document(["a"])
    both["spec"]["autoprovision"] = machine_class_document("x", PROVIDER_ID, PROVIDER_DATA)["spec"]["autoprovision"]
    with pytest.raises(omnictl_mod.OmnictlError, match="can't set both auto provision and match labels"):
        provider.client.apply(both)
    assert live(provider, "bare-metal-workers") is None


def label_document(selectors: list[str]) -> dict:
    return label_class_document("bare-metal-workers", selectors)
