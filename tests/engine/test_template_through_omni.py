"""The template language beyond the seed estate, on the lab's real Omni: features, labels and annotations,
strategies, a manifest of the spec's own, a file patch, class kernel args, and a secret patch (registry
credentials) go through `up`; then `refresh`, `preview --expect-no-changes` and drift agree nothing differs, and
the secret is nowhere in the state, the outputs or the run's output."""

import json

import pytest
import yaml

from components.omni.render import MACHINE_CLASS_TYPE
from tests.engine.estate import CLUSTER, running_estate
from tests.unit.test_template_language import FEATURED, featured_data

pytestmark = pytest.mark.engine
REGISTRY_PASSWORD = "s3cret-registry-5f2c9e"
SECRET_PATCH = {
    "name": "registry-auth",
    "secret": True,
    "inline": {
        "machine": {
            "registries": {
                "config": {"registry.example.com": {"auth": {"username": "puller", "password": REGISTRY_PASSWORD}}}
            }
        }
    },
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    with running_estate(tmp_path_factory, "template") as estate:
        data = featured_data()
        data["clusters"][CLUSTER]["workers"][0]["patches"].append(SECRET_PATCH)
        data["machine_classes"]["matrix-control-plane"]["kernel_args"] = ["console=ttyS0"]
        specs = estate.project / "specs"
        for name in ("ntp.yaml", "namespace.yaml"):
            (specs / name).write_text((FEATURED / name).read_text())
        (specs / "omni.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        up = estate.pulumi("up", "--yes", "--skip-preview")
        estate.up_output = up.stdout + up.stderr
        yield estate


def test_omni_holds_every_part_as_written(estate):
    exported = {d["kind"]: d for d in yaml.safe_load_all(estate.omni.export_template(CLUSTER)) if d}
    head, workers = exported["Cluster"], exported["Workers"]
    assert head["labels"] == {"env": "prod", "team": "platform"} and head["annotations"] == {"owner": "matrix-ops"}
    assert head["features"]["enableWorkloadProxy"] is True
    assert head["features"]["backupConfiguration"] == {"interval": "6h0m0s"}
    assert workers["updateStrategy"]["rolling"] == {"maxParallelism": 2}
    assert [m["name"] for m in head["kubernetes"]["manifests"]] == ["cilium", "monitoring"]
    live_class = estate.omni.get(MACHINE_CLASS_TYPE, "matrix-control-plane", "default")
    assert live_class["spec"]["autoprovision"]["kernelargs"] == ["console=ttyS0"]


def test_refresh_preview_and_drift_see_no_difference(estate):
    report = estate.refresh_preview_and_drift_see_no_difference()
    assert REGISTRY_PASSWORD not in json.dumps(report)


def test_the_secret_patch_is_nowhere_in_plain_text_and_shown_redacted(estate):
    outputs = estate.pulumi("stack", "output", "--json").stdout
    shown = json.loads(outputs)["clusters"][CLUSTER]
    assert "registry-auth" in shown and "inline: '[secret]'" in shown and "cloudflare" in shown
    for where, text in (("state", estate.state_text()), ("outputs", outputs), ("up's output", estate.up_output)):
        assert REGISTRY_PASSWORD not in text, where
    # Omni has it, of course: it is the cluster's patch.
    assert REGISTRY_PASSWORD in estate.omni.export_template(CLUSTER)
