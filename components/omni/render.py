"""Pure renderers: from the spec model to the exact documents Omni receives.

Byte-stable (sorted keys where order does not matter) so that diffs stay quiet.
"""

from __future__ import annotations

import yaml

from components.core.spec import machine_set_id

MACHINE_CLASS_TYPE = "MachineClasses.omni.sidero.dev"
DEFAULT_NAMESPACE = "default"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (`|`), the way operators write providerdata by hand."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump_yaml(document: dict) -> str:
    return yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)


def providerdata_yaml(provider_data: dict) -> str:
    """providerdata travels to Omni as a YAML string inside the class spec."""
    return yaml.safe_dump(provider_data, sort_keys=True, default_flow_style=False)


def machine_class_document(class_id: str, provider_id: str, provider_data: dict) -> dict:
    return {
        "metadata": {"namespace": DEFAULT_NAMESPACE, "type": MACHINE_CLASS_TYPE, "id": class_id},
        "spec": {
            "autoprovision": {
                "providerid": provider_id,
                "providerdata": providerdata_yaml(provider_data),
            }
        },
    }


def render_machine_class(class_id: str, provider_id: str, provider_data: dict) -> str:
    return dump_yaml(machine_class_document(class_id, provider_id, provider_data))


def _sorted_deep(value):
    """Mappings with sorted keys, all the way down: patch contents render the same every time."""
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def _patches(patches) -> list[dict]:
    return [{"name": p.name, "inline": _sorted_deep(p.inline)} for p in patches]


def _pool_document(kind: str, pool, size, name: str | None = None) -> dict:
    doc: dict = {"kind": kind}
    if name is not None:
        doc["name"] = name
    if pool.labels:
        doc["labels"] = dict(sorted(pool.labels.items()))
    doc["machineClass"] = {"name": pool.machine_class, "size": size}
    if pool.patches:
        doc["patches"] = _patches(pool.patches)
    if pool.system_extensions:
        doc["systemExtensions"] = list(pool.system_extensions)
    return doc


def cluster_template_documents(name: str, cluster) -> list[dict]:
    """The multi-document Omni cluster template (kind Cluster, ControlPlane, Workers...)."""
    head: dict = {"kind": "Cluster", "name": name}
    if cluster.labels:
        head["labels"] = dict(sorted(cluster.labels.items()))
    head["kubernetes"] = {"version": cluster.kubernetes_version}
    head["talos"] = {"version": cluster.talos_version}
    if cluster.patches:
        head["patches"] = _patches(cluster.patches)
    if cluster.system_extensions:
        head["systemExtensions"] = list(cluster.system_extensions)
    docs = [head, _pool_document("ControlPlane", cluster.control_plane, cluster.control_plane.size)]
    docs += [_pool_document("Workers", pool, pool.size, name=pool.name) for pool in cluster.workers]
    return docs


def dump_documents(documents: list[dict]) -> str:
    return "---\n".join(dump_yaml(doc) for doc in documents)


def render_cluster_template(name: str, cluster) -> str:
    return dump_documents(cluster_template_documents(name, cluster))


_KIND_ORDER = {"Cluster": 0, "ControlPlane": 1, "Workers": 2, "Machine": 3}


