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


# The CEL variables the Proxmox provider binds when it evaluates a storage selector.
CEL_VARIABLES = ("name", "node", "storageType", "availableSpace")


def selector_problem(selector: str) -> str | None:
    """Why a storage selector would not work with the provider, or None. Parsed with a real CEL parser."""
    import celpy  # imported here: only specs with selectors pay for the parser

    if re.search(r"(?<![\w.])type\b", selector):
        return (
            "a selector without `type`, a reserved word in CEL the provider cannot parse; "
            'use `storageType` (e.g. storageType == "rbd")'
        )
    try:
        tree = celpy.Environment().compile(selector)
    except celpy.CELParseError as exc:
        return f"a CEL expression ({str(exc).splitlines()[0].strip() or 'does not parse'})"
    unknown = sorted({str(t.children[0]) for t in tree.iter_subtrees() if t.data == "ident"} - set(CEL_VARIABLES))
    if unknown:
        return f"a CEL expression over {', '.join(CEL_VARIABLES)} only (unknown: {', '.join(unknown)})"
    return None


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
    pcie: bool | None = None
    primary_gpu: bool | None = None
    rombar: bool | None = None


class AdditionalDisk(_Strict):
    disk_size: int = Field(ge=5, description="GB")
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
    network_bridge: str | None = None
    vlan: int | None = Field(default=None, ge=0)
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
    additional_nics: list[AdditionalNic] | None = None
    pci_devices: list[PciDevice] | None = None
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


class MachineClassSpec(_Strict):
    provider_id: str = Field(min_length=1)
    provider_data: ProviderData


# Omni makes the provider's service account `infra-provider:ID` and refuses an identity with capital
# letters ("must be lowercase"), so a provider with such an id can never register, nor a class use it.
def _provider_id(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", value):
        raise ValueError(
            f"a lowercase infra provider id such as 'proxmox' (got {value!r}; Omni refuses to "
            "register a provider whose id has capital letters)"
        )
    return value


ProviderId = Annotated[str, AfterValidator(_provider_id)]


class InfraProviderSpec(_Strict):
    id: ProviderId


class ProxmoxSpec(_Strict):
    cluster: Name
    nodes: list[Name] = Field(min_length=1)
    # The LAN resolvers every node must hand Talos VMs (split-horizon DNS for Omni); optional.
    dns_resolvers: list[IPvAnyAddress] | None = None


class Patch(_Strict):
    """A Talos machine-config patch: inline YAML, or a file relative to the spec file."""

    name: Name
    inline: dict[str, Any] | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.inline is None) == (self.file is None):
            raise ValueError("exactly one of `inline` (a mapping) or `file` (a path)")
        return self


class _Pool(_Strict):
    machine_class: Name
    labels: dict[str, str] = Field(default_factory=dict)
    patches: list[Patch] = Field(default_factory=list)
    system_extensions: list[Extension] = Field(default_factory=list)


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


class ClusterSpec(_Strict):
    kubernetes_version: Version
    talos_version: Version
    production: bool = True  # protected from deletion unless the stack deliberately opts out
    labels: dict[str, str] = Field(default_factory=dict)
    patches: list[Patch] = Field(default_factory=list)
    system_extensions: list[Extension] = Field(default_factory=list)
    control_plane: ControlPlaneSpec
    workers: list[WorkerPoolSpec] = Field(default_factory=list)
    # The CNI omni-scale installs (Omni applies it as soon as the control plane's API answers); none: Talos's own.
    cni: CniSpec | None = None

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
        for where, patches in self._patch_lists():
            names = [p.name for p in patches]
            for i, name in enumerate(names):
                if name in names[:i]:
                    failures.append(
                        CrossCheckFailure(f"{where}[{i}].name", f"a patch name unique in its list (got {name!r} twice)")
                    )
        if failures:
            raise CrossCheckFailures(failures)
        return self

    def _patch_lists(self):
        yield "patches", self.patches
        yield "control_plane.patches", self.control_plane.patches
        for i, pool in enumerate(self.workers):
            yield f"workers[{i}].patches", pool.patches

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


# A pinned image: a tag that names a release, never a moving one such as latest.
def _pinned_image(value: str) -> str:
    if (
        not re.fullmatch(r"[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9._-]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]*", value)
        or value.rsplit(":", 1)[1] == "latest"
    ):
        raise ValueError(f"an image with a pinned tag, e.g. tailscale/tailscale:v1.90.9, not :latest (got {value!r})")
    return value


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


class ComposeStackSpec(_Strict):
    # Relative to the SSH user's home in the container: no absolute paths, no '..'.
    directory: Annotated[str, AfterValidator(_relative_directory)] = "omni-provider"
    provider_image: Image
    tailscale_image: Image
    tailscale_hostname: Name


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
    compose: ComposeStackSpec


class Spec(_Strict):
    infra_provider: InfraProviderSpec
    proxmox: ProxmoxSpec
    machine_classes: dict[Name, MachineClassSpec] = Field(min_length=1)
    clusters: dict[Name, ClusterSpec] = Field(default_factory=dict)
    tailscale_operator: TailscaleOperatorSpec | None = None
    provider_lxc: ProviderLxcSpec | None = None

    def cluster_totals(self, name: str) -> Totals:
        """What one cluster asks of Proxmox; unlimited pools count as their current minimum (0)."""
        total = ZERO
        for _where, pool, size in self.clusters[name].pools():
            count = size if isinstance(size, int) else 0
            data = self.machine_classes[pool.machine_class].provider_data
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


def spec_document(spec: Spec) -> dict:
    """The spec as plain data that parse_spec accepts again: file patches travel as their content."""
    data = spec.model_dump(mode="json", exclude_none=True)
    for cluster in data.get("clusters", {}).values():
        pools = [cluster, cluster["control_plane"], *cluster.get("workers", [])]
        for pool in pools:
            for patch in pool.get("patches", []):
                patch.pop("file", None)
    return data
