"""Suite-wide guards: a run that collects nothing, or (in CI) skips anything, fails."""

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The providerdata of the seed spec's control-plane class, as Omni stores it (unset fields left out).
SEED_CONTROL_PLANE_DATA = {
    "cores": 4,
    "sockets": 1,
    "memory": 8192,
    "disk_size": 40,
    "network_bridge": "vmbr0",
    "storage_selector": 'name == "vm_ssd"',
}

_skipped: list[str] = []


def pytest_collection_finish(session):
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests were collected: refusing to report success")


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # In CI every layer must really run: a skipped engine test is a failure, not a pass.
    if os.environ.get("CI") and _skipped and session.exitstatus == pytest.ExitCode.OK:
        print(f"\nCI: {len(_skipped)} test(s) skipped; every test must run in CI: {_skipped[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def configure(provider, config: dict):
    """A dynamic provider handed this stack config the way the engine hands it (`configure`), keys in full."""
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic.config import Config

    provider.configure(ConfigureRequest(Config(config, "omni-scale")))
    return provider


def program_settings(config, **overrides):
    """ProgramSettings for a test: no Omni settings, protected, none of the lab's mirrors; config, anything with
    .get (a pulumi.Config, or a stand-in over a dict)."""
    from components.core.program import ProgramSettings

    plain = dict(omni=None, protect=True, spec_file="specs/omni.yaml", helm_path=None, cilium_chart_repository=None)
    return ProgramSettings(**{**plain, "tailscale_chart_repository": None, "config": config, **overrides})


def stack_lookup(config: dict):
    """What the settings readers get: a key lookup over this stack config."""
    from pulumi.dynamic.config import Config

    from components.core.settings import lookup_in

    return lookup_in(Config(config, "omni-scale"))


@pytest.fixture
def matrix(tmp_path):
    """A Matrix-shaped fakepve of this test's own (tests/fakepve_matrix.py)."""
    from tests.fakepve_matrix import running_matrix

    with running_matrix(tmp_path) as running:
        yield running


def lab_secrets():
    """The provider stack's secrets, made up, each distinct so a test can find where one went."""
    from components.proxmox.compose import ProviderSecrets

    return ProviderSecrets(
        omni_endpoint="https://127.0.0.1:1",
        omni_service_account_key="OMNIKEY",
        tailscale_auth_key="TSKEY",
        proxmox_api_url="https://127.0.0.1:2/api2/json",
        proxmox_token_id="a@pve!b",
        proxmox_token_secret="PVESECRET",
    )
