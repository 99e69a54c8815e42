"""The lab's docker stand-in validates compose files for real (compose-go's compose-spec schema, .env
interpolation, bind sources), so a compose file it accepts is one docker compose would load."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from components.core.spec import SidecarHealthcheck
from components.core.spec_file import load_spec
from components.proxmox.compose import render_provider_stack
from tests.conftest import PROJECT_ROOT, lab_secrets
from tests.lxc_host import COMPOSE_SCHEMA

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
SECRETS = lab_secrets()


def docker(cwd, *args):
    env = {**os.environ, "HOME": str(cwd), "OMNI_SCALE_COMPOSE_SCHEMA": str(COMPOSE_SCHEMA)}
    return subprocess.run(
        [sys.executable, "-m", "lab.docker_standin", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def stack_dir(tmp_path):
    for f in render_provider_stack(SPEC.provider_lxc.compose, "proxmox", SECRETS):
        (tmp_path / f.name).write_text(f.content)
    return tmp_path


def test_the_rendered_stack_is_valid_and_interpolates_each_secret_into_its_own_service(stack_dir):
    proc = docker(stack_dir, "compose", "config")
    assert proc.returncode == 0, proc.stderr
    assert f"TS_AUTHKEY: {SECRETS.tailscale_auth_key}" in proc.stdout
    assert f"OMNI_SERVICE_ACCOUNT_KEY: {SECRETS.omni_service_account_key}" in proc.stdout


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("network_mode: service:tailscale", "network_mode: 5"), "network_mode"),
        (lambda t: t.replace("restart: unless-stopped", "restart: unless-stopped\n    bogus_key: 1", 1), "bogus_key"),
        (lambda t: t.replace("service:tailscale", "service:nothere"), "unknown service"),
        (lambda t: t.replace("./config.yaml:", "./missing.yaml:"), "does not exist"),
    ],
)
def test_invalid_compose_files_are_refused(stack_dir, edit, message):
    path = stack_dir / "compose.yml"
    path.write_text(edit(path.read_text()))
    proc = docker(stack_dir, "compose", "config", "--quiet")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


def test_a_missing_secret_in_env_fails_interpolation(stack_dir):
    env = stack_dir / ".env"
    env.write_text("".join(line + "\n" for line in env.read_text().splitlines() if not line.startswith("TS_AUTHKEY")))
    proc = docker(stack_dir, "compose", "config", "--quiet")
    assert proc.returncode == 1 and "TS_AUTHKEY" in proc.stderr


def test_up_ps_and_down_keep_the_volume_unless_told(stack_dir):
    assert docker(stack_dir, "compose", "up", "-d").returncode == 0
    ps = docker(stack_dir, "compose", "ps", "--format", "json").stdout.splitlines()
    assert len(ps) == 2 and all('"State": "running"' in line for line in ps)
    assert docker(stack_dir, "compose", "down").returncode == 0
    state = (stack_dir / ".docker-standin" / "state.json").read_text()
    assert "omni-provider_tailscale-state" in state
    assert docker(stack_dir, "compose", "ps", "--format", "json").stdout == ""


def test_a_service_pid_taken_by_another_process_is_never_stopped():
    """Pids wrap (at 32768 here): once a service's process has gone, its pid may be given to another, say a pulumi
    plugin leading its own process group. Stopping the service must not kill that one."""
    import subprocess as sp

    from lab import docker_standin
    from lab.processes import started_at, terminate

    other = sp.Popen(["sleep", "60"], start_new_session=True)  # a group leader, as a plugin is
    try:
        recorded = {"pid": other.pid, "pid_started": started_at(other.pid) + 1}  # an earlier holder of the pid
        docker_standin._stop(recorded)
        assert other.poll() is None, "another process's group was killed"
        assert recorded["pid"] is None
        docker_standin._stop({"pid": other.pid, "pid_started": started_at(other.pid)})
        assert other.wait(5) is not None  # the recorded process itself is stopped
    finally:
        terminate(other.pid, grace_seconds=0)


def test_a_healthy_dependency_is_waited_for_and_one_without_a_healthcheck_is_refused(tmp_path):
    stack = SPEC.provider_lxc.compose.model_copy(update={"tailscale_healthcheck": SidecarHealthcheck()})
    for f in render_provider_stack(stack, "proxmox", SECRETS):
        (tmp_path / f.name).write_text(f.content)
    assert docker(tmp_path, "compose", "up", "-d").returncode == 0
    ps = [
        json.loads(line) for line in docker(tmp_path, "compose", "ps", "--all", "--format", "json").stdout.splitlines()
    ]
    assert {(p["Service"], p["State"], p["Health"]) for p in ps} == {
        ("provider", "running", ""),
        ("tailscale", "running", "healthy"),
    }
    # The same dependency, its healthcheck taken out: compose refuses to wait for a health it cannot know.
    compose = yaml.safe_load((tmp_path / "compose.yml").read_text())
    del compose["services"]["tailscale"]["healthcheck"]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose))
    proc = docker(tmp_path, "compose", "up", "-d")
    assert proc.returncode == 1
    assert "container omni-provider-tailscale-1 has no healthcheck configured" in proc.stderr


def test_services_start_dependencies_first_and_a_cycle_is_refused(tmp_path):
    services = {
        "a": {"image": "x/a:v1", "depends_on": ["b"]},
        "b": {"image": "x/b:v1", "depends_on": {"c": {"condition": "service_started"}}},
        "c": {"image": "x/c:v1"},
    }
    (tmp_path / "compose.yml").write_text(yaml.safe_dump({"name": "p", "services": services}))
    assert docker(tmp_path, "compose", "up", "-d").returncode == 0
    services["c"]["depends_on"] = ["a"]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump({"name": "p", "services": services}))
    proc = docker(tmp_path, "compose", "up", "-d")
    assert proc.returncode == 1 and "dependency cycle detected" in proc.stderr
