"""The real pulumi CLI runs the program against the lab: preview, up of the seed estate (two
MachineClasses and talos-prod-01), no-change preview, spec changes, drift made out of band,
refresh, protection, destroy; and the state never holds a secret in plain text.

The tests share one lab and one stack, and run in any order: the first to need the seed estate applied
previews and applies it (`first_up`), and each test finds the seed estate as the spec and config describe it
(`seed`), which puts back after the test whatever the test changed.
"""

import json
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from components.omni.infra_provider import last_heartbeat
from components.omni.omnictl import Unauthorized
from components.omni.render import MACHINE_CLASS_TYPE, canonical_cluster, machine_class_document
from components.omni.service_account_key import key_facts
from components.omni.service_accounts import provider_account
from lab import omni_lab
from lab.processes import wait_until
from tests.conftest import PROJECT_ROOT, SEED_CONTROL_PLANE_DATA
from tests.engine.estate import (
    CLASS,
    CLASS_TYPE,
    CLUSTER,
    CLUSTER_TYPE,
    ENGINE_RPC_LOG,
    PROVIDER_ID,
    Estate,
    call_failed,
    log_message,
)

# Every test starts from the seed estate applied, and leaves it so (see `seed`).
pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("seed")]
OPERATOR = "omni-scale:k8s:TailscaleOperator$"
RELEASE = "kubernetes:helm.sh/v3:Release"


def _steps(preview: dict, op: str, name: str = CLASS) -> list[dict]:
    type_ = {CLASS: CLASS_TYPE, CLUSTER: CLUSTER_TYPE}[name]
    return [s for s in preview.get("steps", []) if s["op"] == op and s["urn"].endswith(f"{type_}::{name}")]


@dataclass
class FirstUp:
    preview: dict  # `preview --json --diff` of the empty stack
    live_after_preview: tuple  # the control-plane class in Omni and the LXC's config in Proxmox, after that preview
    up: subprocess.CompletedProcess
    outputs: dict  # the stack's outputs right after that `up` (the preflight's prediction changes once it is built)


@pytest.fixture(scope="module")
def first_up(estate) -> FirstUp:
    """The seed estate's preview on the empty stack, then its `up`: once, for whichever test needs it first."""
    preview = estate.preview_json()
    live_after_preview = (estate.live_class(), estate.ct_config())
    up = estate.pulumi("up", "--yes", "--skip-preview")
    return FirstUp(preview, live_after_preview, up, estate.stack_outputs())


@pytest.fixture
def seed(estate: Estate, first_up, request):
    """The seed estate, applied (every test uses it). Afterwards the spec and the stack config are put back, and
    when the test changed either (or failed half-way) an `up --refresh` applies the seed again, out-of-band
    changes included."""
    spec_file, config_file = estate.project / "specs" / "omni.yaml", estate.project / "Pulumi.lab.yaml"
    spec, config = spec_file.read_text(), config_file.read_text()
    yield
    changed = any(
        yaml.safe_load(now.read_text()) != yaml.safe_load(then)
        for now, then in ((spec_file, spec), (config_file, config))
    )
    spec_file.write_text(spec)
    config_file.write_text(config)
    if changed or call_failed(request.node):
        estate.pulumi("up", "--yes", "--skip-preview", "--refresh")


