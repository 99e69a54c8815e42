"""The TalosCluster dynamic provider against the lab's real Omni: every verb and error path."""

import base64
import json
import re
import time

import pytest
import yaml

from components.core.spec_file import load_spec
from components.omni import omnictl as omnictl_mod
from components.omni.machine_class import MachineClassProvider
from components.omni.readiness import NotReady
from components.omni.render import canonical_manifests, canonical_template, render_cluster_template
from components.omni.talos_cluster import TalosClusterProvider
from lab.ctl import set_cluster_ready
from lab.processes import terminate
from tests.conftest import PROJECT_ROOT
from tests.provider.conftest import PROVIDER_ID, configured, stack_config

NAME = "talos-prod-01"
SPEC = load_spec(PROJECT_ROOT / "specs" / "omni.yaml")
TEMPLATE = render_cluster_template(NAME, SPEC.clusters[NAME])


@pytest.fixture
def provider(provisioning_lab):
    lab = provisioning_lab
    # The Kubernetes API the lab's omnictl points kubeconfigs at (no Talos cluster boots in the lab).
    (lab["dir"] / "kubernetes").mkdir()
    (lab["dir"] / "kubernetes" / "access.json").write_text(
        json.dumps({"server": "https://127.0.0.1:6443", "token": "lab-token", "certificate_authority_data": "Q0E="})
    )
    config = stack_config(lab["omni"], clusterReadyTimeoutSeconds="60")
    classes = configured(MachineClassProvider, config)
    for class_id, cls in SPEC.machine_classes.items():
        classes.create(
            {
                "class_id": class_id,
                "namespace": "default",
                "provider_id": cls.provider_id,
                "provider_data": cls.provider_data.as_document(),
            }
        )
    return configured(TalosClusterProvider, config)


def impatient(lab, seconds: int = 3) -> TalosClusterProvider:
    """The provider with a short readiness timeout, for a wait that is meant to fail."""
    return configured(TalosClusterProvider, stack_config(lab["omni"], clusterReadyTimeoutSeconds=str(seconds)))


TTL = 90 * 86400
# The seed's cluster patch disables Talos's CNI: a CNI in its manifests, as the program renders Cilium (the lab's
# Omni model looks for a CNI's DaemonSet, and for Cilium replacing the disabled kube-proxy).
CNI = canonical_manifests(
    [
        {
            "name": "cilium",
            "mode": "full",
            "inline": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                    "data": {"kube-proxy-replacement": "true"},
                },
                {
                    "apiVersion": "apps/v1",
                    "kind": "DaemonSet",
                    "metadata": {"name": "cilium", "namespace": "kube-system"},
                    "spec": {
                        "selector": {"matchLabels": {"k8s-app": "cilium"}},
                        "template": {
                            "metadata": {"labels": {"k8s-app": "cilium"}},
                            "spec": {
                                "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.4"}]
                            },
                        },
                    },
                },
            ],
        }
    ]
)


def props(template: str = TEMPLATE, minted: str = "2026-12-01T00:00:00Z", ttl: int = TTL, manifests=CNI) -> dict:
    """Inputs as check leaves them (canonical template, when the kubeconfig is to be minted)."""
    return {
        "cluster_name": NAME,
        "template": canonical_template(template),
        "manifests": manifests,
        "kubeconfig_ttl_seconds": ttl,
        "kubeconfig_minted_at": minted,
    }


def minted_kubeconfigs(monkeypatch) -> list:
    """Every (cluster, user, ttl) a kubeconfig is minted for from now on."""
    calls = []
    real = omnictl_mod.Omnictl.service_account_kubeconfig

    def spy(self, *args):
        calls.append(args)
        return real(self, *args)

    monkeypatch.setattr(omnictl_mod.Omnictl, "service_account_kubeconfig", spy)
    return calls


def with_workers(size: int) -> str:
    docs = list(yaml.safe_load_all(TEMPLATE))
    docs[2]["machineClass"]["size"] = size
    return yaml.safe_dump_all(docs)


def test_check_validates_offline_and_canonicalises(lab):
    offline = configured(TalosClusterProvider, {"omni-scale:omnictlPath": "lab/bin/omnictl"})
    ok = offline.check({}, {"cluster_name": NAME, "template": TEMPLATE, "kubeconfig_ttl_seconds": TTL})
    assert ok.failures == [] and ok.inputs["template"] == canonical_template(TEMPLATE)
    broken = TEMPLATE.replace("  size: 3\n", "  size: 3\n  sise: 3\n")
    bad = offline.check({}, {"cluster_name": NAME, "template": broken, "kubeconfig_ttl_seconds": TTL})
    assert [f.property for f in bad.failures] == ["template"]
    assert "field sise not found" in bad.failures[0].reason


