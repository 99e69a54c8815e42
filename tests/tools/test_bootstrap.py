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
