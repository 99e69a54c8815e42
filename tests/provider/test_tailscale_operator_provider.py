"""The TailscaleOperator's providers against the lab's real kube-apiserver and helm: canonical reads,
label drift, the OAuth pair only in a 0600 file that is gone afterwards, rotation seen as a change."""

import os
import signal
import tempfile

import pytest
import yaml

from components import tailscale_operator as op
from components.spec import SpecError, load_spec
from lab import kube_lab
from tests.conftest import PROJECT_ROOT
from tests.provider.conftest import configured

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml").tailscale_operator
OAUTH = {"omni-scale:tailscaleOAuthClientId": "client-DISTINCT-1", "omni-scale:tailscaleOAuthClientSecret": "secret-DISTINCT-2"}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    info = kube_lab.start(tmp_path_factory.mktemp("kube"))
    kubeconfig = yaml.safe_dump(kube_lab.admin_kubeconfig(info))
    yield {**info, "kubeconfig": kubeconfig}
    for pid in info["pids"]:
        os.kill(pid, signal.SIGTERM)


def release_props(kube, namespace):
    return {"release": op.RELEASE, "namespace": namespace, "chart": op.CHART, "repository": kube["chart_repository"],
            "version": SPEC.chart_version, "values": op.release_values(SPEC), "status": "deployed",
            "oauth_digest": op.oauth_digest("client-DISTINCT-1", "secret-DISTINCT-2"), "kubeconfig": kube["kubeconfig"]}


def test_namespace_reads_back_canonically_and_a_lost_label_is_drift(kube):
    provider = op.NamespaceProvider()
    props = {"name": "ns-labels", "labels": dict(op.POD_SECURITY), "kubeconfig": kube["kubeconfig"]}
    created = provider.create(props)
    live = provider.read(created.id, created.outs).outs
    assert live["labels"] == op.POD_SECURITY  # kubernetes.io/metadata.name, added by Kubernetes, is not drift
    assert not provider.diff(created.id, live, props).changes
    provider.update(created.id, live, {**props, "labels": {}})
    drifted = provider.read(created.id, created.outs).outs
    assert drifted["labels"] == {} and provider.diff(created.id, drifted, props).changes
    provider.update(created.id, drifted, props)
    assert provider.read(created.id, created.outs).outs["labels"] == op.POD_SECURITY


def test_release_installs_reads_back_and_leaves_no_secret_file(kube, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    op.NamespaceProvider().create({"name": "ns-release", "labels": dict(op.POD_SECURITY), "kubeconfig": kube["kubeconfig"]})
    provider = configured(op.HelmReleaseProvider, OAUTH)
    props = release_props(kube, "ns-release")
    created = provider.create(props)
    assert created.outs["status"] == "deployed" and created.outs["revision"] == 1
    assert not provider.diff(created.id, provider.read(created.id, created.outs).outs, props).changes
    assert list(tmp_path.iterdir()) == []  # the kubeconfig and values files went with their directory
    rotated = configured(op.HelmReleaseProvider, {**OAUTH, "omni-scale:tailscaleOAuthClientSecret": "secret-rotated"})
    news = {**props, "oauth_digest": op.oauth_digest("client-DISTINCT-1", "secret-rotated")}
    assert rotated.diff(created.id, created.outs, news).changes
    assert rotated.update(created.id, created.outs, news).outs["oauth_digest"] == news["oauth_digest"]
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id is None


def test_missing_oauth_secrets_are_named(kube):
    with pytest.raises(SpecError, match="tailscaleOAuthClientId, config.omni-scale:tailscaleOAuthClientSecret"):
        configured(op.HelmReleaseProvider, {}).create(release_props(kube, "ns-missing"))
