"""Components under Pulumi mocks: what they register, under which parent, with which protection,
and that no credential travels through resource inputs (they would land in the state)."""

import pulumi
import pytest

from components import MOVED
from components.core.spec import TailscaleOAuthSpec
from components.core.spec_file import load_spec
from components.omni.machine_class import MachineClass
from tests.conftest import PROJECT_ROOT, configure, program_settings
from tests.unit.mocks import RecordingMocks

REGISTERED: list[pulumi.runtime.MockResourceArgs] = []


@pytest.fixture(autouse=True)
def mocks():
    REGISTERED.clear()
    pulumi.runtime.set_mocks(RecordingMocks(REGISTERED), project="omni-scale", stack="unit", preview=False)
    yield


def _spec():
    return load_spec(PROJECT_ROOT / "specs" / "omni.yaml").machine_classes["matrix-control-plane"]


@pytest.mark.parametrize(
    "old_path,provider_class",
    [
        ("components.machine_class", "omni.machine_class.MachineClassProvider"),
        ("components.talos_cluster", "omni.talos_cluster.TalosClusterProvider"),
        ("components.storage_preflight", "proxmox.storage_preflight.StoragePreflightProvider"),
        ("components.placement", "proxmox.placement.ControlPlanePlacementProvider"),
        ("components.provider_lxc", "proxmox.lxc.LxcContainerProvider"),
        ("components.provider_lxc", "proxmox.lxc.ComposeDeploymentProvider"),
    ],
)
def test_a_provider_pickled_under_its_flat_layout_path_unpickles_as_its_class_now(old_path, provider_class):
    """States made before the package layout hold `components.<module>.<Class>` (a pickle's GLOBAL reference);
    a refresh or destroy before the next `up` loads that."""
    import importlib
    import pickle

    module, name = provider_class.rsplit(".", 1)
    old_reference = f"c{old_path}\n{name}\n.".encode()
    assert pickle.loads(old_reference) is getattr(importlib.import_module(f"components.{module}"), name)
    assert old_path in MOVED


@pulumi.runtime.test
def test_machine_class_registers_one_dynamic_child_with_the_class_inputs():
    component = MachineClass("matrix-control-plane", _spec(), protect=True)

    def check(urns):
        component_urn, child_urn = urns
        assert "omni-scale:omni:MachineClass::matrix-control-plane" in component_urn
        # The child's URN carries its parent's type: it is parented to the component.
        # Its own type says what it is (tests/engine/test_state_from_the_previous_code.py: an untyped entry of an
        # older state is carried over by the alias, with no replace).
        assert "omni-scale:omni:MachineClass$pulumi-python:dynamic/omni:MachineClass::matrix-control-plane" in child_urn
        dynamic = [r for r in REGISTERED if r.typ == "pulumi-python:dynamic/omni:MachineClass"]
        assert len(dynamic) == 1
        inputs = dynamic[0].inputs
        assert inputs["class_id"] == "matrix-control-plane"
        assert inputs["provider_id"] == "matrix-cluster"
        assert inputs["provider_data"]["memory"] == 8192
        assert not {"omniEndpoint", "omniServiceAccountKey", "endpoint", "service_account_key"} & set(inputs)

    return pulumi.Output.all(component.urn, component.resource.urn).apply(check)


@pulumi.runtime.test
def test_protect_flag_reaches_the_omni_resource():
    protected = MachineClass("a", _spec(), protect=True)
    unprotected = MachineClass("b", _spec(), protect=False)
    assert protected.resource._protect is True
    assert unprotected.resource._protect is False
    return protected.urn


PROVIDER_CLASSES = [
    "omni.machine_class.MachineClassProvider",
    "omni.talos_cluster.TalosClusterProvider",
    "proxmox.storage_preflight.StoragePreflightProvider",
    "proxmox.placement.ControlPlanePlacementProvider",
    "proxmox.lxc.LxcContainerProvider",
    "proxmox.lxc.ComposeDeploymentProvider",
]


@pytest.mark.parametrize("provider_class", PROVIDER_CLASSES)
def test_provider_pickles_without_any_configured_credentials(provider_class):
    import importlib

    import dill

    module, name = provider_class.rsplit(".", 1)
    provider = getattr(importlib.import_module(f"components.{module}"), name)()
    configure(
        provider,
        {"omni-scale:omniServiceAccountKey": "sekrit-key-123", "omni-scale:proxmoxTokenSecret": "sekrit-token-456"},
    )
    pickled = dill.dumps(provider, recurse=True)
    assert b"sekrit-key-123" not in pickled and b"sekrit-token-456" not in pickled


