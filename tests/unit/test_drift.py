"""The drift verdict from the engine's event stream: exit codes and what the summary names.

Built events here; tests/unit/test_drift_recorded.py feeds streams the real engine wrote on the lab."""

from components.cli.drift import DRIFT, NO_DRIFT, UNJUDGED, analyse, summary

URN = "urn:pulumi:prod::omni-scale::omni-scale:omni:MachineClass$pulumi-python:dynamic/omni:MachineClass::matrix-worker"
# A state made before each kind had its own type.
UNTYPED_URN = "urn:pulumi:prod::omni-scale::omni-scale:omni:MachineClass$pulumi-python:dynamic:Resource::matrix-worker"


def step(op, live=None, desired=None, urn=URN):
    return {"op": op, "urn": urn, "oldState": {"outputs": live or {}}, "newState": {"inputs": desired or {}}}


def events(*steps: dict, errors: tuple = ()) -> list[dict]:
    """An engine event stream (the shape `pulumi preview --event-log` writes) holding these steps and error
    diagnostics ((urn or None, message))."""
    out = []
    for s in steps:
        meta = {
            "op": s["op"],
            "urn": s["urn"],
            "type": s["urn"].split("::")[2].split("$")[-1],
            "old": s.get("oldState"),
            "new": s.get("newState"),
            "diffs": s.get("diffReasons"),
            "detailedDiff": s.get("detailedDiff"),
        }
        out.append({"resourcePreEvent": {"metadata": meta, "planning": True}})
    out += [{"diagnosticEvent": {"urn": urn or "", "message": message, "severity": "error"}} for urn, message in errors]
    return out


def test_nothing_to_do_is_no_drift():
    assert analyse(events(step("same"), step("refresh")), 0)["exit_code"] == NO_DRIFT


def test_an_update_names_each_changed_field_and_ignores_provider_only_outputs():
    report = analyse(
        events(
            step(
                "update",
                {"provider_data": {"memory": 4096, "cores": 8}, "kubeconfig": "[secret]", "__provider": "x"},
                {"provider_data": {"memory": 16384, "cores": 8}, "kubeconfig": None},
            )
        ),
        0,
    )
    assert report["exit_code"] == DRIFT
    [resource] = report["resources"]
    assert resource["type"] == "omni-scale:omni:MachineClass"
    assert resource["fields"] == [{"field": "provider_data.memory", "live": 4096, "desired": 16384}]
    assert "provider_data.memory: live 4096, desired 16384" in summary(report)


def test_a_desired_value_not_known_until_applied_is_not_reported_as_a_difference():
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # how the engine's events carry a preview's unknown
    report = analyse(
        events(step("update", {"container_creation": None, "memory": 1}, {"container_creation": unknown, "memory": 2})),
        0,
    )
    [resource] = report["resources"]
    assert resource["fields"] == [{"field": "memory", "live": 1, "desired": 2}]


PREFLIGHT_URN = (
    "urn:pulumi:prod::omni-scale::omni-scale:proxmox:StoragePreflight$"
    "pulumi-python:dynamic/proxmox:StoragePreflight::storage-preflight"
)


def test_a_resource_of_a_state_from_before_the_types_is_judged_the_same():
    for urn in (URN, UNTYPED_URN):
        report = analyse(
            events(step("update", {"provider_data": {"memory": 4096}}, {"provider_data": {"memory": 8192}}, urn=urn)), 0
        )
        assert report["resources"][0]["fields"] == [{"field": "provider_data.memory", "live": 4096, "desired": 8192}]


def test_preflight_problems_are_drift_and_other_errors_are_unjudged():
    found = events(
        errors=[
            (
                PREFLIGHT_URN,
                "<{%reset%}>resource 'storage-preflight': property preflight value {<nil>} "
                "has a problem: [preflight] node hotel: offline<{%reset%}>",
            )
        ]
    )
    assert analyse(found, 255)["preflight"] == ["node hotel: offline"]
    assert analyse(found, 255)["exit_code"] == DRIFT
    refused = events(
        errors=[
            (
                None,
                "error: Preview failed: Exception calling application: omnictl get x was refused (is the key valid?)",
            )
        ]
    )
    report = analyse(refused, 255)
    assert report["exit_code"] == UNJUDGED and report["errors"] == ["omnictl get x was refused (is the key valid?)"]
    assert analyse([], 255, "error: could not load plugin")["exit_code"] == UNJUDGED


def test_the_verdict_does_not_depend_on_the_engines_wording():
    """Were Pulumi to reword how it wraps a failed check, a preflight problem stays drift: it is told by the
    resource the diagnostic is about and the preflight's own marker."""
    reworded = events(
        errors=[
            (
                PREFLIGHT_URN,
                "Validation of storage-preflight.preflight failed -> [preflight] storage vm_ssd: missing on golf",
            )
        ]
    )
    report = analyse(reworded, 255)
    assert report["exit_code"] == DRIFT and report["preflight"] == ["storage vm_ssd: missing on golf"]
    # The same resource unable to reach Proxmox is no verdict on the estate.
    unreachable = events(errors=[(PREFLIGHT_URN, "property proxmox has a problem: Proxmox API unreachable")])
    assert analyse(unreachable, 255)["exit_code"] == UNJUDGED
    # The marker on another resource's failure is not the preflight's.
    elsewhere = events(errors=[(URN, "[preflight] node hotel: offline")])
    assert analyse(elsewhere, 255)["exit_code"] == UNJUDGED