def _drop_empty(value):
    if isinstance(value, dict):
        kept = {k: _drop_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


# Omni's rule for a template patch's ConfigPatch id (client/pkg/template/internal/models/patch.go): the i-th
# patch of a list gets weight base + i and the id "%03d-<prefix>-<name>", the prefix being the cluster's
# ("cluster-<cluster>") or the machine set's id ("<cluster>-control-planes", "<cluster>-<pool>"); `export`
# writes every id back as `idOverride`, with the patch's name as an annotation.
PATCH_BASE_WEIGHT = {"Cluster": 200, "ControlPlane": 400, "Workers": 400}


def _patch_prefix(cluster: str, doc: dict) -> str:
    if doc.get("kind") == "Cluster":
        return f"cluster-{cluster}"
    return machine_set_id(cluster, None if doc.get("kind") == "ControlPlane" else doc.get("name", "workers"))


def template_set_ids(cluster: str, template: str) -> list[str]:
    """The ids of the machine sets a cluster template makes (control planes first, as written)."""
    return [
        _patch_prefix(cluster, doc)
        for doc in yaml.safe_load_all(template)
        if doc and doc.get("kind") in ("ControlPlane", "Workers")
    ]


def default_patch_id(cluster: str, doc: dict, index: int, patch_name: str) -> str:
    """The ConfigPatch id Omni gives the index-th named patch of a template document."""
    return f"{PATCH_BASE_WEIGHT.get(str(doc.get('kind')), 400) + index:03d}-{_patch_prefix(cluster, doc)}-{patch_name}"


def _canonical_patch(cluster: str, doc: dict, index: int, patch: dict) -> dict:
    patch = dict(patch)
    annotations = dict(patch.pop("annotations", None) or {})
    if "name" not in patch and "name" in annotations:
        patch["name"] = annotations.pop("name")
    if annotations:
        patch["annotations"] = annotations
    if patch.get("idOverride") == default_patch_id(cluster, doc, index, patch.get("name", "")):
        del patch["idOverride"]
    if isinstance(patch.get("inline"), str):
        patch["inline"] = yaml.safe_load(patch["inline"])
    if "inline" in patch:
        patch["inline"] = _sorted_deep(patch["inline"])
    return {k: patch[k] for k in ("name", "idOverride", "annotations", "inline", "file") if k in patch}


_DOC_ORDER = [
    "kind",
    "name",
    "labels",
    "annotations",
    "kubernetes",
    "talos",
    "features",
    "machineClass",
    "machines",
    "patches",
    "systemExtensions",
    "kernelArgs",
]


def canonical_template(text: str) -> str:
    """One form for a template however it was written or exported: documents in kind order
    (workers by name), empty fields dropped, patches as {name, inline mapping} with the ids
    omnictl would give them anyway left out. Two templates that Omni would turn into the same
    cluster compare equal; any real difference remains."""
    documents = [_drop_empty(d) for d in yaml.safe_load_all(text) if d]
    cluster = next((d.get("name", "") for d in documents if d.get("kind") == "Cluster"), "")
    canonical = []
    for doc in documents:
        if doc.get("kind") == "Workers":
            doc.setdefault("name", "workers")  # export leaves the default pool's name out
        if "patches" in doc:
            # Export lists patches by id, which orders them by weight: their written order.
            doc["patches"] = [_canonical_patch(cluster, doc, i, p) for i, p in enumerate(doc["patches"])]
        ordered = {k: doc[k] for k in _DOC_ORDER if k in doc}
        ordered.update({k: doc[k] for k in sorted(doc) if k not in ordered})
        ordered = {k: (v if k == "patches" else _sorted_deep(v)) for k, v in ordered.items()}
        canonical.append(ordered)
    canonical.sort(key=lambda d: (_KIND_ORDER.get(str(d.get("kind")), 9), str(d.get("name", ""))))
    return dump_documents(canonical)


def with_manifests(template: str, manifests: list[dict]) -> str:
    """The template with kubernetes.manifests in its Cluster document: what Omni receives."""
    if not manifests:
        return template
    documents = [d for d in yaml.safe_load_all(template) if d]
    head = next(d for d in documents if d.get("kind") == "Cluster")
    head.setdefault("kubernetes", {})["manifests"] = manifests
    return dump_documents(documents)


def canonical_manifests(manifests: list[dict] | None) -> list[dict]:
    """Each manifest as {name, mode, inline: documents with sorted keys}, as written or as exported (export adds
    the name as an annotation and may leave out a default)."""
    out = []
    for manifest in manifests or []:
        annotations = dict(manifest.get("annotations") or {})
        name = manifest.get("name") or annotations.get("name", "")
        if annotations.get("name") == name:
            del annotations["name"]  # Omni keeps the name as an annotation too
        inline = manifest.get("inline") or []
        if isinstance(inline, str):  # omnictl's export writes the documents back as YAML text
            inline = [doc for doc in yaml.safe_load_all(inline) if doc]
        entry = {"name": name, "mode": manifest.get("mode", ""), "inline": [_sorted_deep(doc) for doc in inline]}
        if annotations:
            entry["annotations"] = annotations
        out.append(entry)
    return out


def canonical_cluster(text: str) -> tuple[str, list[dict]]:
    """A template, written or exported, as (its canonical form without manifests, its canonical manifests):
    the manifests are compared apart, so a changed chart value shows as a change of the manifests."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    manifests: list = []
    for doc in documents:
        if doc.get("kind") == "Cluster" and isinstance(doc.get("kubernetes"), dict):
            manifests = doc["kubernetes"].pop("manifests", None) or []
    return canonical_template(dump_documents(documents)), canonical_manifests(manifests)