def test_preview_shows_the_seed_estate_to_create(first_up):
    preview = first_up.preview
    # Each of the program's own resources says its kind in its type (and so in its URN).
    creates = {
        s["urn"].rsplit("::", 1)[1]: s["newState"]["type"]
        for s in preview["steps"]
        if s["op"] == "create" and s["newState"]["type"].startswith("pulumi-python:")
    }
    assert creates == {
        "control-plane-placement": "pulumi-python:dynamic/proxmox:ControlPlanePlacement",
        "matrix": "pulumi-python:dynamic/proxmox:StoragePreflight",
        "matrix-control-plane": CLASS_TYPE,
        "matrix-worker": CLASS_TYPE,
        "omni-provider": "pulumi-python:dynamic/proxmox:LxcContainer",
        "omni-provider-compose": "pulumi-python:dynamic/proxmox:ComposeDeployment",
        CLUSTER: CLUSTER_TYPE,
        # The identities the program makes: the provider's Omni account, the drift job's, the provider's Proxmox
        # access and token, and what retires replaced tokens.
        f"infra-provider-{PROVIDER_ID}": "pulumi-python:dynamic/omni:ServiceAccount",
        "service-account-drift": "pulumi-python:dynamic/omni:ServiceAccount",
        "omni-provider-proxmox-identity-access": "pulumi-python:dynamic/proxmox:ProviderAccess",
        "omni-provider-proxmox-identity-token": "pulumi-python:dynamic/proxmox:ProviderToken",
        "omni-provider-proxmox-identity-retired-tokens": "pulumi-python:dynamic/proxmox:RetiredProviderTokens",
        # Omni's etcd backup store, and the watch on the cluster's backups.
        "etcd-backup-store": "pulumi-python:dynamic/omni:EtcdBackupStore",
        f"{CLUSTER}-etcd-backups": "pulumi-python:dynamic/omni:EtcdBackupWatch",
    }
    # The operator: pulumi-kubernetes resources, on a provider of the new cluster's own.
    assert {
        s["urn"].rsplit("::", 1)[1]: s["newState"]["type"]
        for s in preview["steps"]
        if s["op"] == "create" and OPERATOR in s["urn"]
    } == {
        "tailscale-operator-cluster": "pulumi:providers:kubernetes",
        "tailscale-operator-namespace": "kubernetes:core/v1:Namespace",
        "tailscale-operator": "kubernetes:helm.sh/v3:Release",
    }
    assert first_up.live_after_preview == (None, None)  # preview wrote nothing
    # The cluster's CNI, rendered from the (lab's) Cilium chart, is its own input: the manifests Omni applies.
    [cluster] = [s for s in preview["steps"] if s["urn"].endswith(f"{CLUSTER_TYPE}::{CLUSTER}")]
    [manifest] = cluster["newState"]["inputs"]["manifests"]
    assert (manifest["name"], manifest["mode"]) == ("cilium", "full")
    assert {(d["kind"], d["metadata"]["name"]) for d in manifest["inline"]} >= {
        ("DaemonSet", "cilium"),
        ("ConfigMap", "cilium-config"),
    }
    assert "manifests" not in cluster["newState"]["inputs"]["template"]


def test_up_creates_the_classes_and_the_cluster(estate, first_up):
    up = first_up.up
    out = [line.strip().removeprefix("omni-scale: ") for line in (up.stdout + up.stderr).splitlines()]
    # The wait's progress, read from Omni's resources, ends with every machine running and every node Ready.
    progress = [line for line in out if line.startswith(f"cluster {CLUSTER}: control-planes")]
    assert progress[-1] == (
        f"cluster {CLUSTER}: control-planes 3 requested, 3 provisioned, 3 running; workers 2 "
        "requested, 2 provisioned, 2 running; Kubernetes API reachable; 5 of 5 nodes ready"
    ), out
    assert out.index(progress[0]) <= out.index(progress[-1]) < out.index(f"cluster {CLUSTER} is ready")
    # Then where the control planes landed, and what losing each node would leave.
    assert f"cluster {CLUSTER}: control planes per node: foxtrot 1, golf 1, hotel 1" in out
    assert "losing hotel: 2 of 3 control planes left (keeps etcd quorum)" in "\n".join(out)
    assert estate.live_memory() == 8192
    assert estate.live_workers() == 2
    outputs = first_up.outputs
    assert "kubeconfigs" not in outputs  # kept in the state, encrypted; never an output (see __main__.py)
    assert outputs["totals"]["all"] == {"machines": 5, "cores": 28, "memory_mb": 57344, "disk_gb": 320}
    # The preview-time prediction (the preflight places what is to be built as the provider would) and where the
    # provider put the VMs agree.
    predicted = outputs["preflight"]["readings"]["machine_sets"]
    placed = outputs["placement"][CLUSTER]
    assert (
        predicted[f"{CLUSTER}-control-planes"]["placement"]
        == placed["control_planes_per_node"]
        == {"foxtrot": 1, "golf": 1, "hotel": 1}
    )
    # (Workers go by free memory, which moves: only their number is the same.)
    assert sum(predicted[f"{CLUSTER}-workers"]["placement"].values()) == sum(placed["workers_per_node"].values()) == 2


