"""The fault matrix, at engine level: the real pulumi CLI on a lab estate, one fault at a time.

Each fault is applied while a change is pending (the control-plane class's memory). The run either
stops with one clear message, or completes; nothing is half-applied (Omni still has the old class);
the state keeps no pending operation; and once the fault clears, a plain `up` converges with no repair.
"""

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lab import ctl, omni_lab, provider_standin
from lab.processes import wait_until
from tests.conftest import PROJECT_ROOT
from tests.engine.estate import CLASS, CLUSTER, running_estate

pytestmark = pytest.mark.engine
LAB_OMNICTL = PROJECT_ROOT / "lab" / "bin" / "omnictl"


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "faults") as estate:
        # Quick retries and timeouts: the matrix provokes many failures on purpose.
        for key, value in (
            ("retryFirstDelaySeconds", "0.2"),
            ("omniTimeoutSeconds", "5"),
            ("clusterReadyTimeoutSeconds", "30"),
        ):
            estate.set_config(f"omni-scale:{key}", value)
        estate.pulumi("up", "--yes", "--skip-preview")
        yield estate


@pytest.fixture
def pending_change(estate):
    """The class's memory changed in the spec; yields the old and new values; the next test starts converged."""
    old = estate.live_memory()
    new = 12288 if old != 12288 else 8192
    estate.set_spec_memory(new)
    yield old, new
    assert estate.live_memory() == new


def stopped_cleanly(estate, proc, message: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert message in out, out
    assert "Traceback" not in out
    assert pending_operations(estate) == []


def pending_operations(estate) -> list:
    return json.loads(estate.pulumi("stack", "export").stdout)["deployment"].get("pending_operations") or []


def up_stops(estate, message: str) -> str:
    proc = estate.pulumi("up", "--yes", "--skip-preview", check=False)
    stopped_cleanly(estate, proc, message)
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def stack_config(estate, key: str, value: str, restore: str, secret: bool = False):
    estate.stack.set_config(f"omni-scale:{key}", value, secret=secret)
    try:
        yield
    finally:
        estate.stack.set_config(f"omni-scale:{key}", restore, secret=secret)


def converges(estate, untouched_memory: int | None = None) -> None:
    """After the fault clears: Omni still has what it had (nothing half-applied), and a plain `up` converges."""
    if untouched_memory is not None:
        assert estate.live_memory() == untouched_memory
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    assert pending_operations(estate) == []


def wrapper(tmp_path, body: str) -> str:
    script = tmp_path / "omnictl"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


# ----------------------------------------------------------------------------------------- Omni


def test_omni_unreachable(estate, pending_change):
    old, _ = pending_change
    omni_lab.set_reachable(estate.info["omni"], False)
    try:
        assert "retrying in" in up_stops(estate, "could not reach Omni")  # transient: retried, bounded
    finally:
        omni_lab.set_reachable(estate.info["omni"], True)
    converges(estate, old)


@pytest.mark.parametrize(
    "omnictl,message",
    [
        # Slower than omniTimeoutSeconds (5 s here) on every call but --version: retried, then given up.
        (f'[ "$1" = "--version" ] || sleep 8\nexec {LAB_OMNICTL} "$@"', "no answer within 5s"),
        (None, "is not an executable file; check omni-scale:omnictlPath"),
        (
            f'[ "$1" = "--version" ] && {{ echo "omnictl version v1.5.2"; exit 0; }}\nexec {LAB_OMNICTL} "$@"',
            "is omnictl v1.5.2; this stack expects v1.8.x",
        ),
    ],
    ids=["omni-too-slow", "omnictl-missing", "omnictl-wrong-version"],
)
def test_omnictl_faults(estate, pending_change, tmp_path, omnictl, message):
    old, _ = pending_change
    path = wrapper(tmp_path, omnictl) if omnictl else "tools/no-such-omnictl"
    with stack_config(estate, "omnictlPath", path, restore="lab/bin/omnictl"):
        up_stops(estate, message)
    converges(estate, old)


@pytest.mark.parametrize(
    "key,message",
    [
        ("garbled", "rejected the input: Error: invalid character"),  # omnictl cannot even decode it
        # Omni answers an expired, a revoked and an unknown key alike ("invalid signature").
        ("expired-or-unknown", "was refused (is the service-account key valid and unexpired?)"),
    ],
)
def test_omni_refuses_the_key(estate, pending_change, key, message):
    old, _ = pending_change
    # A key that is not one at all, or a well-formed key Omni does not know (revoked, or of another Omni).
    bad = "bm90LWEta2V5" if key == "garbled" else omni_lab.revoked_key(estate.info["omni"])
    with stack_config(
        estate, "omniServiceAccountKey", bad, restore=estate.info["omni"]["service_account_key"], secret=True
    ):
        assert "retrying in" not in up_stops(estate, message)  # permanent: not retried
    converges(estate, old)


def test_cluster_not_ready_in_time(estate):
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=3))
    ctl.set_cluster_ready(CLUSTER, False, estate.lab_dir)
    try:
        estate.set_config("omni-scale:clusterReadyTimeoutSeconds", "2")
        proc = estate.pulumi("up", "--yes", "--skip-preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and f"waiting up to 2s for cluster {CLUSTER}" in out and "Traceback" not in out
        assert pending_operations(estate) == []
    finally:
        ctl.set_cluster_ready(CLUSTER, True, estate.lab_dir)
        estate.set_config("omni-scale:clusterReadyTimeoutSeconds", "30")
    converges(estate)
    assert estate.live_workers() == 3


def test_provider_health_reports_an_error(estate, pending_change):
    old, _ = pending_change
    # The provider running in the LXC reports it with its next heartbeat (Omni's infra-provider library).
    report = (estate.lab_dir, estate.info["omni"], estate.info["infra_provider"]["id"])
    provider_standin.report_error(*report, error="failed to list nodes: 401 Unauthorized")
    try:
        up_stops(estate, "failed to list nodes: 401 Unauthorized")
    finally:
        provider_standin.report_error(*report, error="")
    converges(estate, old)


# ---------------------------------------------------------------------------------------- Proxmox


@pytest.mark.parametrize(
    "fault,clear,message,more_workers",
    [
        (("node-offline", "hotel"), ("node-online", "hotel"), "node hotel: offline", 0),
        (("ceph-down",), ("ceph-up",), "which is inactive (for Ceph RBD: is the Ceph cluster healthy?)", 0),
        # A full storage matters only for what is still to be built: one more worker.
        (
            ("storage-full", "vm_ssd"),
            ("storage-free", "vm_ssd", "3000"),
            "capacity: storage vm_ssd needs 100 GB for the VMs still to build (1 VM of talos-prod-01-workers)",
            1,
        ),
    ],
    ids=["node-offline", "ceph-down", "storage-full"],
)
def test_proxmox_fault_stops_preview_before_anything_is_applied(
    estate, pending_change, fault, clear, message, more_workers
):
    old, _ = pending_change
    if more_workers:
        workers = estate.live_workers() + more_workers
        estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=workers))
    ctl.fault(*fault, directory=estate.lab_dir)
    try:
        up_stops(estate, message)
    finally:
        ctl.fault(*clear, directory=estate.lab_dir)
    converges(estate, old)


