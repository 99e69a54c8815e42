"""Control planes the provider put two on one node (a node out of the Proxmox cluster when it placed them, after
the preflight had seen every node): `up` warns, the drift job reports it, and `make survive` says that losing that
node breaks etcd quorum; a spec that requires the spread turns the warning into an error."""

import pytest

from lab import ctl
from tests.engine.estate import CLUSTER, running_estate

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    with running_estate(tmp_path_factory, "placement") as estate:
        ctl.fault("node-absent-at-provisioning", "hotel", directory=estate.lab_dir)
        up = estate.pulumi("up", "--yes", "--skip-preview")
        ctl.fault("node-absent-at-provisioning", "hotel", "0", directory=estate.lab_dir)
        yield estate, up.stdout + up.stderr


def test_up_warns_and_says_what_losing_the_crowded_node_leaves(crowded):
    estate, out = crowded
    per_node = estate.stack_outputs()["placement"][CLUSTER]["control_planes_per_node"]
    [(crowded_node, count)] = [(n, c) for n, c in per_node.items() if c == 2]
    assert "hotel" not in per_node
    assert (
        f"cluster {CLUSTER}: 2 of its 3 control planes run on {crowded_node}; losing {crowded_node} loses etcd quorum"
    ) in out
    assert f"losing {crowded_node}: 1 of 3 control planes left (LOSES etcd quorum)" in out


def test_drift_reports_the_warning_and_survive_fails(crowded, capsys, monkeypatch):
    estate, _ = crowded
    monkeypatch.setenv("OMNI_SCALE_LAB_DIR", str(estate.lab_dir))
    monkeypatch.setattr(ctl, "default_lab_stack", lambda: estate.stack)
    assert ctl.drift(None) == 0  # a warning where the spec does not require the spread: no drift
    printed = capsys.readouterr().out
    assert "placement (what losing each Proxmox node would leave):" in printed
    assert "LOSES etcd quorum" in printed and "warning: cluster" in printed
    assert ctl.survive() == 1
    printed = capsys.readouterr().out
    assert f"cluster {CLUSTER}: control planes per node:" in printed and "LOSES etcd quorum" in printed


def test_a_spec_that_requires_the_spread_fails_up_and_is_drift(crowded, capsys, monkeypatch):
    estate, _ = crowded
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["control_plane"].update(spread="require"))
    up = estate.pulumi("up", "--yes", "--skip-preview", check=False)
    assert up.returncode != 0
    assert "control planes not spread as the spec requires" in up.stdout + up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    monkeypatch.setattr(ctl, "default_lab_stack", lambda: estate.stack)
    assert ctl.drift(None) == 1
    assert "placement: cluster" in capsys.readouterr().out
