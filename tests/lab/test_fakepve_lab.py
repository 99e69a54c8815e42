"""lab/fakepve_lab.py serves a Matrix-shaped fake PVE that a token client can read over verified TLS."""

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.fakepve_matrix import api_get

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "lab", "fakepve_lab.py")
START_TIMEOUT = 30


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def lab(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--state-dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    info_path = tmp_path / "fakepve.json"

    def started():
        if proc.poll() is not None:
            raise AssertionError("fakepve_lab exited early: " + proc.stderr.read())
        return info_path.exists()

    try:
        wait_for(started, START_TIMEOUT, "fakepve.json")
        info = json.loads(info_path.read_text())
        yield proc, info_path, info
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def get(info, path, secret=None):
    secret = info["token_secret"] if secret is None else secret
    return api_get(info["api_url"], info["token_id"], secret, info["cafile"], path)


def test_serves_matrix_shape_to_the_token(lab):
    proc, info_path, info = lab
    assert stat.S_IMODE(os.stat(info_path).st_mode) == 0o600
    assert info["token_id"] == "pulumi@pve!omni-scale" and info["pid"] == proc.pid
    assert info["url"].startswith("https://127.0.0.1:") and info["api_url"] == info["url"] + "/api2/json"
    assert proc.stdout.readline().strip() == "fakepve listening on " + info["url"]

    nodes = get(info, "/nodes")
    assert sorted(n["node"] for n in nodes) == ["foxtrot", "golf", "hotel"]
    assert all(n["status"] == "online" and n["maxcpu"] == 32 and n["maxmem"] == 128 * 1024**3 for n in nodes)

    storage = {s["storage"]: s for s in get(info, "/nodes/golf/storage")}
    ssd = storage["vm_ssd"]
    assert (ssd["type"], ssd["active"], ssd["enabled"], ssd["shared"]) == ("rbd", 1, 1, 1)
    assert "images" in ssd["content"].split(",") and ssd["total"] == 4 * 1024**4 and ssd["avail"] > 1024**4
    assert storage["local-lvm"]["type"] == "lvmthin" and not storage["local-lvm"]["shared"]
    assert storage["local"]["type"] == "dir"

    bridges = get(info, "/nodes/hotel/network?type=bridge")
    assert "vmbr0" in [b["iface"] for b in bridges] and {b["type"] for b in bridges} == {"bridge"}
    assert get(info, "/nodes/foxtrot/dns")["dns1"] == "127.0.0.53"

    with pytest.raises(urllib.error.HTTPError) as refused:
        get(info, "/nodes", secret="wrong")
    assert refused.value.code == 401

    proc.terminate()
    assert proc.wait(10) == 0
    assert not info_path.exists()


def test_refuses_non_loopback_host(tmp_path):
    result = subprocess.run(
        [sys.executable, SCRIPT, "--state-dir", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "refusing" in result.stderr
    assert not (tmp_path / "fakepve.json").exists()


def test_build_matrix_in_process():
    from fakepve import FakePve

    from lab.fakepve_lab import build_matrix

    pve = build_matrix(FakePve(host="127.0.0.1", port=0))
    assert sorted(pve.nodes) == ["foxtrot", "golf", "hotel"]
    assert {"vm_ssd", "local", "local-lvm"} <= set(pve.storages)