def test_omni_holds_the_cni_and_its_manifests_pass_a_server_side_dry_run(estate):
    from kubernetes import config, utils

    [manifest] = canonical_cluster(estate.omni.export_template(CLUSTER))[1]
    assert manifest["mode"] == "full" and manifest["inline"]
    api = config.new_client_from_config_dict(estate.admin_kubeconfig())
    for document in manifest["inline"]:  # the API server checks each object as it would apply it, stores nothing
        utils.create_from_dict(api, document, dry_run="All")
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_up_created_the_provider_lxc_and_deployed_its_compose_stack(estate):
    config = estate.ct_config()
    assert (config["hostname"], config["cores"], config["memory"]) == ("omni-provider", 1, 1024)
    assert config["features"] == "keyctl=1,nesting=1" and config["dev0"] == "/dev/net/tun"
    assert "bridge=vmbr0" in config["net0"] and "ip=192.168.3.10/24" in config["net0"]
    modes = {p.name: p.stat().st_mode & 0o777 for p in estate.stack_dir.iterdir()}
    assert modes == {"compose.yml": 0o644, "config.yaml": 0o600, ".env": 0o600}
    compose = yaml.safe_load((estate.stack_dir / "compose.yml").read_text())
    assert compose["services"]["provider"]["image"].endswith(":v0.3.0")
    # Validated by the compose-spec schema where it runs, then started; the classes came after.
    assert estate.docker_history()[:2] == [["compose", "config", "--quiet"], ["compose", "up", "-d"]]


def test_up_installed_the_tailscale_operator_in_a_privileged_namespace(estate):
    namespace = estate.namespace()
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"
    release = estate.release()
    assert (release["chart"], release["version"], release["status"]) == ("tailscale-operator", "1.102.3", "deployed")
    assert release["values"]["operatorConfig"] == {"hostname": "talos-prod-01-operator"}
    # The OAuth pair reached the chart (from the stack's secrets, through a 0600 values file).
    assert release["values"]["oauth"] == {
        "clientId": estate.info["tailscale_oauth"]["client_id"],
        "clientSecret": estate.info["tailscale_oauth"]["client_secret"],
    }
    outputs = json.loads(estate.pulumi("stack", "output", "--json").stdout)
    assert outputs["tailscale_operator"] == {"cluster": CLUSTER, "status": "deployed"}
    # The release was awaited: its Deployment rolled out on the lab's node before `up` went on.
    from kubernetes import client, config

    apps = client.AppsV1Api(config.new_client_from_config_dict(estate.admin_kubeconfig()))
    assert apps.read_namespaced_deployment("operator", "tailscale").status.ready_replicas == 1


def test_the_operator_waits_for_the_ready_cluster_and_not_for_its_backup_watch(estate):
    """The release needs the cluster Ready (its resource's create ends there), not the reads after it: depending on
    the whole cluster component made it wait for the backup watch too (issue 22, a second of every `up`)."""
    deployment = json.loads(estate.pulumi("stack", "export").stdout)["deployment"]
    by_name = {r["urn"].rsplit("::", 1)[-1]: r for r in deployment["resources"]}
    [cluster_urn] = [r["urn"] for r in deployment["resources"] if r["type"] == CLUSTER_TYPE]
    watch_urn = by_name[f"{CLUSTER}-etcd-backups"]["urn"]
    provider = by_name["tailscale-operator-cluster"]
    assert cluster_urn in provider["dependencies"]
    assert watch_urn not in provider["dependencies"]


