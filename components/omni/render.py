"""Pure renderers: from the spec model to the exact documents Omni receives.

Byte-stable (sorted keys where order does not matter) so that diffs stay quiet.
"""

from __future__ import annotations

import yaml

from components.core.spec import machine_set_id

MACHINE_CLASS_TYPE = "MachineClasses.omni.sidero.dev"
CLUSTER_TYPE = "Clusters.omni.sidero.dev"
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


# Omni's GrpcTunnelMode enum, as its resources hold it (0 is UNSET: the account's default).
GRPC_TUNNEL = {"enabled": 1, "disabled": 2}
_GRPC_TUNNEL_NAMES = {number: name for name, number in GRPC_TUNNEL.items()}


def machine_class_document(
    class_id: str, provider_id: str, provider_data: dict, provisioning: dict | None = None
) -> dict:
    """provisioning: kernel_args, meta_values and grpc_tunnel (MachineClassSpec.provisioning), only those set."""
    auto: dict = {"providerid": provider_id, "providerdata": providerdata_yaml(provider_data)}
    provisioning = provisioning or {}
    if provisioning.get("kernel_args"):
        auto["kernelargs"] = list(provisioning["kernel_args"])
    if provisioning.get("meta_values"):
        auto["metavalues"] = [{"key": m["key"], "value": m["value"]} for m in provisioning["meta_values"]]
    if provisioning.get("grpc_tunnel"):
        auto["grpctunnel"] = GRPC_TUNNEL[provisioning["grpc_tunnel"]]
    return {
        "metadata": {"namespace": DEFAULT_NAMESPACE, "type": MACHINE_CLASS_TYPE, "id": class_id},
        "spec": {"autoprovision": auto},
    }


def label_class_document(class_id: str, match_labels: list[str]) -> dict:
    """A MachineClass that selects machines already registered with Omni: no provider, no VMs."""
    return {
        "metadata": {"namespace": DEFAULT_NAMESPACE, "type": MACHINE_CLASS_TYPE, "id": class_id},
        "spec": {"matchlabels": list(match_labels)},
    }


def provisioning_of(autoprovision: dict) -> dict:
    """The inverse of machine_class_document's provisioning, from what Omni holds (which lists unset fields as
    empty or 0): only what is set."""
    out: dict = {}
    if autoprovision.get("kernelargs"):
        out["kernel_args"] = list(autoprovision["kernelargs"])
    if autoprovision.get("metavalues"):
        out["meta_values"] = [
            {"key": m.get("key", 0), "value": m.get("value", "")} for m in autoprovision["metavalues"]
        ]
    tunnel = _GRPC_TUNNEL_NAMES.get(autoprovision.get("grpctunnel") or 0)
    if tunnel:
        out["grpc_tunnel"] = tunnel
    return out


def render_machine_class(class_id: str, provider_id: str, provider_data: dict, provisioning: dict | None = None) -> str:
    return dump_yaml(machine_class_document(class_id, provider_id, provider_data, provisioning))


def _sorted_deep(value):
    """Mappings with sorted keys, all the way down: patch contents render the same every time."""
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def _metadata(part) -> dict:
    """A part's labels and annotations, as the template writes them (sorted; empty ones left out)."""
    return {k: dict(sorted(getattr(part, k).items())) for k in ("labels", "annotations") if getattr(part, k)}


def _patches(patches) -> list[dict]:
    return [{"name": p.patch_name, **_metadata(p), "inline": _sorted_deep(p.inline)} for p in patches]


# The template's keys for a machine set's strategies; Omni's defaults (Rolling for updates, Unset for deletes and
# upgrades) are what export leaves out.
STRATEGIES = {
    "update_strategy": ("updateStrategy", "Rolling"),
    "delete_strategy": ("deleteStrategy", "Unset"),
    "upgrade_strategy": ("upgradeStrategy", "Unset"),
}


def _strategy(strategy) -> dict:
    out: dict = {"type": strategy.type}
    if strategy.max_parallelism is not None:
        out["rolling"] = {"maxParallelism": strategy.max_parallelism}
    return out


def _pool_document(kind: str, pool, size, name: str | None = None) -> dict:
    doc: dict = {"kind": kind}
    if name is not None:
        doc["name"] = name
    doc.update(_metadata(pool))
    doc["machineClass"] = {"name": pool.machine_class, "size": size}
    for field, (key, _default) in STRATEGIES.items():
        if getattr(pool, field) is not None:
            doc[key] = _strategy(getattr(pool, field))
    if pool.patches:
        doc["patches"] = _patches(pool.patches)
    if pool.system_extensions:
        doc["systemExtensions"] = list(pool.system_extensions)
    return doc


def _features(features) -> dict:
    """Only what is on: Omni's export leaves out a feature that is off."""
    out: dict = {
        key: True
        for key, on in (
            ("diskEncryption", features.disk_encryption),
            ("enableWorkloadProxy", features.enable_workload_proxy),
            ("useEmbeddedDiscoveryService", features.use_embedded_discovery_service),
        )
        if on
    }
    if features.backup_interval:
        out["backupConfiguration"] = {"interval": features.backup_interval}
    return out


