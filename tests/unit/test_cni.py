"""The cluster's CNI as code: Cilium's chart (here the lab's stand-in, in the real chart's place in an offline
cache: tests/unit/conftest.py) rendered with the Talos settings under the user's values, into manifests Omni
accepts, the same at every render."""

import subprocess

import yaml

from components.core.spec_file import load_spec
from components.kubernetes import cni
from components.kubernetes.helm import helm_binary
from components.omni.render import canonical_cluster, render_cluster_template, with_manifests
from tests.conftest import PROJECT_ROOT

SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
CLUSTER = SPEC.clusters["talos-prod-01"]
HELM = helm_binary(None)


def objects(manifests) -> dict:
    [manifest] = manifests
    return {(d["kind"], d["metadata"]["name"]): d for d in manifest["inline"]}


def test_the_seed_cluster_gets_cilium_with_what_talos_needs():
    manifests = cni.cluster_manifests(CLUSTER, HELM)
    assert [(m["name"], m["mode"]) for m in manifests] == [("cilium", "full")]
    found = objects(manifests)
    config = found[("ConfigMap", "cilium-config")]["data"]
    assert (config["kube-proxy-replacement"], config["ipam"], config["mtu"], config["cgroup-root"]) == (
        "true",
        "kubernetes",
        "1450",
        "/sys/fs/cgroup",
    )
    agent = found[("DaemonSet", "cilium")]["spec"]["template"]["spec"]
    assert "initContainers" not in agent  # Talos mounts cgroup2 itself
    container = agent["containers"][0]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "KUBERNETES_SERVICE_HOST": "localhost",
        "KUBERNETES_SERVICE_PORT": "7445",
    }
    assert "SYS_MODULE" not in container["securityContext"]["capabilities"]["add"]
    assert found[("DaemonSet", "cilium")]["metadata"]["namespace"] == "kube-system"


def test_every_render_is_the_same():
    # The chart's own default makes new Hubble certificates at each render, a change at every preview.
    assert cni.cluster_manifests(CLUSTER, HELM) == cni.cluster_manifests(CLUSTER, HELM)
    assert ("CronJob", "hubble-generate-certs") in objects(cni.cluster_manifests(CLUSTER, HELM))


def test_the_users_values_win_over_the_defaults():
    cluster = CLUSTER.model_copy(
        update={
            "cni": CLUSTER.cni.model_copy(
                update={
                    "cilium": CLUSTER.cni.cilium.model_copy(
                        update={"values": type(CLUSTER.cni.cilium.values)(MTU=1400, ipam={"mode": "cluster-pool"})}
                    )
                }
            )
        }
    )
    values = cni.cilium_values(cluster.cni.cilium)
    assert (values["MTU"], values["ipam"], values["k8sServicePort"]) == (1400, {"mode": "cluster-pool"}, 7445)
    assert objects(cni.cluster_manifests(cluster, HELM))[("ConfigMap", "cilium-config")]["data"]["mtu"] == "1400"


def test_a_cluster_without_cni_has_no_manifests():
    assert cni.cluster_manifests(CLUSTER.model_copy(update={"cni": None}), HELM) == []


def test_the_template_with_its_manifests_passes_the_real_omnictl_and_splits_back(tmp_path):
    template = render_cluster_template("talos-prod-01", CLUSTER)
    manifests = cni.cluster_manifests(CLUSTER, HELM)
    full = tmp_path / "template.yaml"
    full.write_text(with_manifests(template, manifests))
    proc = subprocess.run(
        [str(PROJECT_ROOT / ".tools" / "bin" / "omnictl"), "cluster", "template", "validate", "-f", str(full)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    # What export writes back (the name also as an annotation, the documents as YAML text): the same.
    exported = list(yaml.safe_load_all(full.read_text()))
    [written] = exported[0]["kubernetes"]["manifests"]
    written.update(annotations={"name": "cilium"}, inline=yaml.safe_dump_all(written["inline"]))
    assert canonical_cluster(yaml.safe_dump_all(exported)) == canonical_cluster(full.read_text())
    assert canonical_cluster(full.read_text())[0] == template