def test_templates_show_the_changed_lines_only():
    live, desired = "a: 1\nsize: 5\nb: 2\n", "a: 1\nsize: 2\nb: 2\n"
    text = summary(analyse(events(step("update", {"template": live}, {"template": desired})), 0))
    assert "live    | size: 5" in text and "desired | size: 2" in text and "a: 1" not in text


PLACEMENT_URN = (
    "urn:pulumi:prod::omni-scale::omni-scale:proxmox:ControlPlanePlacement$"
    "pulumi-python:dynamic/proxmox:ControlPlanePlacement::control-plane-placement"
)


def crowded(spread: str) -> dict:
    return {
        "c1": {
            "control_planes_per_node": {"golf": 2, "hotel": 1},
            "workers_per_node": {},
            "if_lost": {
                "golf": {
                    "control_planes_left": 1,
                    "control_planes": 3,
                    "etcd_quorum": False,
                    "workers_left": 0,
                    "workers": 0,
                }
            },
            "spread": spread,
            "problems": ["cluster c1: 2 of its 3 control planes run on golf; ..."],
        }
    }


def placement_step(recorded_spread: str, wanted_spread: str) -> dict:
    return {
        "op": "same",
        "urn": PLACEMENT_URN,
        "oldState": {"outputs": {"placement": crowded(recorded_spread)}},
        "newState": {"inputs": {"spec": {"clusters": {"c1": {"control_plane": {"spread": wanted_spread}}}}}},
    }


def test_crowded_control_planes_are_a_warning_unless_the_spec_requires_the_spread():
    warned = analyse(events(placement_step("warn", "warn")), 0)
    assert warned["exit_code"] == NO_DRIFT and warned["placement"]["c1"]["problems"]
    # The spec asks for the spread now, whatever the state recorded: drift, named in the summary.
    refreshed = {**placement_step("warn", "warn"), "op": "refresh"}  # the refresh step holds the state's spec
    required = analyse(events(refreshed, placement_step("warn", "require")), 0)
    assert required["exit_code"] == DRIFT
    assert "placement: cluster c1: 2 of its 3 control planes run on golf" in summary(required)


def test_a_helm_release_names_the_fields_its_own_diff_found_and_shows_no_secret():
    urn = (
        "urn:pulumi:prod::omni-scale::omni-scale:k8s:TailscaleOperator$kubernetes:helm.sh/v3:Release::"
        "tailscale-operator"
    )
    step = {
        "op": "update",
        "urn": urn,
        "diffReasons": ["values"],
        "detailedDiff": {"values.operatorConfig.hostname": {"kind": "update", "inputDiff": False}},
        "oldState": {"outputs": {"values": "[secret]", "version": "1.102.3"}},
        "newState": {"inputs": {"values": "[secret]", "version": "1.102.3"}},
    }
    report = analyse(events(step), 0)
    assert report["exit_code"] == DRIFT
    assert report["resources"][0]["fields"] == [
        {"field": "values.operatorConfig.hostname", "live": "[secret]", "desired": "[secret]"}
    ]
    assert report["resources"][0]["type"] == "kubernetes:helm.sh/v3:Release"
    assert "values.operatorConfig.hostname: live [secret], desired [secret]" in summary(report)


def test_an_update_the_engine_could_not_diff_for_want_of_a_kubeconfig_is_not_drift():
    """The cluster differs, so its kubeconfig is unknown in the preview: the provider on it and what that provider
    manages show as updates without any diff. Only the cluster is drift."""
    base = "urn:pulumi:prod::omni-scale::omni-scale:k8s:TailscaleOperator$"
    steps = [
        {
            "op": "update",
            "urn": "urn:pulumi:prod::omni-scale::omni-scale:omni:TalosCluster$"
            "pulumi-python:dynamic/omni:TalosCluster::talos-prod-01",
            "oldState": {"outputs": {"template": "size: 5"}},
            "newState": {"inputs": {"template": "size: 2"}},
        },
        {
            "op": "update",
            "urn": base + "pulumi:providers:kubernetes::tailscale-operator-cluster",
            "diffReasons": ["kubeconfig"],
        },
        {"op": "update", "urn": base + "kubernetes:core/v1:Namespace::tailscale-operator-namespace"},
        {"op": "update", "urn": base + "kubernetes:helm.sh/v3:Release::tailscale-operator"},
    ]
    report = analyse(events(*steps), 0)
    assert [r["name"] for r in report["resources"]] == ["talos-prod-01"]


def test_a_key_due_for_renewal_is_drift_named_in_the_summary():
    from components.omni.service_account_key import KEY_EXPIRY_MARK

    warning = {
        "diagnosticEvent": {
            "severity": "warning",
            "message": f"{KEY_EXPIRY_MARK}providerOmniServiceAccountKey (service account 'x', key ab) expired at X\n",
        }
    }
    report = analyse([warning, *events()], 0)
    assert report["exit_code"] == DRIFT and report["resources"] == []
    assert report["keys"] == ["providerOmniServiceAccountKey (service account 'x', key ab) expired at X"]
    assert "  key: providerOmniServiceAccountKey" in summary(report)
    other = {"diagnosticEvent": {"severity": "warning", "message": "some other warning"}}
    assert analyse([other, *events()], 0)["exit_code"] == NO_DRIFT
