"""omnictl for the lab stack, run by lab/bin/omnictl with the checkout's venv: the pinned omnictl against the
lab's real Omni, for every verb but those that need a booted Talos cluster, which no machine here can run
(no VM ever boots Talos in the lab):

- `cluster template status`, and `get` of the resources a cluster's readiness shows in (ClusterStatuses,
  MachineSetStatuses, KubernetesStatuses, ClusterMachineStatuses, MachineStatusSnapshots): answered from
  lab/omni_readiness.py's model, built by its rules from the real Omni's resources and fakepve's VMs;
- `kubeconfig`: the real omnictl makes the service-account kubeconfig (Omni creates the account), and
  the lab points it at its own Kubernetes API server (lab/kube_lab.py) with that server's token;
- `cluster kubernetes upgrade-pre-checks NAME --to V`: Omni's server needs the cluster's running Kubernetes and
  each control plane's Talos API for it, so the lab answers by Omni's rules (management.go
  KubernetesUpgradePreChecks): the cluster must exist and be ready (its Kubernetes version known), the path must
  be a patch or one minor up (`unsupported upgrade path: 1.34->1.36`), and then the checks pass (nothing printed,
  exit 0) unless the lab marks findings for the cluster (set_pre_check_findings), which fail them as Omni words it.

Everything else is exec'd unchanged. When OMNI_SCALE_LAB_ARGV_LOG names a file, every argv is appended
to it, so a test can prove no secret was ever on one.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lab import omni_readiness as readiness

ROOT = Path(__file__).resolve().parents[1]
REAL = str(ROOT / ".tools" / "bin" / "omnictl")
GLOBAL_FLAGS = {"--insecure-skip-tls-verify"}


def lab_dir() -> Path:
    return Path(os.environ.get("OMNI_SCALE_LAB_DIR") or ROOT / ".lab")


def flag(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def go_duration(text: str) -> float:
    """Seconds in a Go duration ("300s", "5m", "1m30s", "0")."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", text)) if text.strip("0") else 0.0


def template_status(globals_: list[str], args: list[str]) -> int:
    """Like the real verb: healthy now, or (with --wait D, default 5m) once healthy within D; else an error."""
    import yaml

    with open(flag(args, "-f", "--file")) as f:
        name = next(d["name"] for d in yaml.safe_load_all(f) if d and d.get("kind") == "Cluster")
    deadline = time.monotonic() + go_duration(flag(args, "--wait") or "5m")
    while True:
        try:
            model = readiness.build(name, REAL, globals_, lab_dir())
        except LookupError as exc:
            sys.stderr.write(f"Error: {exc}\n")
            return 1
        if model.ready or time.monotonic() >= deadline:
            sys.stdout.write(readiness.status_tree(model))
            if model.ready:
                return 0
            sys.stderr.write(
                "Error: cluster is not healthy\n"
                if not flag(args, "--wait") or go_duration(flag(args, "--wait")) == 0
                else "Error: context deadline exceeded\n"
            )
            return 1
        time.sleep(1)  # the real omnictl watches Omni's resources; the model has nothing to watch


