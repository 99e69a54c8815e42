"""A cluster's version changes as planned steps: what changes (Talos, then Kubernetes), whether Omni allows it, and
the template of each step.

Omni takes a Talos and a Kubernetes bump in one sync and orders nothing (its Kubernetes upgrade does not wait for
the Talos rollout). The operator's rule is one at a time with the cluster healthy between them, so `up` syncs twice:
first the new Talos with the old Kubernetes, then the new Kubernetes. What Omni refuses, checked before anything is
applied (Omni v1.7.0, internal/backend/runtime/omni/state_validation.go validateVersions):
- a Talos version Omni does not offer (its TalosVersions, from the image factory);
- a Kubernetes version not among the new Talos version's compatible ones (TalosVersion.compatiblekubernetesversions);
- a Kubernetes change other than a patch or one minor up (go-kubernetes upgrade.Path);
- a Talos minor below the one the cluster was made with (not checked here: Omni says it in its own words).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from components.omni.render import dump_yaml

TALOS, KUBERNETES = "talos", "kubernetes"


@dataclass(frozen=True)
class VersionChange:
    component: str  # TALOS or KUBERNETES
    old: str  # as the template writes it, with its v
    new: str

    def __str__(self) -> str:
        return f"{self.component} {self.old} → {self.new}"


def _cluster_doc(docs: list[dict]) -> dict:
    return next(d for d in docs if d.get("kind") == "Cluster")


def template_versions(template: str) -> dict[str, str]:
    cluster = _cluster_doc([d for d in yaml.safe_load_all(template) if d])
    return {TALOS: str(cluster[TALOS]["version"]), KUBERNETES: str(cluster[KUBERNETES]["version"])}


def planned_changes(old_template: str | None, new_template: str) -> list[VersionChange]:
    """The version changes from the applied template to the wanted one, Talos first."""
    if not old_template:
        return []
    old, new = template_versions(old_template), template_versions(new_template)
    return [VersionChange(c, old[c], new[c]) for c in (TALOS, KUBERNETES) if old[c] != new[c]]


def with_versions(template: str, **versions: str) -> str:
    """The template with its Cluster document's versions set (talos=..., kubernetes=...); the rest as it is."""
    docs = [d for d in yaml.safe_load_all(template) if d]
    cluster = _cluster_doc(docs)
    for component, version in versions.items():
        cluster[component]["version"] = version
    return "---\n".join(dump_yaml(d) for d in docs)


def _minor(version: str) -> tuple[int, int]:
    major, minor, *_ = version.lstrip("v").split(".")
    return int(major), int(minor)


def kubernetes_path_problem(change: VersionChange) -> str | None:
    """Omni moves Kubernetes a patch (up or down) or one minor up at a time."""
    (old_major, old_minor), (new_major, new_minor) = _minor(change.old), _minor(change.new)
    if old_major == new_major and new_minor in (old_minor, old_minor + 1):
        return None
    if (new_major, new_minor) < (old_major, old_minor):
        return f"kubernetes {change.old} → {change.new} goes back a minor version, which Omni does not do"
    return (
        f"kubernetes {change.old} → {change.new} skips a minor version: Omni upgrades Kubernetes one minor at a "
        f"time (to v{old_major}.{old_minor + 1}.x first, in its own `up`)"
    )


@dataclass(frozen=True)
class OfferedVersions:
    """What Omni offers: each Talos version (no v) with the Kubernetes versions it runs; every Kubernetes one."""

    talos: dict[str, list[str]]
    kubernetes: set[str]

    @staticmethod
    def from_documents(talos_docs: list[dict], kubernetes_docs: list[dict]) -> OfferedVersions:
        return OfferedVersions(
            {
                str(d["spec"]["version"]): [str(k) for k in d["spec"].get("compatiblekubernetesversions") or []]
                for d in talos_docs
            },
            {str(d["spec"]["version"]) for d in kubernetes_docs},
        )


def _listed(versions) -> str:
    return ", ".join(f"v{v}" for v in sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))) or "none"


def plan_problems(changes: list[VersionChange], wanted: dict[str, str], offered: OfferedVersions) -> list[str]:
    """Why Omni would refuse the planned steps, one line each; none when it would take them."""
    problems: list[str] = []
    for change in changes:
        if change.component == KUBERNETES:
            path = kubernetes_path_problem(change)
            if path:
                return [path]  # the first thing to fix; what Omni offers is beside the point until then
    talos, kubernetes = wanted[TALOS].lstrip("v"), wanted[KUBERNETES].lstrip("v")
    if any(c.component == TALOS for c in changes) and talos not in offered.talos:
        problems.append(f"talos {wanted[TALOS]} is not a version Omni offers (it offers {_listed(offered.talos)})")
    elif any(c.component == KUBERNETES for c in changes) and kubernetes not in offered.kubernetes:
        problems.append(
            f"kubernetes {wanted[KUBERNETES]} is not a version Omni offers (it offers {_listed(offered.kubernetes)})"
        )
    elif talos in offered.talos and kubernetes not in offered.talos[talos]:
        problems.append(
            f"kubernetes {wanted[KUBERNETES]} does not run on talos {wanted[TALOS]} (it runs "
            f"{_listed(offered.talos[talos])})"
        )
    # The first step runs the new Talos with the old Kubernetes: that pair must be one Omni takes too.
    talos_change = next((c for c in changes if c.component == TALOS), None)
    kubernetes_change = next((c for c in changes if c.component == KUBERNETES), None)
    if talos_change and kubernetes_change and talos in offered.talos:
        old_kubernetes = kubernetes_change.old.lstrip("v")
        if old_kubernetes not in offered.talos[talos]:
            problems.append(
                f"the first step, talos {wanted[TALOS]} with kubernetes {kubernetes_change.old}, is not a pair Omni "
                f"runs (talos {wanted[TALOS]} runs {_listed(offered.talos[talos])}): change them in two `up`s"
            )
    return problems


def steps(changes: list[VersionChange], new_template: str) -> list[tuple[VersionChange, str]]:
    """The templates to sync in order: with a Talos and a Kubernetes change, first the new Talos with the old
    Kubernetes, then the wanted template."""
    kubernetes_change = next((c for c in changes if c.component == KUBERNETES), None)
    talos_change = next((c for c in changes if c.component == TALOS), None)
    if talos_change and kubernetes_change:
        return [
            (talos_change, with_versions(new_template, kubernetes=kubernetes_change.old)),
            (kubernetes_change, new_template),
        ]
    return [(changes[0], new_template)] if changes else []
