"""A cluster's version changes as planned steps (components/omni/upgrades.py): what changes, in which order, what
Omni would refuse (its rules, as Omni v1.7.0 words and applies them), and each step's template."""

import pytest
import yaml

from components.omni.upgrades import (
    KUBERNETES,
    TALOS,
    OfferedVersions,
    VersionChange,
    kubernetes_path_problem,
    plan_problems,
    planned_changes,
    steps,
    template_versions,
    with_versions,
)

TEMPLATE = """kind: Cluster
name: c1
kubernetes:
  version: v1.34.3
talos:
  version: v1.11.6
---
kind: ControlPlane
machineClass:
  name: cp
  size: 3
"""
# What the lab's Omni offers (lab/omni_lab.py): Talos 1.12 runs Kubernetes 1.30 to 1.35, 1.11 up to 1.34.
OFFERED = OfferedVersions(
    {
        "1.11.6": ["1.32.9", "1.33.6", "1.34.3"],
        "1.12.1": ["1.32.9", "1.33.6", "1.34.3", "1.35.0"],
    },
    {"1.32.9", "1.33.6", "1.34.3", "1.35.0"},
)


def bumped(talos="v1.11.6", kubernetes="v1.34.3") -> str:
    return with_versions(TEMPLATE, talos=talos, kubernetes=kubernetes)


def test_the_changes_are_named_talos_first():
    changes = planned_changes(TEMPLATE, bumped("v1.12.1", "v1.35.0"))
    assert [str(c) for c in changes] == ["talos v1.11.6 → v1.12.1", "kubernetes v1.34.3 → v1.35.0"]
    assert planned_changes(TEMPLATE, TEMPLATE) == [] and planned_changes(None, TEMPLATE) == []


def test_both_at_once_is_two_steps_the_new_talos_with_the_old_kubernetes_first():
    new = bumped("v1.12.1", "v1.35.0")
    [(first, first_template), (second, second_template)] = steps(planned_changes(TEMPLATE, new), new)
    assert (first.component, second.component) == (TALOS, KUBERNETES)
    assert template_versions(first_template) == {TALOS: "v1.12.1", KUBERNETES: "v1.34.3"}
    assert second_template == new
    # Only the Cluster document's versions change: the rest is as the spec renders it.
    assert list(yaml.safe_load_all(first_template))[1] == list(yaml.safe_load_all(TEMPLATE))[1]


def test_one_change_is_one_step_of_the_whole_template():
    new = bumped(kubernetes="v1.35.0")
    assert steps(planned_changes(TEMPLATE, new), new) == [(VersionChange(KUBERNETES, "v1.34.3", "v1.35.0"), new)]


@pytest.mark.parametrize(
    "old,new,allowed",
    [
        ("v1.34.3", "v1.34.1", True),  # a patch, down too
        ("v1.34.3", "v1.35.0", True),
        ("v1.34.3", "v1.36.0", False),
        ("v1.34.3", "v1.33.6", False),
        ("v1.34.3", "v2.0.0", False),
    ],
)
def test_kubernetes_moves_a_patch_or_one_minor_up_as_omni_allows(old, new, allowed):
    assert (kubernetes_path_problem(VersionChange(KUBERNETES, old, new)) is None) is allowed


def problems(talos="v1.11.6", kubernetes="v1.34.3"):
    new = bumped(talos, kubernetes)
    return plan_problems(planned_changes(TEMPLATE, new), template_versions(new), OFFERED)


def test_a_plan_omni_takes_has_no_problem():
    assert problems("v1.12.1", "v1.35.0") == [] and problems("v1.12.1") == []


def test_an_unknown_version_is_one_line_naming_what_omni_offers():
    assert problems("v1.99.0") == ["talos v1.99.0 is not a version Omni offers (it offers v1.11.6, v1.12.1)"]
    assert problems(kubernetes="v1.34.9") == [
        "kubernetes v1.34.9 is not a version Omni offers (it offers v1.32.9, v1.33.6, v1.34.3, v1.35.0)"
    ]


def test_two_minors_at_once_and_an_incompatible_pair_are_refused():
    [skip, runs_on] = problems(kubernetes="v1.36.0") + problems(kubernetes="v1.35.0")
    assert skip.startswith("kubernetes v1.34.3 → v1.36.0 skips a minor version") and "v1.35.x first" in skip
    assert runs_on == "kubernetes v1.35.0 does not run on talos v1.11.6 (it runs v1.32.9, v1.33.6, v1.34.3)"


def test_a_first_step_omni_would_refuse_is_named():
    offered = OfferedVersions({**OFFERED.talos, "1.12.1": ["1.35.0"]}, OFFERED.kubernetes)
    new = bumped("v1.12.1", "v1.35.0")
    [problem] = plan_problems(planned_changes(TEMPLATE, new), template_versions(new), offered)
    assert problem.startswith("the first step, talos v1.12.1 with kubernetes v1.34.3, is not a pair Omni runs")


def test_offered_versions_are_read_from_omnis_documents():
    talos = [{"spec": {"version": "1.12.1", "compatiblekubernetesversions": ["1.35.0"], "deprecated": False}}]
    offered = OfferedVersions.from_documents(talos, [{"spec": {"version": "1.35.0"}}])
    assert offered == OfferedVersions({"1.12.1": ["1.35.0"]}, {"1.35.0"})