def get_synthesized(globals_: list[str], kind: str, args: list[str]) -> int:
    """`get KIND [ID] [-l omni.sidero.dev/cluster=NAME] -o yaml` for the resources the lab models."""
    import yaml

    positional = [a for i, a in enumerate(args[2:], 2) if not a.startswith("-") and not args[i - 1].startswith("-")]
    resource_id = positional[0] if positional else None
    selector = dict(part.split("=", 1) for part in (flag(args, "-l", "--selector") or "").split(",") if "=" in part)
    if kind in ("ClusterStatuses", "KubernetesStatuses") and resource_id:
        clusters = [resource_id]
    elif readiness.LABEL_CLUSTER in selector:
        clusters = [selector[readiness.LABEL_CLUSTER]]
    else:
        listed = subprocess.run([REAL, *globals_, "get", "clusters", "-o", "yaml"], capture_output=True, text=True)
        clusters = [d["metadata"]["id"] for d in yaml.safe_load_all(listed.stdout) if d]
    found = []
    for name in clusters:
        try:
            found += readiness.resources(readiness.build(name, REAL, globals_, lab_dir()), kind)
        except LookupError:
            continue  # no such cluster: nothing of it to list
    found = [
        r
        for r in found
        if (resource_id is None or r["metadata"]["id"] == resource_id)
        and all(r["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    if resource_id is not None and not found:
        sys.stderr.write(
            f"Error: rpc error: code = NotFound desc = resource {kind}.omni.sidero.dev"
            f"(default/{resource_id}@undefined) doesn't exist\n"
        )
        return 1
    sys.stdout.write("---\n".join(yaml.safe_dump(r, sort_keys=False) for r in found))
    return 0


def kubeconfig(globals_: list[str], args: list[str]) -> int:
    import yaml

    made = subprocess.run([REAL, *globals_, *args], capture_output=True, text=True)
    sys.stdout.write(made.stdout)
    sys.stderr.write(made.stderr)
    if made.returncode != 0:
        return made.returncode
    target = next(a for a in reversed(args) if not a.startswith("-") and a != "kubeconfig")
    with open(target) as f:
        config = yaml.safe_load(f)
    access = json.loads((lab_dir() / "kubernetes" / "access.json").read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {
            "server": access["server"],
            "certificate-authority-data": access["certificate_authority_data"],
        }
    for entry in config["users"]:
        entry["user"] = {"token": access["token"]}
    fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f)
    return 0


PRE_CHECKS = (["cluster", "kubernetes", "upgrade-pre-checks"], ["cluster", "k", "upgrade-pre-checks"])


def findings_file(name: str) -> Path:
    return lab_dir() / "pre-check-findings" / name


def upgrade_pre_checks(globals_: list[str], args: list[str]) -> int:
    import yaml

    to = flag(args, "--to")
    names = [a for i, a in enumerate(args[3:], 3) if not a.startswith("-") and args[i - 1] != "--to"]
    if to is None:
        sys.stderr.write('Error: required flag(s) "to" not set\n')
        return 1
    [name] = names
    got = subprocess.run([REAL, *globals_, "get", "clusters", name, "-o", "yaml"], capture_output=True, text=True)
    cluster = yaml.safe_load(got.stdout) if got.returncode == 0 and got.stdout.strip() else None
    missing = (
        "Error: rpc error: code = Unknown desc = failed to get: resource "
        f"KubernetesUpgradeStatuses.omni.sidero.dev(default/{name}@undefined) doesn't exist\n"
    )
    if cluster is None:
        sys.stderr.write(missing)
        return 1
    try:
        ready = readiness.build(name, REAL, globals_, lab_dir()).ready
    except LookupError:
        ready = False
    if not ready:  # Omni learns the running version only once the cluster's Kubernetes is up
        sys.stderr.write("Error: rpc error: code = FailedPrecondition desc = current version is not known yet\n")
        return 1
    current = str(cluster["spec"]["kubernetesversion"]).lstrip("v")
    try:
        (cmaj, cmin), (tmaj, tmin) = (tuple(int(p) for p in v.lstrip("v").split(".")[:2]) for v in (current, to))
    except ValueError:
        sys.stderr.write(
            f"Error: rpc error: code = InvalidArgument desc = invalid upgrade path: error parsing to version: {to}\n"
        )
        return 1
    if cmaj != tmaj or tmin not in (cmin, cmin + 1):
        sys.stderr.write(
            f"Error: rpc error: code = InvalidArgument desc = unsupported upgrade path: {cmaj}.{cmin}->{tmaj}.{tmin}\n"
        )
        return 1
    marked = findings_file(name)
    if marked.exists():
        sys.stderr.write(
            "Error: checking for removed Kubernetes component flags\nchecking for removed Kubernetes API resource "
            f"versions\npre-checks failed: \n{marked.read_text()}"
        )
        return 1
    return 0


def main() -> int:
    args = sys.argv[1:]
    if os.environ.get("OMNI_SCALE_LAB_ARGV_LOG"):
        with open(os.environ["OMNI_SCALE_LAB_ARGV_LOG"], "a") as log:
            log.write(json.dumps(sys.argv) + "\n")
    globals_ = [a for a in args if a in GLOBAL_FLAGS]
    rest = [a for a in args if a not in GLOBAL_FLAGS]
    if rest[:3] == ["cluster", "template", "status"]:
        return template_status(globals_, rest)
    if rest[:1] == ["get"] and len(rest) > 1 and readiness.resource_kind(rest[1]):
        return get_synthesized(globals_, readiness.resource_kind(rest[1]), rest)
    if rest[:1] == ["kubeconfig"]:
        return kubeconfig(globals_, rest)
    if rest[:3] in PRE_CHECKS:
        return upgrade_pre_checks(globals_, rest)
    os.execv(REAL, [REAL, *args])


if __name__ == "__main__":
    sys.exit(main())
