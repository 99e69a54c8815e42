"""Versions are pinned once: tools/versions.env, and the Go modules and requirements.txt agree."""

import re
import subprocess

from tests.conftest import PROJECT_ROOT

TOOLS = PROJECT_ROOT / "tools"


def pins() -> dict:
    return dict(re.findall(r"^(\w+)=(\S+)", (TOOLS / "versions.env").read_text(), re.M))


def require(go_mod: str, module: str) -> str:
    return re.search(rf"^(?:require)?\s*{re.escape(module)} (v\S+)", (TOOLS / go_mod).read_text(), re.M).group(1)


def test_pulumi_cli_sdk_module_and_python_sdk_agree():
    version = pins()["PULUMI_VERSION"]
    assert require("pulumi/go.mod", "github.com/pulumi/pulumi/pkg/v3") == f"v{version}"
    assert require("pulumi/go.mod", "github.com/pulumi/pulumi/sdk/v3") == f"v{version}"
    assert f"pulumi=={version}\n" in (PROJECT_ROOT / "requirements.txt").read_text()


def test_language_host_and_omnictl_modules_match_their_pins():
    assert (
        require("python-langhost/go.mod", "github.com/pulumi/pulumi/sdk/v3") == f"v{pins()['PULUMI_LANGHOST_VERSION']}"
    )
    assert require("omnictl/go.mod", "github.com/siderolabs/omni/client") == pins()["OMNICTL_VERSION"]


def test_lab_omni_server_module_matches_its_pin():
    version = pins()["OMNI_VERSION"]
    assert require("omni/go.mod", "github.com/siderolabs/omni") == version
    # omni's own go.mod points its client at ./client, which the module zip lacks: the same version is required.
    assert require("omni/go.mod", "github.com/siderolabs/omni/client") == version
    assert "tool github.com/siderolabs/omni/cmd/omni" in (TOOLS / "omni" / "go.mod").read_text()


def test_every_tool_module_has_a_go_sum():
    for go_mod in TOOLS.glob("*/go.mod"):
        assert (go_mod.parent / "go.sum").stat().st_size > 0, go_mod


def test_lab_kubernetes_tools_match_their_pins():
    versions = pins()
    assert require("kube-apiserver/go.mod", "k8s.io/kubernetes") == versions["KUBERNETES_VERSION"]
    staging = "v0." + versions["KUBERNETES_VERSION"].split(".", 1)[1]
    assert f"k8s.io/apiserver => k8s.io/apiserver {staging}" in (TOOLS / "kube-apiserver" / "go.mod").read_text()
    assert require("etcd/go.mod", "go.etcd.io/etcd/server/v3") == versions["ETCD_VERSION"]
    assert require("helm/go.mod", "helm.sh/helm/v3") == versions["HELM_VERSION"]
    go_mod = (TOOLS.parent / "tools" / "bootstrap.sh").read_text()
    assert "COMPOSE_GO_VERSION" in go_mod and versions["COMPOSE_GO_VERSION"].startswith("v2.")


def test_omnictl_carries_the_api_version_the_lab_omni_serves():
    """omnictl refuses an Omni whose API version differs from its own, so the pin must be what it is: the
    built omnictl reports it, and the lab's Omni module declares the same (else no lab test could run)."""
    api = pins()["OMNICTL_API_VERSION"]
    version = subprocess.run(
        [str(PROJECT_ROOT / ".tools" / "bin" / "omnictl"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"(API Version: {api})" in version
    mod_cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    omni_api = f"{mod_cache}/github.com/siderolabs/omni@{pins()['OMNI_VERSION']}/internal/version/api.go"
    assert re.search(r"const API uint32 = (\d+)", open(omni_api).read()).group(1) == api


def test_pulumi_kubernetes_plugin_module_and_python_sdk_agree():
    version = pins()["PULUMI_KUBERNETES_VERSION"]
    # The module proxy serves the provider only as the pseudo-version of its release tag; its SDK by the tag.
    assert require("pulumi-kubernetes/go.mod", "github.com/pulumi/pulumi-kubernetes/sdk/v4") == f"v{version}"
    assert f"pulumi-kubernetes=={version}\n" in (PROJECT_ROOT / "requirements.txt").read_text()


def test_the_drift_workflows_installers_ask_for_the_pinned_versions_and_its_go_for_the_newest_module():
    import yaml

    workflow = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "drift.yml").read_text())
    steps = workflow["jobs"]["drift"]["steps"]
    uses = {s["uses"].split("@")[0]: s.get("with", {}) for s in steps if "uses" in s}
    runs = "\n".join(s.get("run", "") for s in steps)
    p = pins()
    assert uses["pulumi/actions"]["pulumi-version"] == p["PULUMI_VERSION"]
    assert uses["azure/setup-helm"]["version"] == p["HELM_VERSION"]
    assert f"pulumi plugin install resource kubernetes v{p['PULUMI_KUBERNETES_VERSION']}" in runs
    assert f"version={p['OMNICTL_VERSION']}" in runs
    assert "make setup STACK=prod" in runs

    def go_line(go_mod) -> tuple[int, ...]:
        return tuple(int(n) for n in re.search(r"^go (\S+)", go_mod.read_text(), re.M).group(1).split("."))

    modules = [*TOOLS.glob("*/go.mod"), PROJECT_ROOT / "lab" / "provider-standin" / "go.mod"]
    asked = go_line(PROJECT_ROOT / uses["actions/setup-go"]["go-version-file"])
    assert asked == max(go_line(m) for m in modules)
