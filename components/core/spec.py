"""The estate as typed models: the whole of specs/omni.yaml.

Every value a user can get wrong fails here, before Pulumi registers anything, each expectation in words
with an example (never a regular expression); components/core/spec_file.py reads a file into these models
and reports every mistake at once. Derived numbers (cores, memory, disk per cluster and overall) are
properties.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    field_validator,
    model_validator,
)

from components.core.errors import SpecError
from components.core.label_selector import LabelSelectorError, parse_selector
from components.core.storage_selector import selector_problem

__all__ = ["Spec", "SpecError", "spec_document"]


class CrossCheckFailure(ValueError):
    """A cross-check failure that knows its own dotted path (relative to the model raising it); spec_file.py
    places it in the file."""

    def __init__(self, path: str, expected: str):
        super().__init__(expected)
        self.path, self.expected = path, expected


class CrossCheckFailures(ValueError):
    """Several cross-check failures of one model, all reported."""

    def __init__(self, failures: list[CrossCheckFailure]):
        super().__init__("; ".join(f.expected for f in failures))
        self.failures = failures


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shaped(regex: str, words: str) -> AfterValidator:
    """A string of one shape; a mismatch is told in words with an example, since users do not read regexes."""
    shape = re.compile(regex)

    def check(value: str) -> str:
        if not shape.fullmatch(value):
            raise ValueError(f"{words} (got {value!r})")
        return value

    return AfterValidator(check)


# Kubernetes' DNS label (RFC 1123), which Omni and Proxmox names also keep to.
Name = Annotated[
    str,
    _shaped(
        r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        "a lowercase name of letters, digits and '-', starting and ending with a letter or "
        "digit, at most 63 characters, e.g. talos-prod-01",
    ),
]
Version = Annotated[str, _shaped(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", "a version with its v, e.g. v1.34.3")]
ChartVersion = Annotated[str, _shaped(r"\d+\.\d+\.\d+", "a chart version of three numbers, e.g. 1.102.3")]
ChartRepository = Annotated[str, _shaped(r"https?://\S+", "an http:// or https:// URL, e.g. https://helm.cilium.io")]
Extension = Annotated[
    str, _shaped(r"[a-z0-9-]+/[a-z0-9._-]+", "an extension as vendor/name, e.g. siderolabs/iscsi-tools")
]


class DiskCache(StrEnum):
    none = "none"
    writethrough = "writethrough"
    writeback = "writeback"
    directsync = "directsync"
    unsafe = "unsafe"


class DiskAio(StrEnum):
    native = "native"
    threads = "threads"
    io_uring = "io_uring"


class MachineType(StrEnum):
    q35 = "q35"
    i440fx = "i440fx"


class Hugepages(StrEnum):
    two_mb = "2MB"
    one_gb = "1GB"


class PlacementStrategy(StrEnum):
    """How the provider picks a node for each VM of a machine request set (its scheduler.selectNode)."""

    spread = "spread"  # fewest VMs of the set, then most free memory (the default)
    fewer_vms = "fewer-vms"  # fewest VMs of any kind, then most free memory
    round_robin = "round-robin"  # fewest VMs of the set, then node name
    binpack = "binpack"  # the smallest free memory that still fits; if none fits, the most free memory


class Bios(StrEnum):
    seabios = "seabios"
    ovmf = "ovmf"  # UEFI: the provider adds an EFI disk on the primary disk's storage


class HaState(StrEnum):
    started = "started"
    stopped = "stopped"
    disabled = "disabled"
    ignored = "ignored"


class ResourceAffinity(StrEnum):
    negative = "negative"
    positive = "positive"


def _valid_selector(value: str) -> str:
    problem = selector_problem(value)
    if problem:
        raise ValueError(problem)
    return value


StorageSelector = Annotated[str, Field(min_length=1)]


class AdditionalNic(_Strict):
    bridge: str = Field(min_length=1)
    vlan: int | None = Field(default=None, ge=0)
    firewall: bool | None = None


class PciDevice(_Strict):
    mapping: str = Field(min_length=1)
    mdev: str | None = None  # a mediated device type (vGPU), e.g. nvidia-63
    pcie: bool | None = None
    primary_gpu: bool | None = None
    rombar: bool | None = None


class UsbDevice(_Strict):
    mapping: str = Field(min_length=1)  # a Proxmox USB resource mapping
    usb3: bool | None = None


HaRule = Annotated[
    str,
    Field(max_length=64),
    _shaped(
        r"[A-Za-z0-9][A-Za-z0-9_-]*",
        "a Proxmox HA rule id of letters, digits, '_' and '-', starting with a letter or digit, e.g. keep-apart",
    ),
]
HaNode = Annotated[
    str,
    Field(max_length=63),
    _shaped(r"[A-Za-z0-9][A-Za-z0-9-]*", "a Proxmox node name of letters, digits and '-', e.g. hotel"),
]


class HaConfig(_Strict):
    """Proxmox HA for the class's VMs (Proxmox VE 9+): the provider registers each VM as an HA resource and keeps
    node- and resource-affinity rules for its machine set; HA, not the provider, then owns placement."""

    state: HaState | None = None
    comment: str | None = Field(default=None, max_length=4096)
    max_restart: int | None = Field(default=None, ge=0)
    max_relocate: int | None = Field(default=None, ge=0)
    failback: bool | None = None
    rules: list[HaRule] | None = None
    node_affinity_nodes: list[HaNode] | None = None
    node_affinity_strict: bool | None = None
    resource_affinity: ResourceAffinity | None = None


Tag = Annotated[str, Field(min_length=1)]


class AdditionalDisk(_Strict):
    disk_size: int = Field(ge=1, description="GB")
    storage_selector: StorageSelector
    disk_ssd: bool | None = None
    disk_discard: bool | None = None
    disk_iothread: bool | None = None
    disk_cache: DiskCache | None = None
    disk_aio: DiskAio | None = None

    _check_selector = field_validator("storage_selector")(_valid_selector)


class ProviderData(_Strict):
    """providerdata of the Omni Proxmox infra provider (its published JSON schema, restated)."""

    cores: int = Field(ge=1, description="cores per socket")
    memory: int = Field(ge=2048, description="MB")
    disk_size: int = Field(ge=5, description="GB")
    storage_selector: StorageSelector
    sockets: int | None = Field(default=None, ge=1)
    node: Name | None = None
    placement_strategy: PlacementStrategy | None = None
    network_bridge: str | None = None
    vlan: int | None = Field(default=None, ge=0)
    network_firewall: bool | None = None  # the provider's default: on
    disk_ssd: bool | None = None
    disk_discard: bool | None = None
    disk_iothread: bool | None = None
    disk_cache: DiskCache | None = None
    disk_aio: DiskAio | None = None
    cpu_type: str | None = None
    machine_type: MachineType | None = None
    numa: bool | None = None
    hugepages: Hugepages | None = None
    balloon: bool | None = None
    bios: Bios | None = None
    vga: str | None = None  # e.g. std, none
    pool: str | None = None  # unset: a pool named after the machine request set
    tags: list[Tag] | None = None  # Proxmox tags, before the provider's own machine-request.<set>
    ha: HaConfig | None = None
    additional_nics: list[AdditionalNic] | None = None
    pci_devices: list[PciDevice] | None = None
    usb_devices: list[UsbDevice] | None = None
    additional_disks: list[AdditionalDisk] | None = None

    _check_selector = field_validator("storage_selector")(_valid_selector)

    @property
    def vcpus(self) -> int:
        return self.cores * (self.sockets or 1)

    @property
    def disk_gb(self) -> int:
        return self.disk_size + sum(d.disk_size for d in self.additional_disks or [])

    def as_document(self) -> dict:
        """The providerdata mapping Omni stores: unset fields left out, enums as plain strings."""
        return self.model_dump(mode="json", exclude_none=True)


class MetaValue(_Strict):
    """A Talos META key and value the machines are given at install (e.g. 0x0a, Talos's network config key)."""

    key: int = Field(ge=0, le=255)
    value: str


# Omni's own label, set on machines it keeps from manual allocation: its state validation refuses a class
# selecting by it ("selectors using label ... are not allowed").
NO_MANUAL_ALLOCATION = "omni.sidero.dev/no-manual-allocation"


def _label_selector(value: str) -> str:
    try:
        terms = parse_selector(value)
    except LabelSelectorError as exc:
        raise ValueError(
            f'a label selector as Omni parses it, e.g. "omni.sidero.dev/arch = amd64, rack in (a, b)" (got {value!r}; '
            f"Omni: failed to parse matchLabels: {exc})"
        ) from None
    if not terms:
        raise ValueError("a label selector with at least one term (an empty one would match every machine)")
    if any(t.key == NO_MANUAL_ALLOCATION for t in terms):
        raise ValueError(f"a selector without {NO_MANUAL_ALLOCATION}, which Omni does not allow in a class")
    return value


LabelSelector = Annotated[str, AfterValidator(_label_selector)]


class MachineClassSpec(_Strict):
    """Either it auto-provisions VMs through the infra provider (provider_id and provider_data), or it selects
    machines already registered with Omni by their labels (match_labels): Omni allows one or the other."""

    provider_id: str | None = Field(default=None, min_length=1)
    provider_data: ProviderData | None = None
    match_labels: list[LabelSelector] | None = Field(default=None, min_length=1)
    kernel_args: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    meta_values: list[MetaValue] = Field(default_factory=list)
    # Omni's SideroLink over gRPC for these machines: on, off, or (unset) the account's default.
    grpc_tunnel: Literal["enabled", "disabled"] | None = None

    @property
    def autoprovisions(self) -> bool:
        return self.match_labels is None

    @property
    def data(self) -> ProviderData:
        """The provider's data of a class that auto-provisions (the only kind whose VMs anything predicts)."""
        if self.provider_data is None:
            raise ValueError("a class that matches labels has no provider data")
        return self.provider_data

    @model_validator(mode="after")
    def _one_way_to_get_machines(self):
        if self.match_labels is not None:
            kept = [
                name
                for name in ("provider_id", "provider_data", "kernel_args", "meta_values", "grpc_tunnel")
                if getattr(self, name)
            ]
            if kept:
                raise CrossCheckFailure(
                    kept[0],
                    f"nothing of auto-provisioning in a class that matches labels ({', '.join(kept)} given): Omni "
                    'refuses a class with both ("can\'t set both auto provision and match labels at the same time")',
                )
            return self
        missing = [name for name in ("provider_id", "provider_data") if getattr(self, name) is None]
        if missing:
            raise CrossCheckFailure(
                missing[0],
                "provider_id and provider_data (a class that auto-provisions), or match_labels instead "
                "(one that selects registered machines)",
            )
        return self

    def provisioning(self) -> dict:
        """What the class asks of the machines beyond the provider's data; only what is set, so a class that sets
        nothing has the inputs it always had."""
        out: dict = {}
        if self.kernel_args:
            out["kernel_args"] = list(self.kernel_args)
        if self.meta_values:
            out["meta_values"] = [m.model_dump() for m in self.meta_values]
        if self.grpc_tunnel:
            out["grpc_tunnel"] = self.grpc_tunnel
        return out


# Omni makes the provider's service account `infra-provider:ID` and refuses an identity with capital
# letters ("must be lowercase"), so a provider with such an id can never register, nor a class use it.
def _provider_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
        raise ValueError(
            f"a lowercase infra provider id such as 'matrix-cluster' (got {value!r}; Omni refuses to "
            "register a provider whose id has capital letters)"
        )
    return value


ProviderId = Annotated[str, AfterValidator(_provider_id)]


# Omni refuses a service-account key that lives longer than a year (auth.ServiceAccountMaxAllowedLifetime).
KEY_TTL_MAX_DAYS = 365.0
KeyTtlDays = Annotated[float, Field(gt=0, le=KEY_TTL_MAX_DAYS)]


# What the Omni Proxmox provider (v0.3) asks of the Proxmox API, by privilege: VMs made, configured (CPU, memory,
# disks, NICs, the boot ISO and cloud-init), started, stopped and deleted; space on storages and the Talos ISO
# downloaded to one (download-url: Datastore.AllocateTemplate, Sys.Audit and Sys.Modify); pools made and filled;
# bridges used (SDN.Use); the cluster read.
PROVIDER_PRIVILEGES = (
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Pool.Allocate",
    "Pool.Audit",
    "SDN.Use",
    "Sys.Audit",
    "Sys.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
)
PveUser = Annotated[
    str,
    _shaped(
        r"[^\s:/@!]{1,60}@(pve|pam)",
        "a Proxmox user, NAME@pve (a PVE realm user: no password, only tokens), e.g. omni-provider@pve",
    ),
]
PveRoleId = Annotated[str, _shaped(r"[A-Za-z][A-Za-z0-9.\-_]{1,39}", "a Proxmox role id, e.g. OmniInfraProvider")]


class ProxmoxIdentitySpec(_Strict):
    """The provider's own Proxmox identity, made by the program through the API: a user, a role of exactly the
    privileges the provider needs, the role on / for both, and an API token with privilege separation."""

    user: PveUser = "omni-provider@pve"
    role: PveRoleId = "OmniInfraProvider"
    # The token's life (PVE's `expire`): `up` makes a new token once a third is left, deploys it, then deletes the
    # old one.
    token_ttl_days: KeyTtlDays = KEY_TTL_MAX_DAYS
    extra_privileges: list[Literal["Sys.Console", "Mapping.Use", "Mapping.Audit"]] = Field(default_factory=list)

    @property
    def privileges(self) -> list[str]:
        return sorted(set(PROVIDER_PRIVILEGES) | set(self.extra_privileges))


class InfraProviderSpec(_Strict):
    id: ProviderId
    # The life of the key the program makes for the provider (`up` renews it once a third of it is left, or once it
    # is inside the stack's keyExpiryWarningDays).
    key_ttl_days: KeyTtlDays = KEY_TTL_MAX_DAYS
    # Set: the program makes the provider's Proxmox user, role and token (providerProxmoxTokenId/Secret unneeded).
    proxmox_identity: ProxmoxIdentitySpec | None = None


# Omni's roles a service account for automation may have (InfraProvider is only ever an infra provider's).
AutomationRole = Literal["Reader", "Operator", "Admin"]


class ServiceAccountSpec(_Strict):
    """An Omni service account for automation (the scheduled drift job): made and renewed by the program; its key
    leaves the state only through `make service-account-key`."""

    role: AutomationRole
    key_ttl_days: KeyTtlDays = 90.0


class ProxmoxSpec(_Strict):
    cluster: Name
    nodes: list[Name] = Field(min_length=1)
    # The LAN resolvers every node must hand Talos VMs (split-horizon DNS for Omni); optional.
    dns_resolvers: list[IPvAnyAddress] | None = None


# Omni keeps this prefix for its own labels and annotations; its template loader refuses it on anything a
# template sets (client/pkg/template: "prefix %q is reserved for internal use").
RESERVED_PREFIX = "omni.sidero.dev/"


def _unreserved(value: dict[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in value if k.startswith(RESERVED_PREFIX))
    if reserved:
        raise ValueError(
            f"keys without the {RESERVED_PREFIX} prefix, which Omni keeps for itself and refuses in a template "
            f"(got {', '.join(reserved)})"
        )
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_unreserved)]