def user_manifests(cluster) -> list[dict]:
    """The spec's own kubernetes.manifests of a cluster (files already read in), as the template carries them."""
    return [
        {"name": m.name, "mode": m.mode, "inline": [_sorted_deep(d) for d in m.inline or []]} for m in cluster.manifests
    ]


def cluster_template_documents(name: str, cluster) -> list[dict]:
    """The multi-document Omni cluster template (kind Cluster, ControlPlane, Workers...)."""
    head: dict = {"kind": "Cluster", "name": name, **_metadata(cluster)}
    head["kubernetes"] = {"version": cluster.kubernetes_version}
    head["talos"] = {"version": cluster.talos_version}
    if features := _features(cluster.features):
        head["features"] = features
    if cluster.patches:
        head["patches"] = _patches(cluster.patches)
    if cluster.system_extensions:
        head["systemExtensions"] = list(cluster.system_extensions)
    control_plane = _pool_document("ControlPlane", cluster.control_plane, cluster.control_plane.size)
    if cluster.restore_from is not None:
        control_plane["bootstrapSpec"] = {
            "clusterUUID": cluster.restore_from.cluster_uuid or OWN_CLUSTER_UUID,
            "snapshot": cluster.restore_from.snapshot,
        }
    docs = [head, control_plane]
    docs += [_pool_document("Workers", pool, pool.size, name=pool.name) for pool in cluster.workers]
    return docs


# What a restore from the cluster's own backup names as its UUID until the provider reads the UUID from Omni.
OWN_CLUSTER_UUID = "(this cluster's)"


def bootstrap_spec(template: str | None) -> dict | None:
    """The ControlPlane's bootstrapSpec (a restore from a backup), or None."""
    for doc in yaml.safe_load_all(template or ""):
        if doc and doc.get("kind") == "ControlPlane":
            return doc.get("bootstrapSpec") or None
    return None


def with_bootstrap_uuid(template: str, cluster_uuid: str) -> str:
    """The template with OWN_CLUSTER_UUID in its bootstrapSpec replaced by the cluster's UUID."""
    documents = [d for d in yaml.safe_load_all(template) if d]
    for doc in documents:
        spec = doc.get("bootstrapSpec") if doc.get("kind") == "ControlPlane" else None
        if spec and spec.get("clusterUUID") == OWN_CLUSTER_UUID:
            spec["clusterUUID"] = cluster_uuid
    return dump_documents(documents)


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
    return {k: patch[k] for k in ("name", "idOverride", "labels", "annotations", "inline", "file") if k in patch}


_DOC_ORDER = [
    "kind",
    "name",
    "labels",
    "annotations",
    "kubernetes",
    "talos",
    "features",
    "machineClass",
    "updateStrategy",
    "deleteStrategy",
    "upgradeStrategy",
    "machines",
    "bootstrapSpec",
    "patches",
    "systemExtensions",
    "kernelArgs",
]


def _strategy_as_exported(doc: dict, key: str, default: str) -> None:
    """A strategy as export can show it. Omni (v1.7) keeps a strategy's settings only with a rolling parallelism,
    and export writes the block only from those settings, without the default type: a type alone is applied but
    never read back, so it is not compared."""
    strategy = doc.get(key)
    if not isinstance(strategy, dict):
        return
    rolling = strategy.get("rolling")
    parallelism = rolling.get("maxParallelism") if isinstance(rolling, dict) else None
    if not parallelism:
        del doc[key]
        return
    kept: dict = {"rolling": {"maxParallelism": parallelism}}
    if strategy.get("type", default) != default:
        kept["type"] = strategy["type"]
    doc[key] = kept


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
        for key, default in STRATEGIES.values():
            _strategy_as_exported(doc, key, default)
        if "patches" in doc:
            # Export lists patches by id, which orders them by weight: their written order.
            doc["patches"] = [_canonical_patch(cluster, doc, i, p) for i, p in enumerate(doc["patches"])]
        ordered = {k: doc[k] for k in _DOC_ORDER if k in doc}
        ordered.update({k: doc[k] for k in sorted(doc) if k not in ordered})
        ordered = {k: (v if k == "patches" else _sorted_deep(v)) for k, v in ordered.items()}
        canonical.append(ordered)
    canonical.sort(key=lambda d: (_KIND_ORDER.get(str(d.get("kind")), 9), str(d.get("name", ""))))
    return dump_documents(canonical)


SECRET_PATCH = "[secret]"


def redacted_template(template: str, secret_patches: list[tuple[str, str | None, str]]) -> str:
    """The template with the content of each secret patch (ClusterSpec.secret_patches) replaced by SECRET_PATCH:
    what may be shown. Patches are found by name, as written or as `export` annotates them."""
    secret = set(secret_patches)
    documents = [d for d in yaml.safe_load_all(template) if d]
    for doc in documents:
        kind = str(doc.get("kind"))
        pool = doc.get("name", "workers") if kind == "Workers" else None
        for patch in doc.get("patches") or []:
            name = patch.get("name") or (patch.get("annotations") or {}).get("name")
            if (kind, pool, name) in secret:
                patch["inline"] = SECRET_PATCH
    return dump_documents(documents)


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
