"""Omni's template language beyond the seed estate: features, labels and annotations (the reserved prefix
refused), strategies (not update or delete on the control plane), manifests of the spec's own, and a file patch
named as Omni names it. Rendered to a golden file, accepted by the real omnictl `validate`, and equal in
canonical form to what Omni's export writes back."""

import copy
import subprocess

import pytest
import yaml

from components.core.errors import SpecError
from components.core.spec_file import load_spec
from components.omni.render import (
    canonical_cluster,
    redacted_template,
    render_cluster_template,
    user_manifests,
    with_manifests,
)
from tests.conftest import PROJECT_ROOT

GOLDEN = PROJECT_ROOT / "tests" / "golden"
FEATURED = PROJECT_ROOT / "tests" / "fixtures" / "featured"
CLUSTER = "talos-prod-01"


def featured_data() -> dict:
    """The seed estate with every part of the template language this program speaks."""
    data = yaml.safe_load((PROJECT_ROOT / "specs" / "omni.yaml").read_text())
    cluster = data["clusters"][CLUSTER]
    cluster["labels"] = {"env": "prod", "team": "platform"}
    cluster["annotations"] = {"owner": "matrix-ops"}
    cluster["features"] = {
        "enable_workload_proxy": True,
        "use_embedded_discovery_service": True,
        "backup_interval": "6h",
    }
    cluster["manifests"] = [{"name": "monitoring", "mode": "one-time", "file": "namespace.yaml"}]
    cluster["patches"].append({"file": "ntp.yaml", "labels": {"purpose": "time"}})
    control_plane = cluster["control_plane"]
    control_plane["annotations"] = {"tier": "control"}
    control_plane["upgrade_strategy"] = {"type": "Rolling", "max_parallelism": 1}
    workers = cluster["workers"][0]
    workers["labels"] = {"pool": "general"}
    workers["update_strategy"] = {"type": "Rolling", "max_parallelism": 2}
    workers["delete_strategy"] = {"type": "Rolling"}
    workers["patches"] = [{"name": "sysctls", "annotations": {"why": "conntrack"}, "inline": _SYSCTLS}]
    return data


_SYSCTLS = {"machine": {"sysctls": {"net.netfilter.nf_conntrack_max": "262144"}}}