class Patch(_Strict):
    """A Talos machine-config patch: inline YAML, or a file relative to the spec file. A file patch without a
    name is named as Omni names it: by its path as written."""

    name: Name | None = None
    labels: Metadata = Field(default_factory=dict)
    annotations: Metadata = Field(default_factory=dict)
    inline: dict[str, Any] | None = None
    file: str | None = None
    # Content that must not be read in the state, the outputs or the logs (registry credentials, say): the
    # cluster's template is then a Pulumi secret, and the `clusters` output shows the patch as SECRET_PATCH.
    secret: bool = False

    @model_validator(mode="after")
    def _one_source(self):
        if (self.inline is None) == (self.file is None):
            raise ValueError("exactly one of `inline` (a mapping) or `file` (a path)")
        if self.name is None and self.file is None:
            raise CrossCheckFailure("name", "a name for an inline patch, e.g. ntp (Omni names only a file patch)")
        return self

    @property
    def patch_name(self) -> str:
        """The name Omni gives the patch (its id is built from it)."""
        return self.name if self.name is not None else str(self.file)


class Strategy(_Strict):
    """How Omni rolls a change, a deletion or an upgrade through a machine set (its UpdateStrategyConfig)."""

    type: Literal["Rolling", "Unset"] = "Rolling"
    max_parallelism: int | None = Field(default=None, ge=1)  # machines at a time; unset: Omni's default, 1

    @model_validator(mode="after")
    def _parallelism_is_rolling(self):
        if self.max_parallelism is not None and self.type != "Rolling":
            raise CrossCheckFailure("max_parallelism", "no max_parallelism unless type is Rolling")
        return self


