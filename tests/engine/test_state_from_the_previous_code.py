"""An existing state keeps working across the move to pulumi-kubernetes: a lab estate built by the previous code
(components/, __main__.py and its spec as the last commit before it, taken from git), whose operator namespace and
Helm release are two Python dynamic resources, moves over with the adoption command: their entries leave the state
(nothing live is touched), the new pulumi-kubernetes namespace and release import what runs, and nothing else is
replaced or deleted. The release is upgraded in place (the spec moved its chart to 1.102.x), never reinstalled."""

import json

import pytest

from components.cli import adoption
from components.core.spec_file import load_spec
from tests.engine.estate import UNTYPED, program_at, running_estate, swap_program

pytestmark = pytest.mark.engine
PREVIOUS = "c8375dbb5303e67bbfc64c96de9392ca29ecc66e"
OPERATOR = "omni-scale:k8s:TailscaleOperator"


def _operator_entries(estate) -> dict:
    resources = json.loads(estate.pulumi("stack", "export").stdout)["deployment"]["resources"]
    return {r["urn"].rsplit("::", 1)[1]: r["type"] for r in resources if f"{OPERATOR}$" in r["urn"]}


def _history(estate) -> list[dict]:
    proc = estate.helm("history", "tailscale-operator", "--namespace", "tailscale", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    return [{k: h[k] for k in ("revision", "status", "chart", "description")} for h in json.loads(proc.stdout)]


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    archive = program_at(PREVIOUS)
    with running_estate(tmp_path_factory, "previous") as estate:
        estate.provider_made_by_hand()  # that code ran the provider on the key the operator made
        swap_program(estate.project, archive)
        estate.pulumi("up", "--yes", "--skip-preview")
        estate.before = {
            "namespace_uid": estate.namespace().metadata.uid,
            "history": _history(estate),
            "entries": _operator_entries(estate),
        }
        swap_program(estate.project, None)
        yield estate


def test_the_previous_state_holds_the_operator_as_dynamic_resources(estate):
    assert estate.before["entries"] == {"tailscale-operator-namespace": UNTYPED, "tailscale-operator": UNTYPED}
    assert estate.before["history"] == [
        {"revision": 1, "status": "deployed", "chart": "tailscale-operator-1.90.9", "description": "Install complete"}
    ]


def test_a_plain_preview_shows_why_the_adoption_command_is_needed(estate):
    """Without the move, the engine would delete the old entries and create new ones: a reinstall (the create
    fails on the running release, and the old entries cannot be deleted by code that no longer has them)."""
    steps = {
        s["urn"].rsplit("::", 1)[1] + "/" + s["op"]
        for s in estate.preview_json()["steps"]
        if f"{OPERATOR}$" in s["urn"]
    }
    assert {
        "tailscale-operator/delete",
        "tailscale-operator/create",
        "tailscale-operator-namespace/delete",
        "tailscale-operator-namespace/create",
    } <= steps


def test_adoption_moves_the_operator_over_without_reinstalling_it(estate, capfd):
    spec = load_spec(estate.project / "specs" / "omni.yaml")
    code = adoption.adopt(spec, estate.stack.argv, estate.stack.project_dir, estate.stack.env(), yes=True)
    out = capfd.readouterr().out
    assert code == 0, out
    assert "removed from the state, left running: tailscale-operator" in out
    # Only the operator's resources changed: the three new ones, the two retired entries gone from the state.
    summary = out.split("Resources:")[-1]
    assert "deleted" not in summary and "replaced" not in summary, summary
    assert _operator_entries(estate) == {
        "tailscale-operator-cluster": "pulumi:providers:kubernetes",
        "tailscale-operator-namespace": "kubernetes:core/v1:Namespace",
        "tailscale-operator": "kubernetes:helm.sh/v3:Release",
    }
    # The same namespace object, and the same release: upgraded in place to the spec's new chart version.
    assert estate.namespace().metadata.uid == estate.before["namespace_uid"]
    assert _history(estate) == [
        {
            "revision": 1,
            "status": "superseded",
            "chart": "tailscale-operator-1.90.9",
            "description": "Install complete",
        },
        {"revision": 2, "status": "deployed", "chart": "tailscale-operator-1.102.3", "description": "Upgrade complete"},
    ]
    # The state as it was is kept (0600) for `pulumi stack import`.
    [backup] = (estate.stack.project_dir / ".adoption").iterdir()
    assert backup.stat().st_mode & 0o777 == 0o600
    assert estate.before["entries"].keys() <= {
        r["urn"].rsplit("::", 1)[1] for r in json.loads(backup.read_text())["deployment"]["resources"]
    }


def test_after_the_move_preview_and_refresh_are_clean(estate):
    for command in (("preview", "--expect-no-changes"), ("refresh", "--expect-no-changes", "--yes")):
        proc = estate.pulumi(*command, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
