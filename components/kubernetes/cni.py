"""The cluster's CNI as code: Cilium's chart rendered with `helm template` into the Omni cluster template's
`kubernetes.manifests`, which Omni applies as soon as the control plane's Kubernetes API answers, before any node
is Ready (a node is Ready only once a CNI runs, and Omni's readiness waits for every node).

The manifests are applied in mode `full`: Omni keeps them as rendered, so a new chart version or value is
rolled out by the next `up`, and an object dropped from the chart is removed. `one-time` would apply each object
once and never again: a chart upgrade would change nothing that already exists (a half-upgraded Cilium). `full`
fights anything else that edits those objects (a `cilium upgrade` or `helm upgrade` by hand): change Cilium here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from components.core.spec import CiliumSpec, ClusterSpec
from components.kubernetes.helm import merge_values, run_helm

MANIFEST_MODE = "full"
CILIUM_NAMESPACE = "kube-system"
# What Cilium needs on Talos (Talos's own guide), under the user's values, which win.
CILIUM_TALOS_VALUES = {
    # Talos runs no kube-proxy here (the cluster patch disables it): Cilium serves Services, and reaches the API
    # through KubePrism, Talos's on-node API load balancer (localhost:7445, on by default).
    "kubeProxyReplacement": True,
    "k8sServiceHost": "localhost",
    "k8sServicePort": 7445,
    "ipam": {"mode": "kubernetes"},
    # Talos mounts the cgroup2 hierarchy itself, and its kernel takes no modules from pods (no SYS_MODULE).
    "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
    "securityContext": {
        "capabilities": {
            "ciliumAgent": [
                "CHOWN",
                "KILL",
                "NET_ADMIN",
                "NET_RAW",
                "IPC_LOCK",
                "SYS_ADMIN",
                "SYS_RESOURCE",
                "DAC_OVERRIDE",
                "FOWNER",
                "SETGID",
                "SETUID",
            ],
            "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
        }
    },
    # Omni's SideroLink runs at MTU 1280, which Cilium's detection can pick up; the operator's estate runs 1450
    # (with the detected MTU Tailscale ingress crawled at about 22 KB/s).
    "MTU": 1450,
    # The chart's default makes new Hubble certificates at every render, a change at every preview: a CronJob
    # makes them in the cluster instead.
    "hubble": {"tls": {"auto": {"method": "cronJob"}}},
}


def cilium_values(cilium: CiliumSpec) -> dict:
    return merge_values(CILIUM_TALOS_VALUES, cilium.values.model_dump(mode="json", exclude_none=True))


def cluster_manifests(cluster: ClusterSpec, helm: str, repository: str | None = None) -> list[dict]:
    """The kubernetes.manifests of the cluster's template: [] without a `cni`. repository: a mirror of the
    spec's chart repository (the lab serves its own)."""
    if cluster.cni is None:
        return []
    cilium = cluster.cni.cilium
    chart = cached_chart(repository or cilium.chart_repository, "cilium", cilium.chart_version, helm)
    rendered = run_helm(
        helm, "template", "cilium", str(chart), "--namespace", CILIUM_NAMESPACE, values=cilium_values(cilium)
    )
    return [{"name": "cilium", "mode": MANIFEST_MODE, "inline": [d for d in yaml.safe_load_all(rendered) if d]}]


def chart_cache() -> Path:
    """Where charts are kept, per repository and version: beside the toolchain's cache, outside the clone
    (OMNI_SCALE_CHART_CACHE, if set, instead)."""
    if os.environ.get("OMNI_SCALE_CHART_CACHE"):
        return Path(os.environ["OMNI_SCALE_CHART_CACHE"])
    base = (
        os.environ.get("OMNI_SCALE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omni-scale"
    )
    return Path(base) / "charts"


def cache_slot(repository: str) -> Path:
    return chart_cache() / hashlib.sha256(repository.encode()).hexdigest()[:16]


def cached_chart(repository: str, name: str, version: str, helm: str) -> Path:
    """The chart's package, fetched once per repository and version (a mirror's chart is never taken for the
    original's: the lab serves stand-ins under the real names and versions)."""
    directory = cache_slot(repository)
    target = directory / f"{name}-{version}.tgz"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".pull-") as tmp:
        run_helm(helm, "pull", name, "--repo", repository, "--version", version, "--destination", tmp)
        shutil.move(str(Path(tmp) / f"{name}-{version}.tgz"), target)  # within one directory: a rename
    return target