def test_taking_restore_from_out_after_a_restore_is_refused_in_check(lab):
    """Omni never changes a machine set's bootstrapSpec: a template without it, for a cluster whose control planes
    were made from a snapshot, would fail at Omni; check says why before anything is applied."""
    from components.core.spec import RestoreSpec

    offline = configured(TalosClusterProvider, {"omni-scale:omnictlPath": "lab/bin/omnictl"})
    restore = RestoreSpec(snapshot="FFFFFFFF9A99FBF6.snapshot", cluster_uuid="bb874758-ee54-4d3b-bac3-4c8349737298")
    restored = render_cluster_template(NAME, SPEC.clusters[NAME].model_copy(update={"restore_from": restore}))
    olds = {"cluster_name": NAME, "template": canonical_template(restored), "kubeconfig_ttl_seconds": TTL}
    kept = offline.check(olds, {**olds, "template": restored})
    assert kept.failures == []
    dropped = offline.check(olds, {**olds, "template": TEMPLATE})
    assert [f.reason for f in dropped.failures] == [
        f"cluster {NAME}: its control planes were made from snapshot FFFFFFFF9A99FBF6.snapshot (restore_from), "
        "which Omni never changes afterwards: keep `restore_from: {snapshot: FFFFFFFF9A99FBF6.snapshot}` in the spec"
    ]


def test_create_syncs_waits_and_returns_the_live_template_and_a_kubeconfig(provider):
    created = provider.create(props())
    assert created.id == NAME
    assert created.outs["template"] == canonical_template(TEMPLATE)
    kubeconfig = yaml.safe_load(created.outs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    # Omni made it: for the service account it created for this cluster and user.
    assert any(NAME in c["name"] for c in kubeconfig["contexts"])
    # Its life: asked of Omni as --ttl; the lab's token is no JWT, so the expiry is minted + TTL.
    assert created.outs["kubeconfig_expires_at"] == "2027-03-01T00:00:00Z"
    read = provider.read(NAME, created.outs)
    assert read.inputs == props()


def test_diff_ignores_cosmetics_and_sees_worker_count(provider):
    olds = props(minted=_now(), manifests=[])
    reordered = provider.check(
        olds,
        {
            "cluster_name": NAME,
            "kubeconfig_ttl_seconds": TTL,
            "template": yaml.safe_dump_all(list(yaml.safe_load_all(TEMPLATE)), sort_keys=True),
        },
    ).inputs
    assert provider.diff(NAME, olds, reordered).changes is False
    more = provider.check(
        olds, {"cluster_name": NAME, "kubeconfig_ttl_seconds": TTL, "template": with_workers(3)}
    ).inputs
    result = provider.diff(NAME, olds, more)
    assert result.changes is True and result.replaces == []
    assert provider.diff(NAME, olds, {**olds, "cluster_name": "other"}).replaces == ["cluster_name"]


def test_update_and_out_of_band_drift_are_seen_by_read(provider):
    created = provider.create(props())
    updated = provider.update(NAME, created.outs, props(with_workers(3)))
    assert "size: 3" in updated.outs["template"].split("kind: Workers")[1]
    provider.client.template("sync", with_workers(5))  # someone scales by hand
    drifted = provider.read(NAME, updated.outs)
    assert drifted.inputs["template"] == canonical_template(with_workers(5))


def test_the_wait_prints_progress_from_omnis_resources_in_order(provider, capfd):
    provider.create(props())
    lines = [line.removeprefix("omni-scale: ") for line in capfd.readouterr().err.splitlines()]
    progress = [line for line in lines if line.startswith(f"cluster {NAME}: control-planes")]
    counts = [
        [int(n) for n in re.findall(r"(\d+) (?:requested|provisioned|running)", line)]
        + [int(re.search(r"(\d+) of \d+ nodes ready", line).group(1))]
        for line in progress
    ]
    for line, (_cp_wanted, cp_made, cp_running, _w_wanted, w_made, w_running, ready) in zip(
        progress, counts, strict=True
    ):
        # Each line is consistent although its four reads are not one snapshot (they run from the last step back).
        assert cp_made >= cp_running and w_made >= w_running and cp_running + w_running >= ready, line
    # Every count only grows from one line to the next, up to every machine running and every node Ready.
    assert all(
        a <= b for before, after in zip(counts, counts[1:], strict=False) for a, b in zip(before, after, strict=True)
    ), progress
    assert progress[-1] == (
        f"cluster {NAME}: control-planes 3 requested, 3 provisioned, 3 running; workers 2 requested, "
        "2 provisioned, 2 running; Kubernetes API reachable; 5 of 5 nodes ready"
    )
    assert lines.index(progress[-1]) < lines.index(f"cluster {NAME} is ready")


def test_a_template_without_a_cni_times_out_naming_node_ready(provider, provisioning_lab):
    # The bypass, for this test only: the program refuses such a cluster at preview (the spec's check).
    with pytest.raises(NotReady) as info:
        impatient(provisioning_lab, 8).create(props(manifests=[]))
    assert info.value.message == (
        f"cluster {NAME} is not ready after 8s: `nodeReady` unmet on 5 machines (a node is "
        "Ready only once a CNI runs on it)"
    )


def test_machines_the_provider_never_makes_are_named_at_the_timeout(provider, provisioning_lab):
    terminate(provisioning_lab["provider_pid"])  # the provider is gone: nobody answers the machine requests
    with pytest.raises(NotReady) as info:
        impatient(provisioning_lab).create(props())
    assert info.value.message.startswith(
        f"cluster {NAME} is not ready after 3s: 5 of 5 machines never provisioned: look at the provider"
    )


def test_cluster_held_not_ready_fails_with_what_is_unmet(provider, provisioning_lab):
    created = provider.create(props())
    set_cluster_ready(NAME, False, provisioning_lab["dir"])
    with pytest.raises(omnictl_mod.OmnictlError) as info:
        impatient(provisioning_lab).update(NAME, created.outs, props(with_workers(3)))
    assert "status" in info.value.verb and re.search(r"`nodeReady` unmet on \d machines", info.value.message)


def test_delete_removes_the_cluster_and_read_then_reports_it_gone(provider):
    created = provider.create(props())
    provider.delete(NAME, created.outs)
    assert provider.read(NAME, created.outs).id is None
    provider.delete(NAME, created.outs)  # already gone: not an error


def test_sync_makes_omni_ask_the_infra_provider_for_the_machines(provider):
    provider.create(props())
    requests = yaml.safe_load_all(provider.client.run("get", "machinerequestsets", "-o", "yaml"))
    wanted = {d["metadata"]["id"]: (d["spec"]["providerid"], d["spec"]["machinecount"]) for d in requests if d}
    assert wanted == {f"{NAME}-control-planes": (PROVIDER_ID, 3), f"{NAME}-workers": (PROVIDER_ID, 2)}


def test_omni_itself_refuses_a_talos_version_it_does_not_know(provider):
    # Offline validation cannot know which versions exist; Omni does (from its image factory).
    unknown = TEMPLATE.replace("version: v1.11.6", "version: v1.11.1")
    assert provider.check({}, {"cluster_name": NAME, "template": unknown}).failures == []
    with pytest.raises(omnictl_mod.OmnictlError, match=r'invalid talos version "1.11.1"'):
        provider.create(props(unknown))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _days_ago(days: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days * 86400))


