"""The pulumi-kubernetes plugin tools/bootstrap.sh builds is the one the engine runs: a program on the PyPI SDK
(pulumi-kubernetes, pinned in requirements.txt) creates, leaves alone and deletes a ConfigMap in the lab's
kube-apiserver, with automatic plugin downloads switched off, and the state records the pinned version."""

import json
import re

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from lab import kube_lab
from lab.ctl import LabStack
from lab.processes import terminate
from tests.conftest import PROJECT_ROOT

VERSION = re.search(
    r"^PULUMI_KUBERNETES_VERSION=(\S+)", (PROJECT_ROOT / "tools" / "versions.env").read_text(), re.M
).group(1)
PROGRAM = """
import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("lab", kubeconfig=pulumi.Config().require_secret("kubeconfig"))
# Deleted in the foreground, the provider's default: the lab's garbage collector ends it.
k8s.core.v1.ConfigMap("check", metadata={"name": "plugin-check", "namespace": "default"},
                      data={"built": "here"}, opts=pulumi.ResourceOptions(provider=provider))
"""


@pytest.fixture
def kubernetes(tmp_path):
    info = kube_lab.start(tmp_path / "kubernetes")
    try:
        yield info
    finally:
        for pid in info["pids"]:
            terminate(pid)


def test_the_built_plugin_creates_and_deletes_without_any_download(kubernetes, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: kubernetes-plugin-check\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {PROJECT_ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(PROGRAM)
    stack = LabStack(project_dir=project, state_dir=tmp_path / "state")
    stack.ensure_stack()
    stack.set_config(
        "kubernetes-plugin-check:kubeconfig", json.dumps(kube_lab.admin_kubeconfig(kubernetes)), secret=True
    )
    api = client.CoreV1Api(config.new_client_from_config_dict(kube_lab.admin_kubeconfig(kubernetes)))

    stack.run("up", "--yes", "--skip-preview")
    assert api.read_namespaced_config_map("plugin-check", "default").data == {"built": "here"}
    assert stack.run("preview", "--expect-no-changes", check=False).returncode == 0
    deployment = json.loads(stack.run("stack", "export").stdout)["deployment"]
    [provider] = [r for r in deployment["resources"] if r["type"] == "pulumi:providers:kubernetes"]
    assert provider["inputs"]["version"] == VERSION
    assert not list((tmp_path / "state" / "home").glob("plugins/resource-kubernetes*"))  # nothing downloaded
    assert (
        "using pulumi-resource-kubernetes from $PATH at " + str(PROJECT_ROOT / ".tools" / "bin")
        in stack.run("preview").stdout
    )

    stack.run("destroy", "--yes", "--skip-preview")
    with pytest.raises(ApiException) as gone:
        api.read_namespaced_config_map("plugin-check", "default")
    assert gone.value.status == 404
