"""tools/bootstrap.sh: a compatible pulumi on PATH is used as is; an older one is not.
Runs on a copy of tools/ with the shared build cache, so the Go builds are cache hits."""

import os
import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT


def fake_pulumi(directory, version):
    directory.mkdir()
    exe = directory / "pulumi"
    exe.write_text(f"#!/bin/sh\necho v{version}\n")
    exe.chmod(0o755)
    return directory


@pytest.fixture
def repo_copy(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "tools", copy / "tools")
    shutil.copy(PROJECT_ROOT / "requirements.txt", copy / "requirements.txt")
    return copy


def bootstrap(repo, path_dir):
    env = {**os.environ, "PATH": f"{path_dir}:{os.environ['PATH']}"}
    env.pop("OMNI_SCALE_BUILD_PULUMI", None)
    return subprocess.run(
        ["bash", str(repo / "tools" / "bootstrap.sh"), "--tools-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_newer_pulumi_on_path_is_used_and_nothing_pulumi_is_linked(repo_copy, tmp_path):
    path_dir = fake_pulumi(tmp_path / "newer", "3.300.0")
    proc = bootstrap(repo_copy, path_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"using {path_dir}/pulumi (v3.300.0)" in proc.stderr
    assert not (repo_copy / ".tools" / "bin" / "pulumi").exists()
    assert os.access(repo_copy / ".tools" / "bin" / "omnictl", os.X_OK)


def test_older_pulumi_on_path_is_not_used(repo_copy, tmp_path):
    path_dir = fake_pulumi(tmp_path / "older", "3.100.0")
    proc = bootstrap(repo_copy, path_dir)
    assert proc.returncode == 0, proc.stderr
    built = subprocess.run([str(repo_copy / ".tools" / "bin" / "pulumi"), "version"], capture_output=True, text=True)
    pinned = (PROJECT_ROOT / "tools" / "versions.env").read_text().split("PULUMI_VERSION=")[1].split()[0]
    assert built.stdout.strip() == f"v{pinned}"
    for script in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        assert os.access(repo_copy / ".tools" / "bin" / script, os.X_OK)


def test_a_warm_run_builds_nothing(repo_copy, tmp_path):
    proc = bootstrap(repo_copy, fake_pulumi(tmp_path / "newer", "3.300.0"))
    assert proc.returncode == 0, proc.stderr
    assert "building" not in proc.stderr, proc.stderr  # every tool, the kubernetes plugin too, from the cache
    assert os.access(repo_copy / ".tools" / "bin" / "pulumi-resource-kubernetes", os.X_OK)


def test_each_checkout_imports_its_own_code_from_the_shared_libraries(repo_copy, tmp_path):
    """The thin .venv: the cached libraries through a .pth, this checkout installed editable (no sys.path lines)."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", repo_copy / "pyproject.toml")
    for package in ("components", "lab"):
        shutil.copytree(PROJECT_ROOT / package, repo_copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    newer = fake_pulumi(tmp_path / "newer", "3.300.0")
    env = {**os.environ, "PATH": f"{newer}:{os.environ['PATH']}"}
    first = subprocess.run(["bash", str(repo_copy / "tools" / "bootstrap.sh")], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "installing this checkout editable" in first.stderr
    where = subprocess.run(
        [
            str(repo_copy / ".venv" / "bin" / "python"),
            "-c",
            "import components, lab, pulumi; print(components.__file__)",
        ],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(repo_copy / "components" / "__init__.py"), where.stderr
    again = subprocess.run(["bash", str(repo_copy / "tools" / "bootstrap.sh")], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "installing" not in again.stderr, again.stderr


def fake_tool(directory, name: str, says: str):
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / name
    exe.write_text(f"#!/bin/sh\necho '{says}'\n")
    exe.chmod(0o755)
    return exe


LAB_ONLY = ("omni", "kube-apiserver", "kube-controller-manager", "etcd", "omni-infra-provider-standin")


def test_prod_setup_builds_only_what_a_real_stack_runs_with(repo_copy, tmp_path):
    path_dir = fake_pulumi(tmp_path / "newer", "3.300.0")
    env = {**os.environ, "PATH": f"{path_dir}:{os.environ['PATH']}", "PULUMI_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        ["bash", str(repo_copy / "tools" / "bootstrap.sh"), "--tools-only", "--prod"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    tools = repo_copy / ".tools" / "bin"
    assert sorted(p.name for p in tools.iterdir()) == ["helm", "omnictl", "pulumi-resource-kubernetes"]
    assert not (repo_copy / ".tools" / "compose-spec.json").exists()


def test_prod_setup_uses_installed_tools_at_the_pinned_versions_and_builds_none(repo_copy, tmp_path):
    """What the drift workflow's installers put in place (the Pulumi CLI, `pulumi plugin install`, helm, omnictl
    from its release) is used when it is the pin; an omnictl of another version is not."""
    pins = dict(
        line.split("=", 1)
        for line in (PROJECT_ROOT / "tools" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    installed = tmp_path / "installed"
    fake_tool(installed, "pulumi", "v3.300.0")
    fake_tool(installed, "helm", pins["HELM_VERSION"])
    fake_tool(installed, "omnictl", f"omnictl version {pins['OMNICTL_VERSION']}")
    plugin = tmp_path / "home" / "plugins" / f"resource-kubernetes-v{pins['PULUMI_KUBERNETES_VERSION']}"
    fake_tool(plugin, "pulumi-resource-kubernetes", "plugin")
    env = {**os.environ, "PATH": f"{installed}:{os.environ['PATH']}", "PULUMI_HOME": str(tmp_path / "home")}
    env.pop("OMNI_SCALE_BUILD_PULUMI", None)
    argv = ["bash", str(repo_copy / "tools" / "bootstrap.sh"), "--tools-only", "--prod"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "building" not in proc.stderr
    tools = repo_copy / ".tools" / "bin"
    assert os.path.realpath(tools / "omnictl") == str(installed / "omnictl")
    assert os.path.realpath(tools / "helm") == str(installed / "helm")
    assert str(plugin / "pulumi-resource-kubernetes") in (tools / "pulumi-resource-kubernetes").read_text()
    fake_tool(installed, "omnictl", "omnictl version v1.7.9")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert os.path.realpath(tools / "omnictl") != str(installed / "omnictl")  # the pinned build instead