def test_flaky_proxmox_network_is_ridden_out(estate, pending_change):
    ctl.fault("flaky-network", "0.3", directory=estate.lab_dir)
    estate.set_config("omni-scale:retryAttempts", "8")
    try:
        converges(estate)  # the change goes through: every dropped read was retried
    finally:
        ctl.fault("flaky-network", "0", directory=estate.lab_dir)
        estate.set_config("omni-scale:retryAttempts", "3")


def test_expired_proxmox_token(estate, pending_change):
    old, _ = pending_change
    with stack_config(
        estate, "proxmoxTokenSecret", "expired-token", restore=estate.info["proxmox"]["token_secret"], secret=True
    ):
        up_stops(estate, "the API token was refused")
    converges(estate, old)


# ------------------------------------------------------------------------------- interrupted up


def _up_in_background(estate, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            estate.stack.argv("up", "--yes", "--skip-preview"),
            cwd=estate.project,
            env=estate.stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_up_killed_between_the_classes_and_the_cluster_sync_then_run_again(estate, sig, tmp_path):
    new_memory = 10240 if estate.live_memory() != 10240 else 9216
    workers = estate.live_workers() + 1
    estate.set_spec_memory(new_memory)
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=workers))
    ctl.set_cluster_ready(CLUSTER, False, estate.lab_dir)  # the sync then waits for readiness
    log = tmp_path / "up.log"
    proc = _up_in_background(estate, log)
    try:
        # Fails at once if `up` exits before reaching the point to kill it at.
        wait_until(lambda: estate.live_memory() == new_memory, proc, "pulumi up (before the class update)", log)
        wait_until(lambda: estate.live_workers() == workers, proc, "pulumi up (before the template sync)", log)
        os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
        if sig == signal.SIGINT:
            ctl.set_cluster_ready(CLUSTER, True, estate.lab_dir)  # let the in-flight step finish
        proc.wait(120)
    finally:
        ctl.set_cluster_ready(CLUSTER, True, estate.lab_dir)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Run again, as an operator would: it finishes the job with no manual repair.
    converges(estate)
    assert (estate.live_memory(), estate.live_workers()) == (new_memory, workers)
    state = json.loads(estate.pulumi("stack", "export").stdout)["deployment"]
    assert [r["urn"] for r in state["resources"] if r["urn"].endswith(f"::{CLASS}")]