def test_the_kubeconfig_is_kept_until_a_third_of_its_life_is_left_then_renewed(lab):
    offline = configured(TalosClusterProvider, {"omni-scale:omnictlPath": "lab/bin/omnictl"})
    news = {"cluster_name": NAME, "template": TEMPLATE, "kubeconfig_ttl_seconds": TTL}
    young, old = _days_ago(59), _days_ago(61)  # of a 90-day life: 31 and 29 days left
    assert offline.check(props(minted=young), news).inputs["kubeconfig_minted_at"] == young
    renewed = offline.check(props(minted=old), news).inputs["kubeconfig_minted_at"]
    assert renewed != old and renewed >= _days_ago(0.01)  # "now": preview shows the renewal as this change
    assert offline.check(props(minted=young, ttl=30 * 86400), news).inputs["kubeconfig_minted_at"] != young  # new TTL
    assert offline.diff(NAME, props(minted=old), {**props(), "kubeconfig_minted_at": renewed}).changes is True


def test_a_template_change_alone_mints_no_kubeconfig_and_a_renewal_alone_syncs_nothing(provider, monkeypatch):
    created = provider.create(props(minted=_now()))
    minted = minted_kubeconfigs(monkeypatch)
    updated = provider.update(
        NAME, created.outs, {**props(with_workers(3)), "kubeconfig_minted_at": created.outs["kubeconfig_minted_at"]}
    )
    assert minted == [] and updated.outs["kubeconfig"] == created.outs["kubeconfig"]
    provider.client.template("sync", with_workers(4))  # out of band: a renewal must not put it back
    renewed = provider.update(
        NAME, updated.outs, {**props(with_workers(3)), "kubeconfig_minted_at": "2027-01-01T00:00:00Z"}
    )
    assert [call[2] for call in minted] == [TTL] and renewed.outs["kubeconfig_expires_at"] == "2027-04-01T00:00:00Z"
    assert "size: 4" in provider.client.export_template(NAME)  # no sync happened


def test_a_jwt_kubeconfig_tells_its_own_expiry():
    from components.omni.talos_cluster import token_expiry

    payload = (
        base64.urlsafe_b64encode(json.dumps({"exp": 1798761600, "sub": "omni-scale"}).encode()).decode().rstrip("=")
    )
    kubeconfig = yaml.safe_dump({"users": [{"name": "u", "user": {"token": f"eyJhbGciOiJFUzI1NiJ9.{payload}.sig"}}]})
    assert token_expiry(kubeconfig) == 1798761600
    assert token_expiry(yaml.safe_dump({"users": [{"name": "u", "user": {"token": "lab-token"}}]})) is None
