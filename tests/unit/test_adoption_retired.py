"""Which state entries the move to pulumi-kubernetes retires: the previous code's two dynamic resources of the
Tailscale operator, dependents first (the order `pulumi state delete` accepts), and nothing else."""

from components.cli.adoption import retired_entries

PREFIX = "urn:pulumi:prod::omni-scale::"
OPERATOR = PREFIX + "omni-scale:k8s:TailscaleOperator"


def test_the_previous_operator_entries_are_retired_release_first():
    state = {
        "deployment": {
            "resources": [
                {"urn": PREFIX + "pulumi:pulumi:Stack::omni-scale-prod"},
                {"urn": OPERATOR + "::tailscale-operator"},  # the component itself stays
                {"urn": OPERATOR + "$pulumi-python:dynamic:Resource::tailscale-operator-namespace"},
                {"urn": OPERATOR + "$pulumi-python:dynamic:Resource::tailscale-operator"},
                {"urn": PREFIX + "omni-scale:omni:TalosCluster$pulumi-python:dynamic:Resource::talos-prod-01"},
            ]
        }
    }
    assert retired_entries(state) == [
        OPERATOR + "$pulumi-python:dynamic:Resource::tailscale-operator",
        OPERATOR + "$pulumi-python:dynamic:Resource::tailscale-operator-namespace",
    ]


def test_a_state_already_on_pulumi_kubernetes_or_empty_retires_nothing():
    moved = {
        "deployment": {
            "resources": [
                {"urn": OPERATOR + "$kubernetes:helm.sh/v3:Release::tailscale-operator"},
                {"urn": OPERATOR + "$kubernetes:core/v1:Namespace::tailscale-operator-namespace"},
            ]
        }
    }
    assert retired_entries(moved) == []
    assert retired_entries({"deployment": {}}) == [] and retired_entries({}) == []