class _Pool(_Strict):
    machine_class: Name
    labels: Metadata = Field(default_factory=dict)
    annotations: Metadata = Field(default_factory=dict)
    patches: list[Patch] = Field(default_factory=list)
    system_extensions: list[Extension] = Field(default_factory=list)
    update_strategy: Strategy | None = None
    delete_strategy: Strategy | None = None
    upgrade_strategy: Strategy | None = None


class ControlPlaneSpec(_Pool):
    size: int = Field(ge=1)
    # Two control planes on one Proxmox node: losing it loses etcd quorum. "warn" reports it after `up` and in
    # the drift report; "require" makes it an error there.
    spread: Literal["warn", "require"] = "warn"

    @field_validator("size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError(f"an odd number of control planes, so etcd keeps quorum (got {size})")
        return size

    @model_validator(mode="after")
    def _no_update_or_delete_strategy(self):
        # Omni's template loader: "updateStrategy is not allowed in the controlplane" (and deleteStrategy); an
        # upgrade strategy it allows.
        failures = [
            CrossCheckFailure(field, "no strategy here: Omni allows only upgrade_strategy on the control plane")
            for field in ("update_strategy", "delete_strategy")
            if getattr(self, field) is not None
        ]
        if failures:
            raise CrossCheckFailures(failures)
        return self


class WorkerPoolSpec(_Pool):
    name: Name
    size: Annotated[int, Field(ge=0)] | Literal["unlimited"]


class _Values(BaseModel):
    """Chart values: the ones omni-scale knows are typed (a wrong type is one clear error), others pass as given."""

    model_config = ConfigDict(extra="allow", frozen=True)


class CiliumIpam(_Values):
    mode: str | None = None


class CiliumCgroupAutoMount(_Values):
    enabled: bool | None = None


class CiliumCgroup(_Values):
    autoMount: CiliumCgroupAutoMount | None = None
    hostRoot: str | None = None


class CiliumCapabilities(_Values):
    ciliumAgent: list[str] | None = None
    cleanCiliumState: list[str] | None = None


class CiliumSecurityContext(_Values):
    capabilities: CiliumCapabilities | None = None


class CiliumValues(_Values):
    MTU: int | None = Field(default=None, ge=576, le=65520)
    kubeProxyReplacement: bool | None = None
    k8sServiceHost: str | None = None
    k8sServicePort: int | None = Field(default=None, ge=1, le=65535)
    ipam: CiliumIpam | None = None
    cgroup: CiliumCgroup | None = None
    securityContext: CiliumSecurityContext | None = None


class CiliumSpec(_Strict):
    """Cilium's chart, rendered by `helm template` into the cluster template's kubernetes.manifests."""

    chart_repository: ChartRepository
    chart_version: ChartVersion
    values: CiliumValues = Field(default_factory=CiliumValues)


class CniSpec(_Strict):
    cilium: CiliumSpec


def _go_duration(value: object) -> object:
    """A Go duration (2h, 90m, 1h30m, 45s) as Go prints it (2h0m0s, 1h30m0s, 45s): what Omni exports."""
    if not isinstance(value, str):
        return value
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value)
    if not value or not parts:
        raise ValueError(f"a duration of hours, minutes and seconds, e.g. 2h or 1h30m (got {value!r})")
    seconds = int(parts[1] or 0) * 3600 + int(parts[2] or 0) * 60 + int(parts[3] or 0)
    if seconds == 0:
        raise ValueError(f"a duration longer than zero, e.g. 2h (got {value!r})")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s"