def write_spec(tmp_path, data) -> object:
    for name in ("ntp.yaml", "namespace.yaml"):
        (tmp_path / name).write_text((FEATURED / name).read_text())
    (tmp_path / "omni.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(tmp_path / "omni.yaml", "specs/omni.yaml")


def test_every_part_renders_to_the_golden_file_and_the_real_omnictl_accepts_it(tmp_path):
    spec = write_spec(tmp_path, featured_data())
    cluster = spec.clusters[CLUSTER]
    rendered = with_manifests(render_cluster_template(CLUSTER, cluster), user_manifests(cluster))
    assert rendered == (GOLDEN / "talos-prod-01-featured.yaml").read_text()
    path = tmp_path / "template.yaml"
    path.write_text(rendered)
    proc = subprocess.run(
        [str(PROJECT_ROOT / ".tools" / "bin" / "omnictl"), "cluster", "template", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr


def test_the_file_patch_is_named_by_its_path_as_omni_names_it(tmp_path):
    cluster = write_spec(tmp_path, featured_data()).clusters[CLUSTER]
    [ntp] = [p for p in cluster.patches if p.file]
    assert ntp.patch_name == "ntp.yaml" and ntp.inline == {"machine": {"time": {"servers": ["time.cloudflare.com"]}}}


def test_what_omni_exports_is_the_same_in_canonical_form(tmp_path):
    """Export's habits (client/pkg/template/operations/export.go): defaults of strategies and features left out, the
    interval as Go prints it, patches by idOverride with their name as an annotation, manifests' names too."""
    cluster = write_spec(tmp_path, featured_data()).clusters[CLUSTER]
    written = with_manifests(render_cluster_template(CLUSTER, cluster), user_manifests(cluster))
    documents = [d for d in yaml.safe_load_all(written) if d]
    exported = copy.deepcopy(documents)
    head, control_plane, workers = exported
    head["features"]["backupConfiguration"]["interval"] = "6h0m0s"
    for i, patch in enumerate(head["patches"]):
        patch["idOverride"] = f"{200 + i:03d}-cluster-{CLUSTER}-{patch['name']}"
        patch["annotations"] = {**patch.get("annotations", {}), "name": patch.pop("name")}
    for manifest in head["kubernetes"]["manifests"]:
        manifest["annotations"] = {"name": manifest["name"]}
    control_plane["upgradeStrategy"] = {"type": "Rolling", "rolling": {"maxParallelism": 1}}
    workers["updateStrategy"] = {"rolling": {"maxParallelism": 2}}  # Rolling is the update default
    workers["deleteStrategy"] = {"type": "Rolling"}
    text = "---\n".join(yaml.safe_dump(d, sort_keys=True) for d in exported)
    assert canonical_cluster(text) == canonical_cluster(written)
    # A real change stays one.
    workers["updateStrategy"] = {"rolling": {"maxParallelism": 3}}
    changed = "---\n".join(yaml.safe_dump(d, sort_keys=True) for d in exported)
    assert canonical_cluster(changed) != canonical_cluster(written)


def _problems(tmp_path, edit) -> list[str]:
    data = featured_data()
    edit(data["clusters"][CLUSTER])
    with pytest.raises(SpecError) as info:
        write_spec(tmp_path, data)
    return [line.split(": ", 2)[1:] for line in str(info.value).splitlines()]


@pytest.mark.parametrize(
    ("edit", "path", "expected"),
    [
        (
            lambda c: c["labels"].update({"omni.sidero.dev/cluster": "x"}),
            f"clusters.{CLUSTER}.labels",
            "keys without the omni.sidero.dev/ prefix",
        ),
        (
            lambda c: c["workers"][0]["patches"][0]["annotations"].update({"omni.sidero.dev/x": "y"}),
            f"clusters.{CLUSTER}.workers[0].patches[0].annotations",
            "Omni keeps for itself",
        ),
        (
            lambda c: c["control_plane"].update(update_strategy={"type": "Rolling"}),
            f"clusters.{CLUSTER}.control_plane.update_strategy",
            "Omni allows only upgrade_strategy on the control plane",
        ),
        (
            lambda c: c["workers"][0].update(delete_strategy={"type": "Unset", "max_parallelism": 2}),
            f"clusters.{CLUSTER}.workers[0].delete_strategy.max_parallelism",
            "no max_parallelism unless type is Rolling",
        ),
        (
            lambda c: c["workers"][0].update(update_strategy={"type": "Fast"}),
            f"clusters.{CLUSTER}.workers[0].update_strategy.type",
            "'Rolling' or 'Unset'",
        ),
        (
            lambda c: c["features"].update(backup_interval="daily"),
            f"clusters.{CLUSTER}.features.backup_interval",
            "a duration of hours, minutes and seconds, e.g. 2h",
        ),
        (
            lambda c: c["patches"].append({"inline": {"machine": {}}}),
            f"clusters.{CLUSTER}.patches[2].name",
            "a name for an inline patch",
        ),
        (
            lambda c: c["manifests"].append({"name": "cilium", "inline": [{"kind": "Namespace"}]}),
            f"clusters.{CLUSTER}.manifests[1].name",
            "'cilium' is the CNI's",
        ),
        (
            lambda c: c["manifests"].append({"name": "x", "mode": "always", "inline": []}),
            f"clusters.{CLUSTER}.manifests[1].mode",
            "'full' or 'one-time'",
        ),
    ],
)
def test_what_omni_would_refuse_is_one_line_naming_the_field(tmp_path, edit, path, expected):
    problems = _problems(tmp_path, edit)
    assert [p for p in problems if p[0] == path and expected in p[1]], problems


def test_a_secret_patch_is_shown_redacted_as_written_and_as_exported(tmp_path):
    data = featured_data()
    data["clusters"][CLUSTER]["workers"][0]["patches"][0]["secret"] = True
    cluster = write_spec(tmp_path, data).clusters[CLUSTER]
    assert cluster.secret_patches() == [("Workers", "workers", "sysctls")]
    written = render_cluster_template(CLUSTER, cluster)
    shown = redacted_template(written, cluster.secret_patches())
    assert "262144" in written and "262144" not in shown and "inline: '[secret]'" in shown
    assert "time.cloudflare.com" in shown  # the other patches stay readable
    exported = written.replace(
        "- name: sysctls\n", "- idOverride: 400-talos-prod-01-workers-sysctls\n  annotations:\n    name: sysctls\n"
    )
    exported = exported.replace("  annotations:\n    why: conntrack\n", "")
    assert "262144" not in redacted_template(exported, cluster.secret_patches())


def test_the_spec_the_preflight_keeps_is_the_one_older_states_hold_and_holds_no_secret(tmp_path):
    """The preflight and the placement keep the spec in the state and diff it whole: fields added since leave it as
    it was when they are not used, and a secret patch's content is not in it."""
    import json

    from components.core.spec import spec_document
    from components.core.spec_file import parse_spec

    seed = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
    assert spec_document(seed) == json.loads((GOLDEN / "seed-spec-document.json").read_text())
    data = featured_data()
    data["clusters"][CLUSTER]["patches"][0]["secret"] = True
    document = spec_document(write_spec(tmp_path, data))
    assert "cni" not in json.dumps(document["clusters"][CLUSTER]["patches"][0])  # cilium-prep's content left out
    assert parse_spec(document, "state").clusters[CLUSTER].manifests[0].inline  # and it parses again
