"""The drift verdict on event streams the real engine wrote (pulumi v3.259.0 on the lab), one per drift run of
tests/engine/test_drift_and_adoption.py, which recorded them (OMNI_SCALE_RECORD_DRIFT_EVENTS=tests/fixtures/
drift-events): exit code, what differs, and that the verdict holds when the engine's wording changes."""

import gzip
import json
import re

import pytest

from components.cli.drift import DRIFT, NO_DRIFT, UNJUDGED, analyse, read_events, summary
from tests.conftest import PROJECT_ROOT

RECORDED = PROJECT_ROOT / "tests" / "fixtures" / "drift-events"
STORAGE = (
    "selector picks storage vm_ssd, which is disabled on this node (storage.cfg `disable`, or a `nodes` list "
    "without it)"
)

# scenario: (exit code, [(resource, change, [(field, live, desired)])], preflight problems, errors that start so)
EXPECTED = {
    "no_drift_after_a_clean_up": (NO_DRIFT, [], [], []),
    # The lab with nothing changed, its kubernetes provider stopped (SIGSTOP) at the engine's summary so it could
    # not answer the engine's Cancel in time: an error after the plan, exit 0 (as on a busy CI host).
    "a_plugin_slow_to_stop_after_a_clean_plan": (NO_DRIFT, [], [], []),
    "class_memory_changed_out_of_band": (
        DRIFT,
        [("matrix-control-plane", "differs", [("provider_data.memory", 4096, 8192)])],
        [],
        [],
    ),
    "class_deleted_out_of_band": (DRIFT, [("matrix-spare", "missing (would be created)", [])], [], []),
    "worker_count_changed_out_of_band": (DRIFT, [("talos-prod-01", "differs", [("template", ..., ...)])], [], []),
    "patch_edited_out_of_band": (DRIFT, [("talos-prod-01", "differs", [("template", ..., ...)])], [], []),
    "lxc_memory_changed_in_proxmox": (DRIFT, [("omni-provider", "differs", [("memory", 2048, 1024)])], [], []),
    # After adopting an estate whose class was changed before: exactly that difference.
    "adoption_shows_its_plan_and_writes_only_once_confirmed": (
        DRIFT,
        [("matrix-control-plane", "differs", [("provider_data.memory", 6144, 8192)])],
        [],
        [],
    ),
    "operator_value_changed_by_an_out_of_band_helm_upgrade": (
        DRIFT,
        [("tailscale-operator", "differs", [("values.operatorConfig.hostname", "[secret]", "[secret]")])],
        [],
        [],
    ),
    "storage_removed_from_a_node_is_preflight_drift": (
        DRIFT,
        [],
        [f"class {c} on node hotel: {STORAGE}" for c in ("matrix-control-plane", "matrix-spare", "matrix-worker")],
        [],
    ),
    "unreachable_omni_cannot_be_judged": (
        UNJUDGED,
        [],
        [],
        ["omnictl cluster template export could not reach Omni"]
        + [
            f"omnictl get MachineClasses.omni.sidero.dev {c} could not reach Omni"
            for c in ("matrix-control-plane", "matrix-spare", "matrix-worker")
        ],
    ),
}


def recorded(name: str) -> dict:
    return json.loads(gzip.decompress((RECORDED / f"{name}.json.gz").read_bytes()))


def judged(run: dict) -> dict:
    return analyse(read_events(run["stdout"]), run["returncode"], run["stderr"])


def test_every_recorded_stream_has_its_expectation():
    assert sorted(p.name.removesuffix(".json.gz") for p in RECORDED.glob("*.json.gz")) == sorted(EXPECTED)


def _matches(got: dict, want: tuple) -> bool:
    name, change, fields = want
    return (
        (got["name"], got["change"]) == (name, change)
        and len(got["fields"]) == len(fields)
        and all(
            f["field"] == field and (live is ... or f["live"] == live) and (desired is ... or f["desired"] == desired)
            for f, (field, live, desired) in zip(got["fields"], fields, strict=True)
        )
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_recorded_stream_is_judged_as_the_live_run_was(name):
    code, resources, preflight, errors = EXPECTED[name]
    report = judged(recorded(name))
    assert report["exit_code"] == code, summary(report)
    assert len(report["resources"]) == len(resources) and all(
        _matches(got, want) for got, want in zip(report["resources"], resources, strict=True)
    ), report["resources"]
    assert report["preflight"] == preflight
    assert len(report["errors"]) == len(errors) and all(
        e.startswith(prefix) for e, prefix in zip(report["errors"], errors, strict=True)
    ), report["errors"]


def _reworded(run: dict) -> dict:
    """The run as a Pulumi that words everything of its own differently would have written it: every diagnostic's
    text outside what the providers said (their messages, the preflight's marked problems) is replaced."""
    lines = []
    for line in run["stdout"].splitlines():
        event = json.loads(line)
        diagnostic = event.get("diagnosticEvent")
        if diagnostic:
            message = diagnostic["message"]
            message = message.replace("Preview failed: ", "Planning stopped -> ")
            message = message.replace("Exception calling application: ", "provider said: ")
            message = re.sub(r"property (\w+) value \{[^}]*\} has a problem: ", r"check of \1 failed; ", message)
            message = message.replace("preview failed", "the plan could not be made")
            diagnostic["message"], diagnostic["prefix"] = message, "ERROR "
        lines.append(json.dumps(event))
    return {**run, "stdout": "\n".join(lines)}


@pytest.mark.parametrize(
    "name",
    [
        "storage_removed_from_a_node_is_preflight_drift",
        "unreachable_omni_cannot_be_judged",
        "class_memory_changed_out_of_band",
    ],
)
def test_the_verdict_survives_the_engine_rewording_its_messages(name):
    run = recorded(name)
    assert _reworded(run)["stdout"] != run["stdout"] or name == "class_memory_changed_out_of_band"
    assert judged(_reworded(run))["exit_code"] == judged(run)["exit_code"] == EXPECTED[name][0]
    assert judged(_reworded(run))["preflight"] == EXPECTED[name][2]


def test_an_error_after_a_complete_plan_is_a_note_not_a_reason_to_give_up():
    report = judged(recorded("a_plugin_slow_to_stop_after_a_clean_plan"))
    assert [n.split(" exited")[0].rsplit("/", 1)[-1] for n in report["notes"]] == ["pulumi-resource-kubernetes"]
    assert summary(report).splitlines()[1].startswith("note (after the plan was complete): Detected that ")


def test_an_error_after_the_summary_of_a_failed_run_still_counts():
    run = recorded("a_plugin_slow_to_stop_after_a_clean_plan")
    report = judged({**run, "returncode": 255})
    assert report["exit_code"] == UNJUDGED and report["notes"] == []
    assert report["errors"][0].startswith("Detected that ") and "exited prematurely" in report["errors"][0]