@pulumi.runtime.test
def test_talos_cluster_waits_for_its_classes_is_protected_and_keeps_kubeconfig_secret(monkeypatch):
    from components.omni import talos_cluster

    captured = {}
    real = talos_cluster._TalosClusterResource.__init__

    def spy(self, name, props, opts):
        captured["opts"], captured["props"] = opts, props
        real(self, name, props, opts)

    monkeypatch.setattr(talos_cluster._TalosClusterResource, "__init__", spy)
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    classes = [MachineClass(cid, c) for cid, c in spec.machine_classes.items()]
    cluster = talos_cluster.TalosCluster(
        "talos-prod-01",
        spec.clusters["talos-prod-01"],
        protect=True,
        kubeconfig_ttl_seconds=7776000,
        machine_classes=classes,
    )
    opts = captured["opts"]
    assert opts.protect is True
    assert list(opts.depends_on) == classes
    assert "kubeconfig" in opts.additional_secret_outputs
    assert captured["props"]["template"].startswith("kind: Cluster\nname: talos-prod-01\n")
    assert captured["props"]["kubeconfig_ttl_seconds"] == 7776000  # the stack's setting, an input

    def check(args):
        urn, is_secret = args
        assert "omni-scale:omni:TalosCluster$pulumi-python:dynamic/omni:TalosCluster::talos-prod-01" in urn
        assert is_secret

    return pulumi.Output.all(cluster.resource.urn, pulumi.Output.is_secret(cluster.kubeconfig)).apply(check)


def _operator(monkeypatch, spec):
    from components.kubernetes import tailscale_operator as op

    monkeypatch.setattr(pulumi.Config, "require_secret", lambda self, key: pulumi.Output.secret(f"value-of-{key}"))
    monkeypatch.setattr(pulumi.Config, "get", lambda self, key, default=None: None)
    settings = program_settings(pulumi.Config("omni-scale"))
    cluster = pulumi.CustomResource("test:index:Cluster", "talos-prod-01", {})
    kubeconfig = pulumi.Output.secret("apiVersion: v1\nusers: [{user: {token: t0ken}}]\n")
    return cluster, op.TailscaleOperator(
        "tailscale-operator",
        spec,
        kubeconfig,
        oauth=settings.tailscale_oauth(spec.oauth.audience),
        chart_repository=spec.chart_repository,
        protect=True,
        depends_on=[cluster],
    )


def _registered(name: str, typ: str):
    [resource] = [r for r in REGISTERED if r.name == name and r.typ == typ]
    return resource


SECRET = pulumi.runtime.rpc._special_sig_key


@pulumi.runtime.test
def test_tailscale_operator_is_a_helm_release_on_the_clusters_own_provider(monkeypatch):
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml").tailscale_operator
    cluster, operator = _operator(monkeypatch, spec)
    assert operator.namespace._protect is True and operator.release._protect is True

    def check(_):
        provider = _registered("tailscale-operator-cluster", "pulumi:providers:kubernetes")
        # The kubeconfig reaches the provider as a secret (the engine's envelope): encrypted in the state.
        assert provider.inputs["kubeconfig"][SECRET] == pulumi.runtime.rpc._special_secret_sig
        namespace = _registered("tailscale-operator-namespace", "kubernetes:core/v1:Namespace")
        assert namespace.inputs["metadata"] == {
            "name": "tailscale",
            "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
        }
        release = _registered("tailscale-operator", "kubernetes:helm.sh/v3:Release")
        inputs = release.inputs
        assert (inputs["name"], inputs["chart"], inputs["version"], inputs["repositoryOpts"]) == (
            "tailscale-operator",
            "tailscale-operator",
            "1.102.3",
            {"repo": "https://pkgs.tailscale.com/helmcharts"},
        )
        # The whole values map is a secret: the OAuth pair is in it, from the stack's secrets.
        assert inputs["values"][SECRET] == pulumi.runtime.rpc._special_secret_sig
        assert inputs["values"]["value"] == {
            "operatorConfig": {"hostname": "talos-prod-01-operator"},
            "oauth": {
                "clientId": "value-of-tailscaleOAuthClientId",
                "clientSecret": "value-of-tailscaleOAuthClientSecret",
            },
        }
        assert inputs["namespace"] == "tailscale" and inputs["maxHistory"] == 3
        assert "skipAwait" not in inputs  # the provider's default: wait for the chart's objects to be ready

    return pulumi.Output.all(operator.provider.urn, operator.namespace.urn, operator.release.urn).apply(check)


@pulumi.runtime.test
def test_tailscale_operator_with_workload_identity_sends_no_client_secret(monkeypatch):
    spec = load_spec(PROJECT_ROOT / "specs" / "omni.yaml").tailscale_operator.model_copy(
        update={"oauth": TailscaleOAuthSpec(audience="api.tailscale.com/abc")}
    )
    _cluster, operator = _operator(monkeypatch, spec)

    def check(_):
        values = _registered("tailscale-operator", "kubernetes:helm.sh/v3:Release").inputs["values"]["value"]
        assert values["oauth"] == {"clientId": "value-of-tailscaleOAuthClientId", "audience": "api.tailscale.com/abc"}

    return operator.release.urn.apply(check)


def test_the_container_diff_ignores_its_pickled_provider():
    """The pickled provider in a resource's inputs changes with the provider's code or module path (the package
    layout moved it): never a change to the container."""
    from components.core.spec_file import load_spec as load
    from components.proxmox.lxc import LxcContainerProvider, container_inputs

    props = container_inputs(load(PROJECT_ROOT / "specs" / "omni.yaml").provider_lxc, True)
    olds = {**props, "__provider": "pickled under components.provider_lxc"}
    news = {**props, "__provider": "pickled under components.proxmox.lxc"}
    assert LxcContainerProvider().diff("foxtrot/200", olds, news).changes is False
    assert LxcContainerProvider().diff("foxtrot/200", olds, {**news, "memory": 2048}).changes is True