def duration_seconds(go_duration: str) -> int:
    """Seconds of a duration as _go_duration prints it (1h30m0s)."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", go_duration)
    if not parts:
        raise ValueError(f"not a duration: {go_duration!r}")
    return int(parts[1] or 0) * 3600 + int(parts[2] or 0) * 60 + int(parts[3] or 0)


# Omni's bounds on a cluster's backup interval (its --etcd-backup-min-interval and --etcd-backup-max-interval
# defaults): outside them Omni refuses the cluster ("backup interval must be greater than 1h0m0s").
BACKUP_INTERVAL_BOUNDS = (3600, 86400)


def _backup_interval(value: str) -> str:
    low, high = BACKUP_INTERVAL_BOUNDS
    if not low <= duration_seconds(value) <= high:
        raise ValueError(f"a duration from 1h to 24h, Omni's bounds on a backup interval (got {value})")
    return value


class ClusterFeatures(_Strict):
    """Omni's cluster features (the template's `features`)."""

    disk_encryption: bool = False  # KMS disk encryption through Omni; only when the cluster is created
    enable_workload_proxy: bool = False  # expose services through Omni's workload proxy
    use_embedded_discovery_service: bool = False  # Omni's own discovery service instead of the public one
    # etcd backups to the store of `backups` (top level), e.g. 6h
    backup_interval: Annotated[str, BeforeValidator(_go_duration), AfterValidator(_backup_interval)] | None = None


# How Omni names a snapshot in the store: 16 hex digits (the backup time, negated) and `.snapshot`.
SnapshotName = Annotated[
    str,
    _shaped(
        r"[0-9A-F]{16}\.snapshot",
        "a snapshot name as `omnictl get etcdbackups` lists it, e.g. FFFFFFFF9A99FBF6.snapshot",
    ),
]
ClusterUuid = Annotated[
    str,
    _shaped(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "a cluster UUID as `omnictl get clusteruuid NAME` prints it, e.g. bb874758-ee54-4d3b-bac3-4c8349737298",
    ),
]


class RestoreSpec(_Strict):
    """Restore the cluster's etcd from a snapshot (README, "Backups and restore"): `up` deletes the control-plane
    machine set and makes it again with Omni's bootstrapSpec. Keep it in the spec afterwards: the machine set's
    bootstrapSpec cannot change once made."""

    snapshot: SnapshotName
    # The cluster whose backup it is: unset, this cluster (its UUID is read from Omni).
    cluster_uuid: ClusterUuid | None = None


class ManifestSpec(_Strict):
    """A Kubernetes manifest Omni applies to the cluster (the template's kubernetes.manifests): documents inline,
    or a file of them relative to the spec file."""

    name: Name
    mode: Literal["full", "one-time"] = "full"  # full: kept as written; one-time: applied once, then left
    inline: list[dict[str, Any]] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.inline is None) == (self.file is None):
            raise ValueError("exactly one of `inline` (a list of documents) or `file` (a path)")
        return self


class ClusterSpec(_Strict):
    kubernetes_version: Version
    talos_version: Version
    production: bool = True  # protected from deletion unless the stack deliberately opts out
    labels: Metadata = Field(default_factory=dict)
    annotations: Metadata = Field(default_factory=dict)
    features: ClusterFeatures = Field(default_factory=ClusterFeatures)
    manifests: list[ManifestSpec] = Field(default_factory=list)
    patches: list[Patch] = Field(default_factory=list)
    system_extensions: list[Extension] = Field(default_factory=list)
    control_plane: ControlPlaneSpec
    workers: list[WorkerPoolSpec] = Field(default_factory=list)
    # The CNI omni-scale installs (Omni applies it as soon as the control plane's API answers); none: Talos's own.
    cni: CniSpec | None = None
    restore_from: RestoreSpec | None = None

    @model_validator(mode="after")
    def _unique_names(self):
        failures = []
        seen: set[str] = set()
        for i, pool in enumerate(self.workers):
            if pool.name == CONTROL_PLANES_SET:
                failures.append(
                    CrossCheckFailure(
                        f"workers[{i}].name",
                        "a worker pool name other than `control-planes` "
                        "(the control plane's machine set), e.g. workers",
                    )
                )
            elif pool.name in seen:
                failures.append(
                    CrossCheckFailure(
                        f"workers[{i}].name", f"a worker pool name unique in the cluster (got {pool.name!r} twice)"
                    )
                )
            seen.add(pool.name)
        manifest_names = ["cilium"] if self.cni is not None else []
        for i, manifest in enumerate(self.manifests):
            if manifest.name in manifest_names:
                taken = "the CNI's" if manifest.name == "cilium" and self.cni is not None else "another manifest's"
                failures.append(
                    CrossCheckFailure(
                        f"manifests[{i}].name", f"a manifest name of its own ({manifest.name!r} is {taken})"
                    )
                )
            manifest_names.append(manifest.name)
        for where, patches in self._patch_lists():
            names = [p.patch_name for p in patches]
            for i, name in enumerate(names):
                if name in names[:i]:
                    failures.append(
                        CrossCheckFailure(f"{where}[{i}].name", f"a patch name unique in its list (got {name!r} twice)")
                    )
        if failures:
            raise CrossCheckFailures(failures)
        return self

    def secret_patches(self) -> list[tuple[str, str | None, str]]:
        """(template document kind, worker pool or None, patch name) of every patch marked secret."""
        return [
            (*document, p.patch_name)
            for _where, document, patches in self._patch_lists_by_document()
            for p in patches
            if p.secret
        ]

    def _patch_lists(self):
        """(where in the spec, patches) of the cluster and each pool."""
        for where, _document, patches in self._patch_lists_by_document():
            yield where, patches

    def _patch_lists_by_document(self):
        """(where in the spec, (template document kind, worker pool or None), patches)."""
        yield "patches", ("Cluster", None), self.patches
        yield "control_plane.patches", ("ControlPlane", None), self.control_plane.patches
        for i, pool in enumerate(self.workers):
            yield f"workers[{i}].patches", ("Workers", pool.name), pool.patches

    def pools(self) -> list[tuple[str, _Pool, int | str]]:
        return [("control_plane", self.control_plane, self.control_plane.size)] + [
            (f"workers[{i}]", p, p.size) for i, p in enumerate(self.workers)
        ]

    def machine_sets(self, cluster_name: str) -> list[tuple[str, _Pool, int | str]]:
        """(Omni's MachineSet id, pool, size) per pool: the id is also the MachineRequestSet's, whose VMs the
        infra provider tags."""
        return [
            (machine_set_id(cluster_name, pool.name if isinstance(pool, WorkerPoolSpec) else None), pool, size)
            for _where, pool, size in self.pools()
        ]


CONTROL_PLANES_SET = "control-planes"


def machine_set_id(cluster_name: str, worker_pool: str | None) -> str:
    """Omni's id of a cluster's machine set: `<cluster>-control-planes`, or `<cluster>-<pool>` for workers."""
    return f"{cluster_name}-{worker_pool or CONTROL_PLANES_SET}"


class Totals(BaseModel):
    model_config = ConfigDict(frozen=True)
    machines: int
    cores: int
    memory_mb: int
    disk_gb: int

    def __add__(self, other: Totals) -> Totals:
        return Totals(**{k: getattr(self, k) + getattr(other, k) for k in Totals.model_fields})


ZERO = Totals(machines=0, cores=0, memory_mb=0, disk_gb=0)


# The newest stable Tailscale chart (its releases: https://pkgs.tailscale.com/helmcharts/index.yaml).
TAILSCALE_CHART_VERSION = "1.102.3"


class TailscaleOAuthSpec(_Strict):
    # Workload-identity federation: the operator authenticates with a projected service-account token for this
    # audience instead of a client secret (the client id still comes from the stack config).
    audience: str | None = Field(default=None, min_length=1)


class TailscaleOperatorSpec(_Strict):
    enabled: bool = True
    cluster: Name
    namespace: Name = "tailscale"
    hostname: Name
    chart_repository: ChartRepository
    chart_version: ChartVersion = TAILSCALE_CHART_VERSION
    oauth: TailscaleOAuthSpec = Field(default_factory=TailscaleOAuthSpec)
    values: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _credentials_only_from_the_stack(self) -> TailscaleOperatorSpec:
        # The OAuth client's credentials are stack secrets; a spec file is committed.
        if "oauth" in self.values:
            raise CrossCheckFailure(
                "values.oauth",
                "no oauth values here: the client id and secret are stack secrets "
                "(omni-scale:tailscaleOAuthClientId, omni-scale:tailscaleOAuthClientSecret), "
                "and workload identity is tailscale_operator.oauth.audience",
            )
        return self


StorageId = Annotated[
    str,
    _shaped(
        r"[a-z][a-z0-9_.-]*",
        "a Proxmox storage id of lowercase letters, digits, '_', '.' and '-', starting with a letter, e.g. local-lvm",
    ),
]
OsTemplate = Annotated[
    str,
    _shaped(
        r"[a-z][a-z0-9_.-]*:vztmpl/[^/\s]+\.tar\.(gz|xz|zst)",
        "a container template volume, STORAGE:vztmpl/NAME.tar.zst (or .tar.gz, .tar.xz), "
        "e.g. local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst",
    ),
]


# A pinned image: a tag that names a release, a digest, or both (name:tag@sha256:...); never a moving tag alone.
_IMAGE_NAME = r"[a-z0-9][a-z0-9._-]*(?::[0-9]+(?=/))?(?:/[a-z0-9._-]+)*"  # a registry port only before a path
_IMAGE_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_IMAGE_DIGEST = r"sha256:[0-9a-f]{64}"


def _pinned_image(value: str) -> str:
    shape = re.fullmatch(rf"{_IMAGE_NAME}(?::(?P<tag>{_IMAGE_TAG}))?(?:@(?P<digest>{_IMAGE_DIGEST}))?", value)
    if shape and shape["digest"]:
        return value  # a digest pins it, whatever the tag says
    if shape and shape["tag"] and shape["tag"] != "latest":
        return value
    why = (
        "latest moves"
        if shape and shape["tag"] == "latest"
        else "no tag or digest"
        if shape
        else "not an image reference"
    )
    raise ValueError(
        "an image pinned by a release tag or a digest, e.g. tailscale/tailscale:v1.90.9 or "
        f"tailscale/tailscale:v1.90.9@sha256:<64 hex digits> (got {value!r}: {why})"
    )


def _relative_directory(value: str) -> str:
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or ".." in parts
        or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", p) for p in parts)
    ):
        raise ValueError(f"a directory relative to the SSH user's home, without '..' (got {value!r})")
    return value


# Kept in memory or made by the kernel: files there would not survive a restart of the container.
_VOLATILE_ROOTS = ("proc", "sys", "dev", "run", "tmp")


def _app_directory(value: str) -> str:
    """The stack's directory in the container: relative to the SSH user's home, or absolute (/opt/...)."""
    if not value.startswith("/"):
        return _relative_directory(value)
    rest = value[1:]
    if not rest or rest.split("/")[0] in _VOLATILE_ROOTS:
        raise ValueError(
            f"an absolute directory that outlives a restart, not / or under /{', /'.join(_VOLATILE_ROOTS)} "
            f"(got {value!r})"
        )
    try:
        _relative_directory(rest)
    except ValueError:
        raise ValueError(f"an absolute directory such as /opt/omni-provider, without '..' (got {value!r})") from None
    return value


Image = Annotated[str, AfterValidator(_pinned_image)]


class LxcRootDisk(_Strict):
    storage: StorageId
    size_gb: int = Field(ge=1)


def _with_prefix(value: object) -> object:
    # ipaddress reads a bare address as a /32, a network of one that no gateway can be on: refuse it as meant.
    if isinstance(value, str) and "/" not in value:
        raise ValueError(f"an address with its prefix length, e.g. 192.168.3.10/24 (got {value!r})")
    return value


class LxcNetwork(_Strict):
    bridge: Name
    address: Annotated[IPv4Interface, BeforeValidator(_with_prefix)]  # static, with its prefix: 192.168.3.10/24
    gateway: IPv4Address

    @model_validator(mode="after")
    def _addresses_as_meant(self):
        network, failures = self.address.network, []
        if network.prefixlen < 31 and self.address.ip in (network.network_address, network.broadcast_address):
            failures.append(
                CrossCheckFailure(
                    "address",
                    f"a host address in {network}, not its "
                    f"{'network' if self.address.ip == network.network_address else 'broadcast'}"
                    f" address (got {self.address})",
                )
            )
        if self.gateway == self.address.ip:
            failures.append(
                CrossCheckFailure(
                    "gateway", f"the router's address, not the container's own (got {self.gateway} for both)"
                )
            )
        elif self.gateway not in network:
            failures.append(CrossCheckFailure("gateway", f"an address inside {network} (got {self.gateway})"))
        if failures:
            raise CrossCheckFailures(failures)
        return self


def _tailscale_state(value: str) -> str:
    if re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value):
        return value  # a named volume
    if value.startswith("./"):
        _relative_directory(value[2:])
        return value  # a directory beside the compose file, bind-mounted
    raise ValueError(
        "a named volume (e.g. tailscale-state) or a directory beside compose.yml starting with ./ "
        f"(e.g. ./tailscale-state) (got {value!r})"
    )


EnvName = Annotated[
    str, _shaped(r"[A-Z_][A-Z0-9_]*", "an environment variable name of capitals, digits and '_', e.g. OMNI_ENDPOINT")
]


Duration = Annotated[
    str, _shaped(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", "a duration as compose writes it, e.g. 10s, 1m30s")
]


class SidecarHealthcheck(_Strict):
    """Tailscale's own health endpoint (containerboot's TS_ENABLE_HEALTH_CHECK: /healthz answers 200 once the
    node has a tailnet address), polled by docker; the provider starts only once it is healthy."""

    port: int = Field(default=9002, ge=1, le=65535)  # TS_LOCAL_ADDR_PORT's default port, here on loopback only
    interval: Duration = "10s"
    timeout: Duration = "5s"
    retries: int = Field(default=3, ge=1)
    start_period: Duration = "30s"


class ComposeStackSpec(_Strict):
    # Relative to the SSH user's home in the container, or absolute (/opt/omni-provider); no '..'.
    directory: Annotated[str, AfterValidator(_app_directory)] = "omni-provider"
    provider_image: Image
    tailscale_image: Image
    tailscale_hostname: Name
    # Names a stack written by hand may have used; match them to take such a stack over in place (the same compose
    # project, the same services, the tailnet identity where it is kept) rather than start a second provider.
    project: Name = "omni-provider"
    provider_service: Name = "provider"
    tailscale_service: Name = "tailscale"
    tailscale_state: Annotated[str, AfterValidator(_tailscale_state)] = "tailscale-state"
    # What the provider reads its Omni endpoint and key from (its flags' defaults: OMNI_ENDPOINT,
    # OMNI_SERVICE_ACCOUNT_KEY).
    omni_endpoint_env: EnvName = "OMNI_ENDPOINT"
    omni_key_env: EnvName = "OMNI_SERVICE_ACCOUNT_KEY"
    # Unset: the provider starts as soon as the sidecar's container has (compose's plain depends_on).
    tailscale_healthcheck: SidecarHealthcheck | None = None

    @property
    def state_directory(self) -> str | None:
        """The Tailscale state's directory beside the files, when it is one rather than a named volume."""
        return self.tailscale_state if self.tailscale_state.startswith("./") else None

    @model_validator(mode="after")
    def _two_services(self):
        if self.provider_service == self.tailscale_service:
            raise CrossCheckFailure("tailscale_service", "a service name other than the provider's")
        return self


class ProviderLxcSpec(_Strict):
    """The container that runs the Omni Proxmox provider and its Tailscale sidecar."""

    node: Name
    vmid: int = Field(ge=100, le=999999999)
    hostname: Name
    os_template: OsTemplate
    cores: int = Field(ge=1)
    memory: int = Field(ge=256, description="MB")
    swap: int = Field(default=512, ge=0, description="MB")
    root_disk: LxcRootDisk
    network: LxcNetwork
    start_on_boot: bool = True
    # How the container gets /dev/net/tun for the sidecar: `device` (passthrough, dev0, set through the API) or
    # `lxc` (raw lxc.cgroup2.devices.allow / lxc.mount.entry lines, which only root can write into the CT's
    # config file on the node: the API refuses lxc.* keys).
    tun: Literal["device", "lxc"] = "device"
    compose: ComposeStackSpec


S3Bucket = Annotated[
    str,
    _shaped(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", "an S3 bucket name (3-63 lowercase letters, digits, dots, dashes)"),
]
S3Endpoint = Annotated[str, _shaped(r"https?://\S+", "an http:// or https:// URL, e.g. https://s3.example.com")]


class S3BackupSpec(_Strict):
    """Omni's one etcd backup store (EtcdBackupS3Configs): the keys are the stack's secrets
    (backupS3AccessKeyId, backupS3SecretAccessKey)."""

    bucket: S3Bucket
    region: str = "us-east-1"
    endpoint: S3Endpoint | None = None  # unset: AWS; an S3-compatible store (MinIO, Garage, ...) by its URL


class BackupsSpec(_Strict):
    s3: S3BackupSpec


class Spec(_Strict):
    infra_provider: InfraProviderSpec
    proxmox: ProxmoxSpec
    machine_classes: dict[Name, MachineClassSpec] = Field(min_length=1)
    clusters: dict[Name, ClusterSpec] = Field(default_factory=dict)
    tailscale_operator: TailscaleOperatorSpec | None = None
    provider_lxc: ProviderLxcSpec | None = None
    # Named as Omni names service accounts (lowercase letters, digits, dashes).
    service_accounts: dict[Name, ServiceAccountSpec] = Field(default_factory=dict)
    # Omni-wide: one store for every cluster's etcd backups.
    backups: BackupsSpec | None = None

    @model_validator(mode="after")
    def _backups_have_a_store(self):
        failures = [
            CrossCheckFailure(
                f"clusters.{name}.features.backup_interval",
                "a `backups.s3` section too (Omni has nowhere to put the backups without it), or no interval",
            )
            for name, cluster in self.clusters.items()
            if cluster.features.backup_interval and self.backups is None
        ]
        if failures:
            raise CrossCheckFailures(failures)
        return self

    def cluster_totals(self, name: str) -> Totals:
        """What one cluster asks of Proxmox; unlimited pools count as their current minimum (0), and pools of a
        class that matches labels as nothing (their machines exist already)."""
        total = ZERO
        for _where, pool, size in self.clusters[name].pools():
            cls = self.machine_classes[pool.machine_class]
            if not cls.autoprovisions:
                continue
            count = size if isinstance(size, int) else 0
            data = cls.data
            total += Totals(
                machines=count, cores=count * data.vcpus, memory_mb=count * data.memory, disk_gb=count * data.disk_gb
            )
        return total

    @cached_property
    def totals(self) -> Totals:
        total = ZERO
        for name in self.clusters:
            total += self.cluster_totals(name)
        return total


# Fields added after states were first written with spec_document: left out at their defaults, so the spec input
# of the preflight and the placement in an existing state stays the same (they diff it whole).
_ADDED_FIELDS = {
    "Patch": ("labels", "annotations", "secret"),
    "ControlPlaneSpec": ("annotations", "update_strategy", "delete_strategy", "upgrade_strategy"),
    "WorkerPoolSpec": ("annotations", "update_strategy", "delete_strategy", "upgrade_strategy"),
    "ClusterSpec": ("annotations", "features", "manifests"),
    "MachineClassSpec": ("kernel_args", "meta_values", "grpc_tunnel"),
    "ComposeStackSpec": (
        "project",
        "provider_service",
        "tailscale_service",
        "tailscale_state",
        "omni_endpoint_env",
        "omni_key_env",
        "tailscale_healthcheck",
    ),
    "ProviderLxcSpec": ("tun",),
}
# What neither reader of spec_document uses: the Omni identities' settings and the backup store (a change there is no
# change to them).
_IDENTITY_FIELDS = {"infra_provider": ("key_ttl_days", "proxmox_identity"), "": ("service_accounts", "backups")}


def _drop_added_defaults(model: BaseModel, data: object) -> None:
    if not isinstance(data, dict):
        return
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        default = field.get_default(call_default_factory=True)
        if name in _ADDED_FIELDS.get(type(model).__name__, ()) and value == default:
            data.pop(name, None)
            continue
        dumped = data.get(name)
        if isinstance(value, BaseModel):
            _drop_added_defaults(value, dumped)
        elif isinstance(value, list) and isinstance(dumped, list):
            for item, out in zip(value, dumped, strict=False):
                if isinstance(item, BaseModel):
                    _drop_added_defaults(item, out)
        elif isinstance(value, dict) and isinstance(dumped, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    _drop_added_defaults(item, dumped.get(key))


def spec_document(spec: Spec) -> dict:
    """The spec as plain data that parse_spec accepts again, for the resources that keep it in the state (the
    preflight, the placement): file patches and manifests travel as their content, a secret patch without it."""
    data = spec.model_dump(mode="json", exclude_none=True)
    _drop_added_defaults(spec, data)
    for section, fields in _IDENTITY_FIELDS.items():
        for name in fields:
            (data[section] if section else data).pop(name, None)
    for cluster in data.get("clusters", {}).values():
        # etcd's, the template's: neither reader looks at them (and the interval needs the backups section).
        cluster.pop("restore_from", None)
        features = cluster.get("features") or {}
        features.pop("backup_interval", None)
        if not any(features.values()):  # the rest are switches, off by default: as _drop_added_defaults leaves it
            cluster.pop("features", None)
        pools = [cluster, cluster["control_plane"], *cluster.get("workers", [])]
        for pool in pools:
            for patch in pool.get("patches", []):
                if "name" in patch:
                    patch.pop("file", None)
                else:
                    patch.pop("inline", None)  # named by its path: the path stays, as the name it is
                if patch.get("secret") and "inline" in patch:
                    patch["inline"] = {}  # neither reads patches; the content is the template's (a secret)
        for manifest in cluster.get("manifests", []):
            manifest.pop("file", None)
    return data
