"""The omnictl stand-in's cluster-template verbs, kubeconfig and provider heartbeat, driven as a client would.

Expected texts are those of the real omnictl v1.8.0: validate/render are compared with the real binary
(`.tools/bin/omnictl`, built by `make setup`); the others were captured from the real binary against an
in-memory COSI state server (see lab/OMNI_STANDIN.md, "How it was checked").
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OMNICTL = PROJECT_ROOT / "lab" / "bin" / "omnictl"
REAL_OMNICTL = PROJECT_ROOT / ".tools" / "bin" / "omnictl"
ENDPOINT = "https://127.0.0.1:50042"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

sys.path.insert(0, str(PROJECT_ROOT))
from lab import omni_standin  # noqa: E402

TEMPLATE = """\
kind: Cluster
name: lab
kubernetes:
  version: v1.31.1
talos:
  version: v1.8.3
patches:
  - name: cluster-dns
    inline:
      machine:
        network:
          nameservers: [127.0.0.53]
systemExtensions:
  - siderolabs/qemu-guest-agent
---
kind: ControlPlane
machineClass:
  name: cp-class
  size: 3
---
kind: Workers
name: workers
machineClass:
  name: worker-class
  size: 2
patches:
  - name: worker-labels
    inline:
      machine:
        nodeLabels:
          role: worker
systemExtensions:
  - siderolabs/iscsi-tools
"""
GPU_POOL = """\
---
kind: Workers
name: gpu
machineClass:
  name: worker-class
  size: 1
patches:
  - name: gpu-patch
    inline:
      machine:
        sysctls:
          vm.nr_hugepages: "1024"
"""
CREATED = """\
* creating Clusters.omni.sidero.dev(lab)
* creating ExtensionsConfigurations.omni.sidero.dev(schematic-lab)
* creating ExtensionsConfigurations.omni.sidero.dev(schematic-lab-workers)
* creating ConfigPatches.omni.sidero.dev(200-cluster-lab-cluster-dns)
* creating ConfigPatches.omni.sidero.dev(400-lab-workers-worker-labels)
* creating MachineSets.omni.sidero.dev(lab-control-planes)
* creating MachineSets.omni.sidero.dev(lab-workers)
"""
WORKERS_DIFF = """\
--- MachineSets.omni.sidero.dev(default/lab-workers)
+++ MachineSets.omni.sidero.dev(default/lab-workers)
@@ -19,7 +19,7 @@
   deletestrategyconfig: null
   machineallocation:
     name: worker-class
-    machinecount: 2
+    machinecount: 4
     allocationtype: 0
   upgradestrategy: 0
   upgradestrategyconfig: null