def test_no_change_preview_and_refresh_pass_expect_no_changes(estate):
    for command in (("preview", "--expect-no-changes"), ("refresh", "--expect-no-changes", "--yes")):
        proc = estate.pulumi(*command, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_second_up_changes_nothing_and_starts_nothing(estate):
    before = estate.docker_history()
    out = estate.pulumi("up", "--yes", "--skip-preview").stdout
    assert "created" not in out and "updated" not in out.split("Resources:")[1], out
    assert [argv for argv in estate.docker_history()[len(before) :] if argv[:2] == ["compose", "up"]] == []


def test_an_operator_value_change_shows_as_values_in_preview_and_is_applied(estate):
    estate.edit_spec(lambda d: d["tailscale_operator"].update(values={"operatorConfig": {"logging": "debug"}}))
    preview = estate.preview_json()
    [update] = [
        s for s in preview["steps"] if s["op"] == "update" and s["urn"].endswith(f"{RELEASE}::tailscale-operator")
    ]
    assert update["diffReasons"] == ["values"]
    assert not [s for s in preview["steps"] if s["op"] in ("replace", "create", "delete") and OPERATOR in s["urn"]]
    text = estate.pulumi("preview", "--diff").stdout.split(f"{RELEASE}::tailscale-operator]")[1]
    changed = [
        line.strip() for line in text.split("--outputs:--")[0].splitlines() if line.strip()[:1] in ("~", "+", "-")
    ]
    # The user's value shows by name; the values map is a secret (the OAuth pair is in it), so not its value.
    assert changed == ["~ values: {", "~ operatorConfig: {", "+ logging: [secret]"], changed
    estate.pulumi("up", "--yes", "--skip-preview")
    release = estate.release()
    assert release["values"]["operatorConfig"] == {"hostname": "talos-prod-01-operator", "logging": "debug"}
    assert release["version"] == "1.102.3" and release["status"] == "deployed"
    estate.edit_spec(lambda d: d["tailscale_operator"].update(values={}))
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.release()["values"]["operatorConfig"] == {"hostname": "talos-prod-01-operator"}
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_lxc_memory_changed_in_proxmox_is_drift_and_up_puts_it_back(estate):
    estate.pve().call("PUT", "nodes/foxtrot/lxc/200/config", memory=2048)
    drift = estate.pulumi("refresh", "--preview-only", "--expect-no-changes", "--diff", check=False)
    assert drift.returncode != 0 and "~ memory        : 1024 => 2048" in drift.stdout, drift.stdout
    estate.pulumi("refresh", "--yes", "--skip-preview")
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.ct_config()["memory"] == 1024


def test_memory_change_in_spec_is_an_update_of_that_field_only(estate):
    estate.set_spec_memory(16384)
    preview = estate.preview_json()
    [update] = _steps(preview, "update")
    assert not _steps(preview, "update", CLUSTER)
    old = update["oldState"]["inputs"]["provider_data"]
    new = update["newState"]["inputs"]["provider_data"]
    assert {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} == {"memory"}
    assert not _steps(preview, "replace") and not _steps(preview, "create")
    # What the operator reads: the one changed field, nothing else marked as changing.
    text = estate.pulumi("preview", "--diff").stdout
    resource_part = text.split("--outputs:--")[0]
    # The preflight re-checks capacity for the new size (its recorded spec changes too).
    class_part = resource_part.split(f"{CLASS_TYPE}::{CLASS}]")[1].split("~ pulumi-python:dynamic/")[0]
    changed = [line.strip() for line in class_part.splitlines() if line.strip().startswith("~ ")]
    assert changed == ["~ provider_data: {", "~ memory          : 8192 => 16384"], changed
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 16384  # (and `seed` puts 8192 back)


def test_worker_count_change_is_an_update_of_the_cluster_template(estate):
    estate.edit_spec(lambda d: d["clusters"][CLUSTER]["workers"][0].update(size=3))
    preview = estate.preview_json()
    [update] = _steps(preview, "update", CLUSTER)
    assert not _steps(preview, "replace", CLUSTER) and not _steps(preview, "update")
    old, new = update["oldState"]["inputs"]["template"], update["newState"]["inputs"]["template"]
    assert old.replace("  size: 2\n", "  size: 3\n") == new
    # While the cluster changes, its kubeconfig is unknown at preview: the engine cannot diff the operator's
    # resources on it, and shows them as updates (never replacements: the provider knows the cluster by name).
    assert not [s for s in preview["steps"] if OPERATOR in s["urn"] and s["op"] not in ("same", "update")]
    revisions = len(estate.helm("history", "tailscale-operator", "-n", "tailscale", "-o", "json").stdout.split("}"))
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_workers() == 3
    assert estate.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    # Applied, they were the same: the release was not upgraded.
    assert (
        len(estate.helm("history", "tailscale-operator", "-n", "tailscale", "-o", "json").stdout.split("}"))
        == revisions
    )


def test_refresh_reports_drift_made_out_of_band(estate):
    drifted = machine_class_document(CLASS, PROVIDER_ID, {**SEED_CONTROL_PLANE_DATA, "memory": 4096})
    estate.omni.apply(drifted)
    drift = estate.pulumi("refresh", "--preview-only", "--expect-no-changes", "--diff", check=False)
    assert drift.returncode != 0, drift.stdout
    assert "[diff: ~provider_data]" in drift.stdout or "~ provider_data" in drift.stdout
    assert "8192 => 4096" in drift.stdout
    estate.pulumi("refresh", "--yes", "--skip-preview")
    recorded = estate.class_in_state()
    assert recorded["outputs"]["provider_data"]["memory"] == 4096
    assert recorded["inputs"]["provider_data"]["memory"] == 4096
    # The spec still says 8192: the next preview wants to put it back.
    assert len(_steps(estate.preview_json(), "update")) == 1
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.live_memory() == 8192


def test_a_bad_spec_stops_preview_with_one_clear_message(estate):
    path = estate.project / "specs" / "omni.yaml"
    good = path.read_text()
    try:
        estate.set_spec_memory(1024)
        proc = estate.pulumi("preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "machine_classes.matrix-control-plane.provider_data.memory" in out
        assert "greater than or equal to 2048" in out and "Traceback" not in out
    finally:
        path.write_text(good)


def test_a_cluster_that_could_never_be_ready_stops_preview_and_registers_nothing(estate):
    path = estate.project / "specs" / "omni.yaml"
    good = path.read_text()
    try:
        estate.edit_spec(lambda d: d["clusters"][CLUSTER].pop("cni"))
        proc = estate.pulumi("preview", "--json", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "Traceback" not in out
        assert (
            "clusters.talos-prod-01.cni: a CNI: patch patches[0] (cilium-prep) sets cluster.network.cni.name: "
            "none and nothing installs one, so the nodes never become Ready and `up` would wait and fail"
        ) in out
        assert not [s for s in json.loads(proc.stdout or "{}").get("steps", []) if s["op"] != "same"]
    finally:
        path.write_text(good)


def test_preflight_stops_preview_with_every_problem_before_anything_is_applied(estate):
    path = estate.project / "specs" / "omni.yaml"
    good = path.read_text()
    try:
        estate.edit_spec(
            lambda d: d["machine_classes"]["matrix-worker"]["provider_data"].update(
                storage_selector='name == "nvme"', memory=32768
            )
        )
        proc = estate.pulumi("up", "--yes", "--skip-preview", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        for node in ("foxtrot", "golf", "hotel"):
            assert f"class matrix-worker on node {node}: no storage matches selector" in out
        assert "Traceback" not in out
        assert estate.live_workers() == 2  # nothing was applied: the class keeps its old size
        live = yaml.safe_load(
            estate.omni.get(MACHINE_CLASS_TYPE, "matrix-worker", "default")["spec"]["autoprovision"]["providerdata"]
        )
        assert live["memory"] == 16384
    finally:
        path.write_text(good)


def test_state_holds_no_secret_in_plain_text(estate):
    state = estate.state_text()
    for secret in estate.secrets() + [estate.kubeconfig_token()]:
        assert secret and secret not in state
    config = (estate.project / "Pulumi.lab.yaml").read_text()
    for secret in estate.secrets():
        assert secret not in config


def test_no_secret_in_logs_argv_or_files_left_behind(estate, tmp_path):
    """A verbose run that does real work (a change to apply, a refresh): the engine's log, the program's
    own output, every omnictl argv, every command run in the container, and every file the program left
    in its temporary directory hold no secret in plain text."""
    argv_log, temp = tmp_path / "omnictl-argv.log", tmp_path / "tmp"
    temp.mkdir()
    env = {"OMNI_SCALE_LAB_ARGV_LOG": str(argv_log), "TMPDIR": str(temp)}
    estate.set_spec_memory(9216)
    # -v=8: the most the engine logs without dumping property values; at -v=9 Pulumi's own RPC marshaling log
    # prints every value it marshals, secret config and provider outputs included (README: Faults).
    runs = [
        estate.stack.run("up", "--yes", "--skip-preview", "--logtostderr", "--logflow", "-v=8", extra_env=env),
        estate.stack.run("refresh", "--yes", "--skip-preview", "--logtostderr", "--logflow", "-v=8", extra_env=env),
    ]
    # The provider's own container logs too (what `docker compose logs` would show).
    logs = "".join(r.stdout + r.stderr for r in runs) + "".join(
        p.read_text(errors="replace") for p in (estate.lab_dir / "lxc" / "root" / ".docker-standin").glob("*.log")
    )
    assert "matrix-control-plane" in logs and len(logs) > 10_000  # the logs are the real, verbose thing
    argvs = argv_log.read_text()
    assert '"apply"' in argvs, [line[-120:] for line in argvs.splitlines()]
    commands = (estate.lab_dir / "lxc" / "commands.log").read_text()
    left = [p for p in temp.rglob("*") if p.is_file()]
    leftovers = "".join(p.read_text(errors="replace") for p in left)
    for secret in estate.secrets() + [estate.kubeconfig_token()]:
        for where, text in (
            ("engine and program logs", logs),
            ("omnictl argv", argvs),
            ("container commands", commands),
            ("temporary files", leftovers),
        ):
            assert secret not in text, f"a secret in the {where}"
    assert left == [], left  # every temporary file (kubeconfigs, values, templates) removed


def test_at_v9_an_oauth_value_shows_only_in_the_engines_own_rpc_log_and_never_in_argv(estate, tmp_path):
    """A release update at -v=9. The pulumi engine's RPC log (sdk/go/common/resource/plugin/rpc.go) prints every
    property it marshals at that level, secrets' contents included, past its own secret filter: no provider can
    prevent it (README: Secrets). Every other line, of the engine, the program and the plugin, holds none; the
    plugin's argv holds none either (the values reach it over gRPC)."""
    wrapper, argv_log = tmp_path / "bin" / "pulumi-resource-kubernetes", tmp_path / "plugin-argv.log"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {argv_log}\n'
        f'exec {PROJECT_ROOT / ".tools" / "bin" / "pulumi-resource-kubernetes"} "$@"\n'
    )
    wrapper.chmod(0o755)
    path = f"{wrapper.parent}:{estate.stack.env()['PATH']}"
    estate.edit_spec(lambda d: d["tailscale_operator"].update(values={"operatorConfig": {"logging": "debug"}}))
    run = estate.stack.run("up", "--yes", "--skip-preview", "--logtostderr", "-v=9", extra_env={"PATH": path})
    oauth = [estate.info["tailscale_oauth"]["client_id"], estate.info["tailscale_oauth"]["client_secret"]]
    lines = (run.stdout + run.stderr).splitlines()
    assert len(lines) > 1000 and any("helm.sh/v3:Release" in line and "Update" in line for line in lines)
    leaking = {log_message(line) for line in lines if any(secret in line for secret in oauth)}
    assert leaking <= ENGINE_RPC_LOG, leaking
    argvs = argv_log.read_text()
    assert "pulumi-resource-kubernetes" in argvs and not any(secret in argvs for secret in estate.secrets())


def test_at_v9_the_engines_own_log_files_hold_secrets_only_in_its_rpc_lines_and_stay_private(estate):
    """-v=9 with Pulumi's default log destination: the engine writes its log files into the temporary directory.
    The engine's RPC log prints every stack secret it hands the dynamic providers (each gets the whole stack config
    in Configure) and every secret input it unmarshals; nothing a provider does changes that (README: Secrets). So
    the lab keeps them private: the directory is 0700 and every file the run writes is 0600. Any other line of
    them, and everything the run prints, holds no secret."""
    temp = Path(estate.stack.env()["TMPDIR"])
    before = {p for p in temp.rglob("*") if p.is_file()}
    estate.set_spec_memory(9216)
    run = estate.stack.run("up", "--yes", "--skip-preview", "-v=9")
    written = [p for p in temp.rglob("*") if p.is_file() and p not in before]
    assert any(p.name.startswith("pulumi") and ".log." in p.name for p in written), written
    assert stat.S_IMODE(temp.stat().st_mode) == 0o700
    assert [p for p in written if stat.S_IMODE(p.stat().st_mode) & 0o077] == []
    secrets = estate.secrets()
    leaking = {
        log_message(line)
        for p in written
        for line in p.read_text(errors="replace").splitlines()
        if any(secret in line for secret in secrets)
    }
    # Were the engine to stop printing them (an upstream fix), this fails: then README: Secrets should say so.
    assert leaking == ENGINE_RPC_LOG or leaking == {"Marshaling property for RPC"}, leaking
    assert not any(secret in run.stdout + run.stderr for secret in secrets)


def test_the_provider_key_rotated_then_renewed_the_provider_runs_on_each_and_no_key_leaks(estate, tmp_path):
    """A rotation on purpose to a key of a quarter hour (the old key refused at once), then the spec's year again:
    the short key is then in the last third of its asked life, and `up` renews it. Each time the new key reaches the
    provider's .env, the provider restarts and registers with it. Both runs at -v=9, with omnictl's argv recorded."""
    account = provider_account(PROVIDER_ID)
    first = estate.managed_keys()[account]
    argv_log = tmp_path / "omnictl-argv.log"
    verbose = ("up", "--yes", "--skip-preview", "--logtostderr", "-v=9")

    def provider_starts() -> int:
        projects = json.loads((Path(estate.info["lxc"]["home"]) / ".docker-standin" / "state.json").read_text())
        return projects["projects"]["omni-provider"]["services"]["provider"]["starts"]

    def runs_on(key: str) -> None:
        assert f"OMNI_SERVICE_ACCOUNT_KEY={key}\n" in (estate.stack_dir / ".env").read_text()

    starts, heartbeat = provider_starts(), last_heartbeat(estate.omni, PROVIDER_ID)
    estate.edit_spec(lambda d: d["infra_provider"].update(key_ttl_days=0.01))
    estate.set_config("omni-scale:providerKeyRotation", "engine-test")
    rotate = estate.stack.run(*verbose, extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(argv_log)})
    short = estate.managed_keys()[account]
    assert short != first and key_facts(short).expires_at - datetime.now(UTC) < timedelta(minutes=15)
    runs_on(short)
    assert provider_starts() == starts + 1 and last_heartbeat(estate.omni, PROVIDER_ID) > heartbeat
    with pytest.raises(Unauthorized):  # the account was made again: every key it had is void
        omni_lab.lab_omnictl(estate.info["omni"], first).run("get", "infraproviderstatuses", "-n", "infra-provider")

    estate.edit_spec(lambda d: d["infra_provider"].update(key_ttl_days=365))
    preview = estate.preview_json()
    changing = {s["urn"].split("::")[-1]: s["op"] for s in preview["steps"] if s["op"] != "same"}
    assert changing == {f"infra-provider-{PROVIDER_ID}": "update", "omni-provider-compose": "update"}, changing
    starts, heartbeat = provider_starts(), last_heartbeat(estate.omni, PROVIDER_ID)
    renew = estate.stack.run(*verbose, extra_env={"OMNI_SCALE_LAB_ARGV_LOG": str(argv_log)})
    renewed = estate.managed_keys()[account]
    assert renewed != short and key_facts(renewed).expires_at - datetime.now(UTC) > timedelta(days=364)
    runs_on(renewed)
    assert provider_starts() == starts + 1 and last_heartbeat(estate.omni, PROVIDER_ID) > heartbeat
    # Omni revokes no single key of an account: the quarter-hour key works until it lapses on its own.
    omni_lab.lab_omnictl(estate.info["omni"], short).run("get", "infraproviderstatuses", "-n", "infra-provider")

    keys = (first, short, renewed)
    lines = (rotate.stdout + rotate.stderr + renew.stdout + renew.stderr).splitlines()
    assert len(lines) > 1000
    assert {log_message(line) for line in lines if any(k in line for k in keys)} <= ENGINE_RPC_LOG
    argvs = argv_log.read_text()
    assert "serviceaccount" in argvs and not any(k in argvs for k in keys)
    commands = (estate.lab_dir / "lxc" / "commands.log").read_text()
    outputs = json.dumps(estate.stack_outputs())
    state = estate.state_text()
    assert not any(k in text for k in keys for text in (commands, outputs, state))
    estate.refresh_preview_and_drift_see_no_difference()


def test_destroy_is_refused_while_protected_and_the_deliberate_path_works(estate):
    try:
        protected_destroy_refused_then_deliberate_destroy(estate)
    finally:
        estate.set_config("omni-scale:protect", "false")
        estate.pulumi("up", "--yes", "--skip-preview")  # the seed estate again, for any test after this one


def protected_destroy_refused_then_deliberate_destroy(estate):
    estate.set_config("omni-scale:protect", "true")
    estate.pulumi("up", "--yes", "--skip-preview")  # protection is a state-only change
    refused = estate.pulumi("destroy", "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert estate.live_workers() == 2 and estate.live_class() is not None
    assert estate.ct_config()["protection"] == 1 and estate.stack_dir.exists()
    # The documented deliberate act: unprotect in config, apply, then destroy.
    estate.set_config("omni-scale:protect", "false")
    estate.pulumi("up", "--yes", "--skip-preview")
    assert estate.ct_config()["protection"] == 0  # Proxmox's own flag follows the stack's protect
    estate.pulumi("destroy", "--yes", "--skip-preview")
    assert estate.ct_config() is None
    assert estate.release() is None
    # The lab's namespace controller empties the deleted namespace and lets it go.
    wait_until(
        lambda: estate.namespace() is None,
        None,
        "the tailscale namespace's deletion",
        estate.lab_dir / "kubernetes" / "kube-controller-manager.log",
    )
    assert estate.docker_history()[-1] == ["compose", "down"]
    assert not any("-v" in argv or "--volumes" in argv for argv in estate.docker_history())
    assert estate.live_class() is None
    assert estate.omni.run("get", "machineclasses", "-o", "yaml").strip() == ""
    assert estate.omni.run("get", "clusters", "-o", "yaml").strip() == ""
