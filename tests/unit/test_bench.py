"""The benchmark's own logic (lab/bench.py): the generated estates are valid specs, and the table's ratios,
per-cluster slopes and profiles are computed from the measurements. The timings themselves are not tested."""

import json

from components.core.spec_file import parse_spec
from lab.bench import generated_spec, median_of, seconds_per_added_cluster, table, up_profile


def measured(clusters: int, up: float, preview: float, refresh: float) -> dict:
    def op(seconds: float) -> dict:
        return {"seconds": seconds, "omnictl": clusters, "omni_calls": 0, "proxmox": 10}

    return {
        "measured": "2026-11-21 on test",
        "clusters": clusters,
        "classes": 2 * clusters,
        "resources": 3 * clusters,
        "up": op(up),
        "preview": op(preview),
        "refresh": op(refresh),
        "baseline": 1.0,
        "by_hand": {
            "seconds": 5.0,
            "omnictl": 4 * clusters,
            "omni_calls": 3 * clusters,
            "proxmox": 15,
            "steps": {"classes: omnictl apply -f": 1.0, "clusters: template status --wait": 4.0},
        },
        "floor": {"up": 2.0, "preview": 1.0},
    }


def test_the_generated_estates_are_valid_specs_of_the_asked_size():
    for clusters in (1, 10, 50):
        spec = parse_spec(generated_spec(clusters), file="generated")
        assert len(spec.clusters) == clusters
        assert len(spec.machine_classes) == 2 * clusters
        assert spec.tailscale_operator.cluster in spec.clusters


def test_linear_growth_gives_equal_seconds_per_added_cluster():
    results = [measured(1, 10, 3, 4), measured(10, 28, 4.8, 8.5), measured(50, 108, 12.8, 28.5)]
    slopes = seconds_per_added_cluster(results)
    assert {op: [round(x, 6) for x in per_op] for op, per_op in slopes.items()} == {
        "up": [2.0, 2.0],
        "preview": [0.2, 0.2],
        "refresh": [0.5, 0.5],
    }


def test_faster_than_linear_growth_shows_as_a_larger_later_slope():
    slopes = seconds_per_added_cluster([measured(10, 20, 4, 4), measured(1, 2, 2, 2), measured(50, 220, 24, 24)])
    assert slopes["up"] == [2.0, 5.0]  # sorted by size, whatever order they were measured in


def test_the_table_divides_by_baseline_plus_the_matching_floor():
    text = table([measured(1, 9.0, 4.0, 2.0), measured(10, 27.0, 5.8, 6.5)])
    # up against the by-hand 5 + up floor 2; preview and refresh against the read baseline 1 + preview floor 1
    assert "| 1 (2) | up | 9.0 | 1 (0) | 10 | 5.0 | 2.0 | 1.29 |" in text
    assert "| 1 (2) | by hand | 5.0 | 4 (3) | 15 | | | |" in text
    assert "| 1 (2) | preview | 4.0 | 1 (0) | 10 | 1.0 | 1.0 | 2.00 |" in text
    assert "| 10 (20) | refresh | 6.5 | 10 (0) | 10 | 1.0 | 1.0 | 3.25 |" in text
    assert "Seconds per added cluster (1→10): up 2.00; preview 0.20; refresh 0.50" in text
    assert text.startswith("Measured 2026-11-21 on test, lab stack.")


def test_a_repeated_measurement_is_its_median_and_shows_its_range():
    runs = iter([{"seconds": 4.9, "omnictl": 1}, {"seconds": 3.5, "omnictl": 1}, {"seconds": 3.6, "omnictl": 1}])
    preview = median_of(3, lambda: next(runs))
    assert preview["seconds"] == 3.6 and preview["samples"] == [4.9, 3.5, 3.6]
    result = measured(1, 9.0, 0, 2.0)
    result["preview"] = {**result["preview"], **preview}
    assert "| 1 (2) | preview | 3.6 (3.5–4.9) | 1 (0) | 10 | 1.0 | 1.0 | 1.80 |" in table([result])


def event(seconds: int, kind: str, op: str, type_: str, name: str) -> str:
    metadata = {"op": op, "urn": f"urn:pulumi:lab::omni-scale::{type_}::{name}", "type": type_}
    return json.dumps({"sequence": 0, "timestamp": seconds, kind: {"metadata": metadata}})


def test_ups_profile_is_each_kind_of_resource_from_its_first_event_to_its_outputs():
    cluster, klass = "pulumi-python:dynamic/omni:TalosCluster", "pulumi-python:dynamic/omni:MachineClass"
    lines = [
        event(100, "resourcePreEvent", "create", "pulumi:pulumi:Stack", "omni-scale-lab"),
        event(100, "resourcePreEvent", "create", "omni-scale:omni:MachineClass", "a"),
        event(101, "resourcePreEvent", "create", klass, "a"),
        event(101, "resourcePreEvent", "create", klass, "b"),
        event(103, "resOutputsEvent", "create", klass, "a"),
        event(104, "resOutputsEvent", "create", klass, "b"),
        event(104, "resOutputsEvent", "create", "omni-scale:omni:MachineClass", "a"),
        event(104, "resourcePreEvent", "create", cluster, "c"),
        event(134, "resOutputsEvent", "create", cluster, "c"),
        event(135, "resOutputsEvent", "create", "pulumi:pulumi:Stack", "omni-scale-lab"),
    ]
    # The stack and the components span their children and are left out; the longest kind first.
    assert up_profile(lines) == {
        "TalosCluster": {"count": 1, "longest": 30.0, "total": 30.0},
        "MachineClass": {"count": 2, "longest": 3.0, "total": 5.0},
    }
    result = measured(1, 40.0, 4.0, 2.0)
    result["up"]["profile"] = up_profile(lines)
    text = table([result])
    assert "TalosCluster ×1 30 s (30 s); MachineClass ×2 3 s (5 s)" in text
    assert "by hand: clusters: template status --wait 4.0 s; classes: omnictl apply -f 1.0 s" in text


def test_runs_that_each_need_a_fresh_lab_count_by_the_middle_one_and_keep_its_own_counts():
    from lab.bench import middle_run

    runs = [
        {"seconds": 30.0, "omni_calls": 41, "profile": "slow"},
        {"seconds": 20.0, "omni_calls": 40, "profile": "fast"},
        {"seconds": 25.0, "omni_calls": 40, "profile": "middle"},
    ]
    # The seconds shown are the median, and the counts and the profile are that run's, not another's.
    assert middle_run(runs) == {"seconds": 25.0, "omni_calls": 40, "profile": "middle", "samples": [30.0, 20.0, 25.0]}