"""


class Lab:
    def __init__(self, root: Path):
        self.root, self.state = root, root / "omni"
        self.key = omni_standin.init_server(self.state, ENDPOINT)
        (root / "files").mkdir()

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNI", "SIDERO"))}
        env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), HOME=str(self.root / "home"),
                   OMNI_SCALE_LAB_DIR=str(self.root), OMNI_ENDPOINT=ENDPOINT, OMNI_SERVICE_ACCOUNT_KEY=self.key, **extra)
        return env

    def run(self, *args: str, binary: Path = OMNICTL) -> subprocess.CompletedProcess:
        return subprocess.run([str(binary), *args], env=self.env(), capture_output=True, text=True,
                              cwd=self.root / "files", timeout=60)

    def ok(self, *args: str) -> str:
        p = self.run(*args)
        assert (p.returncode, p.stderr) == (0, ""), (args, p.stderr)
        return p.stdout

    def write(self, name: str, text: str) -> str:
        (self.root / "files" / name).write_text(textwrap.dedent(text))
        return name

    def get(self, rtype: str, rid: str = "") -> list[dict]:
        text = TS.sub(lambda m: f"'{m.group(0)}'", self.ok("get", rtype, *([rid] if rid else []), "-o", "yaml"))
        return [d for d in yaml.safe_load_all(text) if d]

    def classes(self) -> None:
        docs = [{"metadata": {"namespace": "default", "type": "MachineClasses.omni.sidero.dev", "id": c},
                 "spec": {"matchlabels": [f"role={c}"]}} for c in ("cp-class", "worker-class")]
        self.ok("apply", "-f", self.write("classes.yaml", yaml.safe_dump_all(docs)))

    def synced(self, text: str = TEMPLATE, name: str = "cluster.yaml") -> str:
        self.classes()
        assert self.ok("cluster", "template", "sync", "-f", self.write(name, text)) == CREATED
        return name


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab(tmp_path)


def documents(text: str) -> list[dict]:
    """Rendered resources with the timestamps (render time) taken out."""
    return [d for d in yaml.safe_load_all(TS.sub("TS", text)) if d]


def test_validate_and_render_are_the_real_binarys_output(lab):
    good = lab.write("cluster.yaml", TEMPLATE)
    bad = lab.write("bad.yaml", TEMPLATE.replace("size: 2", "size: many").replace("v1.8.3", "1.8.3"))
    for args in (("cluster", "template", "validate", "-f", good), ("cluster", "template", "render", "-f", bad),
                 ("cluster", "template", "validate", "-f", bad), ("cluster", "t", "render", "-f", "missing.yaml"),
                 ("cluster", "template", "render", "--help")):
        for _ in range(3):  # render stamps the current second: retry if a run straddles a second boundary
            ours, real = lab.run(*args), lab.run(*args, binary=REAL_OMNICTL)
            if (ours.stdout, ours.stderr) == (real.stdout, real.stderr):
                break
        assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr), args
    rendered = documents(lab.ok("cluster", "template", "render", "-f", good))
    assert [(d["metadata"]["type"], d["metadata"]["id"]) for d in rendered] == [
        ("Clusters.omni.sidero.dev", "lab"), ("ConfigPatches.omni.sidero.dev", "200-cluster-lab-cluster-dns"),
        ("ExtensionsConfigurations.omni.sidero.dev", "schematic-lab"),
        ("MachineSets.omni.sidero.dev", "lab-control-planes"), ("MachineSets.omni.sidero.dev", "lab-workers"),
        ("ConfigPatches.omni.sidero.dev", "400-lab-workers-worker-labels"),
        ("ExtensionsConfigurations.omni.sidero.dev", "schematic-lab-workers")]


def test_offline_verbs_fail_clearly_without_the_real_binary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(omni_standin, "REAL_OMNICTL", tmp_path / "nope" / "omnictl")
    assert omni_standin.main(["cluster", "template", "validate", "-f", "x.yaml"]) == 1
    err = capsys.readouterr().err
    assert "the real omnictl v1.8.0" in err and "make setup" in err


def test_sync_creates_what_render_emits_and_resync_is_a_no_op(lab):
    name = lab.synced()
    rendered = documents(lab.ok("cluster", "template", "render", "-f", name))
    stored = {(d["metadata"]["type"], d["metadata"]["id"]): d for rtype in ("clusters", "configpatches",
              "extensionsconfigurations", "machinesets") for d in lab.get(rtype)}
    assert set(stored) == {(d["metadata"]["type"], d["metadata"]["id"]) for d in rendered}
    for doc in rendered:
        md, got = doc["metadata"], stored[doc["metadata"]["type"], doc["metadata"]["id"]]
        assert (got["spec"], got["metadata"].get("labels"), got["metadata"].get("annotations")) == \
            (doc["spec"], md.get("labels"), md.get("annotations"))
        assert got["metadata"]["version"] == 1
    assert lab.ok("cluster", "template", "sync", "-f", name) == ""
    assert lab.ok("cluster", "template", "diff", "-f", name) == ""
    assert {d["metadata"]["version"] for d in lab.get("machinesets")} == {1}
    assert lab.ok("get", "machinesets").splitlines()[0].split() == ["NAMESPACE", "TYPE", "ID", "VERSION"]


def test_changed_worker_size_diffs_and_updates(lab):
    name = lab.synced()
    bigger = lab.write("bigger.yaml", TEMPLATE.replace("size: 2", "size: 4"))
    p = lab.run("cluster", "template", "diff", "-f", bigger)
    assert (p.returncode, p.stdout, p.stderr) == (0, WORKERS_DIFF, "")
    out = lab.ok("cluster", "template", "sync", "-v", "-f", bigger)
    assert out == ("Processing 1 template file(s)\nSyncing template: bigger.yaml\n"
                   "* updating MachineSets.omni.sidero.dev(lab-workers)\n" + WORKERS_DIFF)
    workers = lab.get("machinesets", "lab-workers")[0]
    assert (workers["spec"]["machineallocation"]["machinecount"], workers["metadata"]["version"]) == (4, 2)
    assert lab.ok("cluster", "template", "sync", "--dry-run", "-f", name) == \
        "* updating (dry run) MachineSets.omni.sidero.dev(lab-workers)\n"
    assert lab.get("machinesets", "lab-workers")[0]["spec"]["machineallocation"]["machinecount"] == 4


def test_removed_worker_pool_is_torn_down(lab):
    name = lab.synced()
    with_gpu = lab.write("gpu.yaml", TEMPLATE + GPU_POOL)
    assert lab.ok("cluster", "template", "sync", "-f", with_gpu) == (
        "* creating ConfigPatches.omni.sidero.dev(400-lab-gpu-gpu-patch)\n"
        "* creating MachineSets.omni.sidero.dev(lab-gpu)\n")
    assert lab.ok("cluster", "template", "sync", "-f", name) == (
        "* tearing down MachineSets.omni.sidero.dev(lab-gpu)\n"
        "* destroyed MachineSets.omni.sidero.dev(lab-gpu)\n"
        "* tearing down ConfigPatches.omni.sidero.dev(400-lab-gpu-gpu-patch)\n"
        "* destroyed ConfigPatches.omni.sidero.dev(400-lab-gpu-gpu-patch)\n")
    assert [d["metadata"]["id"] for d in lab.get("machinesets")] == ["lab-control-planes", "lab-workers"]
    assert "400-lab-gpu-gpu-patch" not in lab.ok("get", "configpatches")


def test_sync_refuses_a_machine_set_whose_class_does_not_exist(lab):
    lab.classes()
    p = lab.run("cluster", "template", "sync", "-f", lab.write("c.yaml", TEMPLATE.replace("worker-class", "nope")))
    assert p.returncode == 1
    # like the real omnictl against Omni: what sorts before the refused MachineSet was already created
    assert p.stdout == CREATED
    assert p.stderr == ('Error: failed to sync template "c.yaml": rpc error: code = InvalidArgument desc = '
                        'failed to validate: 1 error occurred:\n\t* machine class with name "nope" doesn\'t exist\n\n\n')
    assert [d["metadata"]["id"] for d in lab.get("machinesets")] == ["lab-control-planes"]
    p = lab.run("delete", "machineclasses", "cp-class")
    assert p.returncode == 1 and "still in use by machine sets: lab-control-planes" in p.stderr


def status_tree(ready: bool) -> str:
    """What `omnictl cluster status` prints for the synced TEMPLATE (a regex: machine IDs vary)."""
    r, m = ("Ready", "RUNNING Ready") if ready else ("Not Ready", "BOOTING")
    phase, cp, w = ("RUNNING", 3, 2) if ready else ("SCALING_UP", 0, 0)
    sets = "Running" if ready else "ScalingUp"
    text = "\n".join([
        f'Cluster "lab" {phase} {r} ({cp + w}/5) (healthy/total)',
        "├── Kubernetes Upgrade Done ", "├── Talos Upgrade Done ",
        f'├── Control Plane "lab-control-planes" {sets} {r} ({cp}/3)',
        f"│   ├── Load Balancer {r}", f"│   ├── Status Checks {'OK' if ready else 'Failing: [Etcd]'}",
        f'│   ├── Machine "ID" {m}', f'│   ├── Machine "ID" {m}', f'│   └── Machine "ID" {m}',
        f'└── Workers "lab-workers" {sets} {r} ({w}/2)', f'    ├── Machine "ID" {m}', f'    └── Machine "ID" {m}', ""])
    return re.escape(text).replace("ID", UUID)


def test_status_ready_by_default_and_not_ready_times_out(lab):
    name = lab.synced()
    out = lab.ok("cluster", "status", "lab")
    assert re.fullmatch(status_tree(True), out), out
    assert lab.ok("cluster", "template", "status", "-f", name, "--wait", "0") == out
    assert lab.ok("cluster", "status", "lab", "--quiet") == ""
    omni_standin.set_cluster_ready(lab.state, "lab", False)
    p = lab.run("cluster", "status", "lab", "--wait", "0")
    assert (p.returncode, p.stderr) == (1, "Error: cluster is not healthy\n")
    assert re.fullmatch(status_tree(False), p.stdout), p.stdout
    started = time.monotonic()
    p = lab.run("cluster", "template", "status", "-f", name, "-w", "300ms", "-q")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "Error: context deadline exceeded\n")
    assert 0.3 <= time.monotonic() - started < 5
    p = lab.run("cluster", "status", "nope", "-w", "100ms")
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "Error: context deadline exceeded\n")
    # a cluster that becomes ready while status waits (the server-side wait polls every 0.1 s)
    waiting = subprocess.Popen([str(OMNICTL), "cluster", "status", "lab", "--wait", "30s"], env=lab.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    omni_standin.set_cluster_ready(lab.state, "lab", True)
    stdout, stderr = waiting.communicate(timeout=30)
    assert (waiting.returncode, stderr) == (0, "")
    assert re.fullmatch(status_tree(False) + status_tree(True), stdout), stdout


def test_export_round_trips_and_shows_out_of_band_changes(lab):
    name = lab.synced()
    lab.ok("cluster", "template", "export", "-c", "lab", "-o", "exported.yaml")
    exported = lab.root / "files" / "exported.yaml"
    assert stat.S_IMODE(exported.stat().st_mode) & 0o600 == 0o600
    text = exported.read_text()
    assert text.startswith("kind: Cluster\nsystemExtensions:\n  - siderolabs/qemu-guest-agent\nname: lab\n")
    assert "  - idOverride: 200-cluster-lab-cluster-dns\n    annotations:\n      name: cluster-dns\n    inline: |\n" in text
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["Cluster", "ControlPlane", "Workers"]
    # the exported template renders to the same resources as the one that was synced
    assert documents(lab.ok("cluster", "template", "render", "-f", "exported.yaml")) == \
        documents(lab.ok("cluster", "template", "render", "-f", name))
    assert lab.ok("cluster", "template", "sync", "-f", "exported.yaml") == ""
    p = lab.run("cluster", "template", "export", "-c", "lab", "-o", "exported.yaml")
    assert (p.returncode, p.stderr) == (1, "Error: failed to open output file: open exported.yaml: file exists\n")
    # out-of-band changes (omnictl apply) to the stored MachineSet and ConfigPatch show up in the export
    workers, patch = lab.get("machinesets", "lab-workers")[0], lab.get("configpatches", "400-lab-workers-worker-labels")[0]
    for doc in (workers, patch):
        for kv in ("labels", "annotations"):
            doc["metadata"][kv] = {k: v or "" for k, v in (doc["metadata"].get(kv) or {}).items()}
    workers["spec"]["machineallocation"]["machinecount"] = 5
    patch["spec"]["data"] = "machine:\n  nodeLabels:\n    role: big-worker\n"
    lab.ok("apply", "-f", lab.write("oob.yaml", yaml.safe_dump_all([workers, patch])))
    text = lab.ok("cluster", "template", "export", "--cluster", "lab", "-o", "exported.yaml", "--force")
    workers_doc = list(yaml.safe_load_all(exported.read_text()))[2]
    assert workers_doc["machineClass"] == {"name": "worker-class", "size": 5}
    assert workers_doc["patches"][0]["inline"] == "machine:\n  nodeLabels:\n    role: big-worker\n"
    assert lab.ok("cluster", "template", "diff", "-f", "exported.yaml") == ""
    p = lab.run("cluster", "template", "export", "-c", "nope")
    assert p.stderr == ('Error: error getting cluster "nope": rpc error: code = NotFound desc = resource '
                        "Clusters.omni.sidero.dev(default/nope@undefined) doesn't exist\n")


def test_template_delete_removes_every_resource_of_the_cluster(lab):
    name = lab.synced()
    lab.ok("cluster", "template", "sync", "-f", lab.write("gpu.yaml", TEMPLATE + GPU_POOL))
    assert lab.ok("cluster", "template", "delete", "-f", name, "--destroy-disconnected-machines") == (
        "* tearing down ExtensionsConfigurations.omni.sidero.dev(schematic-lab)\n"
        "* tearing down ExtensionsConfigurations.omni.sidero.dev(schematic-lab-workers)\n"
        "* destroyed ExtensionsConfigurations.omni.sidero.dev(schematic-lab)\n"
        "* destroyed ExtensionsConfigurations.omni.sidero.dev(schematic-lab-workers)\n"
        "* tearing down Clusters.omni.sidero.dev(lab)\n* destroyed Clusters.omni.sidero.dev(lab)\n")
    for rtype in ("clusters", "machinesets", "configpatches", "extensionsconfigurations"):
        assert lab.get(rtype) == [], rtype
    assert len(lab.get("machineclasses")) == 2
    assert lab.ok("cluster", "template", "delete", "-f", name) == ""


def test_kubeconfig_for_a_service_account(lab):
    lab.synced()
    out = lab.root / "files" / "kube" / "config"
    p = lab.run("kubeconfig", "-c", "lab", "--service-account", "--user", "ci", "--merge=false", str(out))
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = yaml.safe_load(out.read_text())
    assert config["current-context"] == "lab-lab-ci"
    assert config["clusters"] == [{"name": "lab-lab-ci", "cluster": {"server": "https://127.0.0.1:6443"}}]
    assert config["contexts"][0]["context"] == {"cluster": "lab-lab-ci", "namespace": "default", "user": "lab-lab-ci"}
    token = config["users"][0]["user"]["token"]
    assert len(token) >= 32
    p = lab.run("kubeconfig", "-c", "lab", "--service-account", "--user", "ci", "--merge=false", str(out))
    assert p.stderr == f'Error: kubeconfig file already exists, use --force to overwrite: "{out}"\n'
    lab.ok("kubeconfig", "-c", "lab", "--service-account", "--user", "ci", "--merge=false", "-f", str(out))
    assert yaml.safe_load(out.read_text())["users"][0]["user"]["token"] != token
    for args, err in ((("-c", "lab", "--user", "ci", "x"), "Error: the lab stand-in supports only --service-account "
                                                          "kubeconfigs (OIDC needs a browser)\n"),
                      (("-c", "nope", "--service-account", "--user", "ci", "y"), 'Error: cluster not found: "nope"\n'),
                      (("-c", "lab", "--service-account", "z"),
                       "Error: --user flag is required when --service-account is set to true\n"),
                      (("--service-account",), 'Error: required flag(s) "cluster" not set\n')):
        p = lab.run("kubeconfig", *args)
        assert (p.returncode, p.stderr) == (1, err), args
    assert not (lab.root / "files" / "x").exists()


def test_heartbeat_writes_the_provider_health_status(lab):
    at = dt.datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)
    omni_standin.heartbeat(lab.state, "Proxmox", at=at)
    status = lab.get("infraproviderhealthstatuses", "Proxmox")[0]
    assert status["metadata"]["namespace"] == "infra-provider-ephemeral"
    assert status["metadata"]["owner"] == "Proxmox.ProviderHealthStatusController"
    assert status["spec"] == {"lastheartbeattimestamp": {"seconds": int(at.timestamp()), "nanos": 250000000},
                              "error": ""}
    omni_standin.heartbeat(lab.state, "Proxmox", error="proxmox API unreachable")
    status = lab.get("infraproviderhealthstatuses", "Proxmox")[0]
    assert (status["metadata"]["version"], status["spec"]["error"]) == (2, "proxmox API unreachable")
    assert abs(status["spec"]["lastheartbeattimestamp"]["seconds"] - time.time()) < 60
    row = lab.ok("get", "infraproviderhealthstatuses").splitlines()[1]
    assert row.split()[:4] == ["infra-provider-ephemeral", "InfraProviderHealthStatus", "Proxmox", "2"]
    assert row.endswith("proxmox API unreachable")


def test_cluster_argv_errors_match_omnictl(lab):
    lab.write("cluster.yaml", TEMPLATE)
    for args, err in ((("cluster", "template", "sync", "-f", "cluster.yaml", "extra"),
                       'Error: unknown command "extra" for "omnictl cluster template sync"\n'),
                      (("cluster", "template", "sync"), 'Error: required flag(s) "file" not set\n'),
                      (("cluster", "template", "export"), 'Error: required flag(s) "cluster" not set\n'),
                      (("cluster", "template", "sync", "-f", "cluster.yaml", "--allowed-dir", "/nonexistent"),
                       "Error: open /nonexistent: no such file or directory\n"),
                      (("cluster", "template", "sync", "-f", "nope.yaml"), 'Error: failed to discover template files '
                       'from "nope.yaml": stat nope.yaml: no such file or directory\n'),
                      (("cluster", "status"), "Error: accepts 1 arg(s), received 0\n"),
                      (("cluster", "status", "lab", "--wait", "soon"),
                       'Error: invalid argument "soon" for "-w, --wait" flag: time: invalid duration "soon"\n'),
                      (("kubeconfig", "a", "b", "-c", "x"), "Error: accepts at most 1 arg(s), received 2\n")):
        p = lab.run(*args)
        assert (p.returncode, p.stderr) == (1, err), args
    helps = [("cluster", "template", "sync", "--help"), ("cluster",), ("kubeconfig", "-h")]
    for args in helps:
        assert lab.run(*args).stdout == lab.run(*args, binary=REAL_OMNICTL).stdout != "", args
    # every flag the stand-in accepts is a flag of the real command
    for path, flags in [(("cluster", *key), f + (omni_standin._TEMPLATE_FLAGS if key[0] == "template" else []))
                        for key, f in omni_standin.CLUSTER_FLAGS.items()] + \
            [(("kubeconfig",), omni_standin.COMMAND_FLAGS["kubeconfig"])]:
        text = lab.run(*path, "--help", binary=REAL_OMNICTL).stdout
        for flag in flags:
            short = rf"-{flag.short}, " if flag.short else ""
            assert re.search(rf"^\s+{short}--{re.escape(flag.name)}\b", text, re.M), (path, flag.name)
