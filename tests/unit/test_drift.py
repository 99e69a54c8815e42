"""The drift verdict from pulumi's JSON preview: exit codes and what the summary names."""

from components.drift import DRIFT, NO_DRIFT, UNJUDGED, analyse, summary

URN = "urn:pulumi:prod::omni-scale::omni-scale:omni:MachineClass$pulumi-python:dynamic:Resource::matrix-worker"


def step(op, live=None, desired=None, urn=URN):
    return {"op": op, "urn": urn, "oldState": {"outputs": live or {}}, "newState": {"inputs": desired or {}}}


def test_nothing_to_do_is_no_drift():
    assert analyse({"steps": [step("same"), step("refresh")]}, 0)["exit_code"] == NO_DRIFT


def test_an_update_names_each_changed_field_and_ignores_provider_only_outputs():
    report = analyse({"steps": [step("update", {"provider_data": {"memory": 4096, "cores": 8}, "kubeconfig": "[secret]",
                                                "__provider": "x"},
                                      {"provider_data": {"memory": 16384, "cores": 8}, "kubeconfig": None})]}, 0)
    assert report["exit_code"] == DRIFT
    [resource] = report["resources"]
    assert resource["type"] == "omni-scale:omni:MachineClass"
    assert resource["fields"] == [{"field": "provider_data.memory", "live": 4096, "desired": 16384}]
    assert "provider_data.memory: live 4096, desired 16384" in summary(report)


def test_preflight_failures_are_drift_and_other_errors_are_unjudged():
    preflight = {"diagnostics": [{"severity": "error", "message": "resource 'matrix': property preflight value {<nil>} "
                                  "has a problem: node hotel: offline"}]}
    assert analyse(preflight, 255)["preflight"] == ["node hotel: offline"]
    assert analyse(preflight, 255)["exit_code"] == DRIFT
    refused = {"diagnostics": [{"severity": "error", "message": "error: Preview failed: Exception calling "
                                "application: omnictl get x was refused (is the key valid?)"}]}
    report = analyse(refused, 255)
    assert report["exit_code"] == UNJUDGED and report["errors"] == ["omnictl get x was refused (is the key valid?)"]
    assert analyse({}, 255, "error: could not load plugin")["exit_code"] == UNJUDGED


def test_templates_show_the_changed_lines_only():
    live, desired = "a: 1\nsize: 5\nb: 2\n", "a: 1\nsize: 2\nb: 2\n"
    text = summary(analyse({"steps": [step("update", {"template": live}, {"template": desired})]}, 0))
    assert "live    | size: 5" in text and "desired | size: 2" in text and "a: 1" not in text


PLACEMENT_URN = ("urn:pulumi:prod::omni-scale::omni-scale:proxmox:ControlPlanePlacement$pulumi-python:dynamic:Resource"
                 "::control-plane-placement")


def crowded(spread: str) -> dict:
    return {"c1": {"control_planes_per_node": {"golf": 2, "hotel": 1}, "workers_per_node": {},
                   "if_lost": {"golf": {"control_planes_left": 1, "control_planes": 3, "etcd_quorum": False,
                                        "workers_left": 0, "workers": 0}},
                   "spread": spread, "problems": ["cluster c1: 2 of its 3 control planes run on golf; ..."]}}


def placement_step(recorded_spread: str, wanted_spread: str) -> dict:
    return {"op": "same", "urn": PLACEMENT_URN, "oldState": {"outputs": {"placement": crowded(recorded_spread)}},
            "newState": {"inputs": {"spec": {"clusters": {"c1": {"control_plane": {"spread": wanted_spread}}}}}}}


def test_crowded_control_planes_are_a_warning_unless_the_spec_requires_the_spread():
    warned = analyse({"steps": [placement_step("warn", "warn")]}, 0)
    assert warned["exit_code"] == NO_DRIFT and warned["placement"]["c1"]["problems"]
    # The spec asks for the spread now, whatever the state recorded: drift, named in the summary.
    refreshed = {**placement_step("warn", "warn"), "op": "refresh"}  # the refresh step holds the state's spec
    required = analyse({"steps": [refreshed, placement_step("warn", "require")]}, 0)
    assert required["exit_code"] == DRIFT
    assert "placement: cluster c1: 2 of its 3 control planes run on golf" in summary(required)
