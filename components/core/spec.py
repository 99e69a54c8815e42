"""The estate as typed models: the whole of specs/omni.yaml.

Every value a user can get wrong fails here, before Pulumi registers anything, as one SpecError that
lists every mistake, one line each in file order, naming the file, the dotted path and what was
expected, in words with an example (never a regular expression).
Derived numbers (cores, memory, disk per cluster and overall) are properties.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from enum import StrEnum
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from components.core.errors import Problem, SpecError

__all__ = ["Spec", "SpecError", "load_spec", "parse_spec"]


class _AtPath(ValueError):
    """A cross-check failure that knows its own dotted path (relative to the model raising it)."""

    def __init__(self, path: str, expected: str):
        super().__init__(expected)
        self.path, self.expected = path, expected


class _AtPaths(ValueError):
    """Several cross-check failures of one model, all reported."""

    def __init__(self, failures: list[_AtPath]):
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
                    _AtPath(
                        f"workers[{i}].name",
                        "a worker pool name other than `control-planes` "
                        "(the control plane's machine set), e.g. workers",
                    )
                )
            elif pool.name in seen:
                failures.append(
                    _AtPath(f"workers[{i}].name", f"a worker pool name unique in the cluster (got {pool.name!r} twice)")
                )
            seen.add(pool.name)
        for where, patches in self._patch_lists():
            names = [p.name for p in patches]
            for i, name in enumerate(names):
                if name in names[:i]:
                    failures.append(
                        _AtPath(f"{where}[{i}].name", f"a patch name unique in its list (got {name!r} twice)")
                    )
        if failures:
            raise _AtPaths(failures)
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
            raise _AtPath(
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
                _AtPath(
                    "address",
                    f"a host address in {network}, not its "
                    f"{'network' if self.address.ip == network.network_address else 'broadcast'}"
                    f" address (got {self.address})",
                )
            )
        if self.gateway == self.address.ip:
            failures.append(
                _AtPath("gateway", f"the router's address, not the container's own (got {self.gateway} for both)")
            )
        elif self.gateway not in network:
            failures.append(_AtPath("gateway", f"an address inside {network} (got {self.gateway})"))
        if failures:
            raise _AtPaths(failures)
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


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _split(path: str) -> tuple:
    parts: list = []
    for piece in path.split("."):
        m = re.match(r"^([^\[]+)((\[\d+\])*)$", piece)
        if m is None:
            raise ValueError(f"not a dotted path: {path!r}")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(parts)


# pydantic names union/literal branches in locations; users know only their own keys.
_BRANCH = re.compile(r"^(\[key\]|function-\w+|int|str|literal\[.*\]|constrained-int|json-or-python\[.*\])$")


def _user_loc(loc: tuple) -> tuple:
    return tuple(p for p in loc if not (isinstance(p, str) and _BRANCH.match(p)))


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _unwrapped(kind: Any) -> Any:
    """Optional[X], Union[model, ...] and Annotated[X, ...] as the X that holds fields or items."""
    while True:
        origin = typing.get_origin(kind)
        if origin is Annotated:
            kind = typing.get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind = next((a for a in args if _is_model(a)), args[0])
        else:
            return kind


def _fields_at(loc: tuple) -> list[str] | None:
    """The field names the model at loc accepts, following the Spec's annotations (for spelling hints)."""
    kind: Any = Spec
    for part in loc:
        kind = _unwrapped(kind)
        if typing.get_origin(kind) in (list, dict):
            kind = typing.get_args(kind)[-1]  # the part is an index or a key
        elif _is_model(kind) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        else:
            return None
    kind = _unwrapped(kind)
    return list(kind.model_fields) if _is_model(kind) else None


def _validation_problems(exc: ValidationError) -> list[tuple[tuple, str]]:
    """Every error pydantic found, as (location, expectation in words); a misspelt key is one line, not two."""
    errors = exc.errors()
    by_loc: dict[tuple, list[ErrorDetails]] = {}
    for err in errors:
        by_loc.setdefault(_user_loc(err["loc"]), []).append(err)
    unknown = {loc for loc, errs in by_loc.items() if errs[0]["type"] == "extra_forbidden"}
    missing = {loc for loc, errs in by_loc.items() if errs[0]["type"] == "missing"}
    explained: set[tuple] = set()
    out: list[tuple[tuple, str]] = []
    for loc, errs in by_loc.items():
        err = errs[0]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, (_AtPath, _AtPaths)):
            for failure in cause.failures if isinstance(cause, _AtPaths) else [cause]:
                out.append((loc + _split(failure.path), failure.expected))
            continue
        if loc in unknown:
            parent = loc[:-1]
            sibling_missing = [m[-1] for m in missing if m[:-1] == parent and isinstance(m[-1], str)]
            # A required field left out is the likeliest meaning; any field of the model next.
            guess = difflib.get_close_matches(str(loc[-1]), sibling_missing, n=1) or difflib.get_close_matches(
                str(loc[-1]), _fields_at(parent) or [], n=1
            )
            if guess:
                explained.add(parent + (guess[0],))
            fields = _fields_at(parent)
            out.append(
                (
                    loc,
                    f"no such field (did you mean `{guess[0]}`?)"
                    if guess
                    else f"no such field; the fields here are {', '.join(fields)}"
                    if fields
                    else "no such field (check the spelling against specs/omni.yaml)",
                )
            )
            continue
        if err["type"] == "missing":
            msg = "a value (this field is required)"
        elif len(errs) > 1:
            msg = " or ".join(dict.fromkeys(_words(e) for e in errs))  # a union: say every accepted form
        else:
            msg = _words(err)
        out.append((loc, msg))
    return [(loc, msg) for loc, msg in out if loc not in explained]


def _words(err: ErrorDetails) -> str:
    msg = err["msg"]
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _get(data: object, *keys: Any) -> object:
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return data


def _reference_problems(data: dict, bad: set[tuple]) -> list[tuple[tuple, str]]:
    """Names that must point at something else in the file, checked on the raw document so they are reported
    beside any other mistake (a model with errors is never built). A reference into a part that is itself wrong
    (`bad` holds the locations of the other problems) is not judged: that mistake is the one to fix."""
    out: list[tuple[tuple, str]] = []

    def wrong(target: tuple) -> bool:
        # A map of names (classes, clusters) is wrong only as a whole: one bad class leaves the others' names good.
        whole = target in (("machine_classes",), ("clusters",))
        return any(loc == target if whole else loc[: len(target)] == target for loc in bad)

    nodes = _get(data, "proxmox", "nodes")
    nodes = nodes if isinstance(nodes, list) and all(isinstance(n, str) for n in nodes) else None
    classes = data.get("machine_classes")
    classes = classes if isinstance(classes, dict) else None
    clusters = data.get("clusters")
    clusters = clusters if isinstance(clusters, dict) else {}

    def one_of(loc: tuple, value: object, choices, what: str, target: tuple) -> None:
        if isinstance(value, str) and choices is not None and value not in choices and not wrong(target):
            out.append(
                (loc, f"one of the {what} {sorted(choices) if what != 'Proxmox nodes' else choices} (got {value!r})")
            )

    one_of(("provider_lxc", "node"), _get(data, "provider_lxc", "node"), nodes, "Proxmox nodes", ("proxmox", "nodes"))
    provider_id = _get(data, "infra_provider", "id")
    for name, cls in (classes or {}).items():
        got = _get(cls, "provider_id")
        if (
            isinstance(provider_id, str)
            and isinstance(got, str)
            and got != provider_id
            and not wrong(("infra_provider",))
        ):
            out.append(
                (
                    ("machine_classes", name, "provider_id"),
                    f"the infra provider id {provider_id!r} (got {got!r}); a class naming an unregistered "
                    "provider never provisions anything",
                )
            )
        one_of(
            ("machine_classes", name, "provider_data", "node"),
            _get(cls, "provider_data", "node"),
            nodes,
            "Proxmox nodes",
            ("proxmox", "nodes"),
        )
    for cname, cluster in clusters.items():
        pools: list[tuple[tuple, object]] = [(("control_plane",), _get(cluster, "control_plane"))]
        workers = _get(cluster, "workers")
        pools += [(("workers", i), pool) for i, pool in enumerate(workers if isinstance(workers, list) else [])]
        for where, pool in pools:
            one_of(
                ("clusters", cname) + where + ("machine_class",),
                _get(pool, "machine_class"),
                None if classes is None else list(classes),
                "machine classes",
                ("machine_classes",),
            )
    one_of(
        ("tailscale_operator", "cluster"),
        _get(data, "tailscale_operator", "cluster"),
        list(clusters),
        "clusters",
        ("clusters",),
    )
    return out


def parse_spec(data: object, file: str, lines: dict[tuple, int] | None = None) -> Spec:
    """The Spec, or one SpecError listing every mistake; `lines` (from yaml_lines) orders them by position."""
    if not isinstance(data, dict):
        raise SpecError(file, "", "a YAML mapping at the top level")
    found: list[tuple[tuple, str]] = []
    spec: Spec | None = None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        found = _validation_problems(exc)
    found += _reference_problems(data, {loc for loc, _ in found})
    if found or spec is None:  # no model without a problem pydantic reported
        raise SpecError(file, problems=[Problem(_dotted(loc), msg, _line_of(loc, lines)) for loc, msg in found])
    return spec


def _line_of(loc: tuple, lines: dict[tuple, int] | None) -> int | None:
    """The line of loc, or of its nearest ancestor in the file (a missing field: the mapping that lacks it)."""
    for end in range(len(loc), -1, -1):
        if lines and loc[:end] in lines:
            return lines[loc[:end]]
    return None


def yaml_lines(node: Any, path: tuple = (), out: dict[tuple, int] | None = None) -> dict[tuple, int]:
    """Each key's and list item's 1-based line, by its path, from a composed YAML node tree."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            here = path + (key_node.value,)
            out[here] = key_node.start_mark.line + 1
            yaml_lines(value_node, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            yaml_lines(item, path + (i,), out)
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's own loader keeps the last of two equal keys silently: two classes of one name would become one."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, display_name: str) -> tuple[Any, dict[tuple, int]]:
    """The document and each key's line (see yaml_lines)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(display_name, "", f"a readable spec file ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader), yaml_lines(yaml.compose(text, Loader=_UniqueKeyLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(display_name, where, f"valid YAML ({getattr(exc, 'problem', exc)})") from None


def load_spec(path: str | Path, display_name: str | None = None) -> Spec:
    """display_name is how messages name the file (the path the user wrote, not an absolute one)."""
    path = Path(path)
    file = display_name or str(path)
    data, lines = _read_yaml(path, file)
    spec = parse_spec(data, file, lines)
    found = resolve_patch_files(spec, path.parent) + clusters_that_cannot_become_ready(spec)
    if found:
        raise SpecError(file, problems=[Problem(path_, msg, _line_of(_split(path_), lines)) for path_, msg in found])
    return spec


def resolve_patch_files(spec: Spec, base: Path) -> list[tuple[str, str]]:
    """A file patch must be a readable YAML mapping now, not when omnictl runs; returns (path, expected) of those
    that are not."""
    found = []
    for cname, cluster in spec.clusters.items():
        for where, patches in cluster._patch_lists():
            for i, patch in enumerate(patches):
                if patch.file is None:
                    continue
                dotted = f"clusters.{cname}.{where}[{i}].file"
                target = base / patch.file
                try:
                    content = yaml.safe_load(target.read_text())
                except OSError as exc:
                    found.append((dotted, f"a readable patch file ({target}: {exc.strerror})"))
                    continue
                except yaml.YAMLError as exc:
                    found.append((dotted, f"a patch file of valid YAML ({target}: {exc})"))
                    continue
                if not isinstance(content, dict):
                    found.append((dotted, f"a patch file holding a YAML mapping ({target})"))
                    continue
                # Frozen model: the content is rendered inline, so templates never depend on paths.
                object.__setattr__(patch, "inline", content)
    return found


def clusters_that_cannot_become_ready(spec: Spec) -> list[tuple[str, str]]:
    """A node is Ready only with a running CNI, and Talos's nodeReady check (hence Omni's readiness) waits for it:
    a cluster whose patches switch the default CNI off and that installs none, or that switches kube-proxy off with
    nothing to replace it, can never be Ready; `up` would wait clusterReadyTimeoutSeconds and fail. Patch files
    count (their content is resolved first). Returns (path, expected) per such cluster."""
    found = []
    for cname, cluster in spec.clusters.items():
        cni_off = proxy_off = None
        for where, patches in cluster._patch_lists():
            for i, patch in enumerate(patches):
                if _get(patch.inline, "cluster", "network", "cni", "name") == "none":
                    cni_off = cni_off or f"{where}[{i}] ({patch.name})"
                if _get(patch.inline, "cluster", "proxy", "disabled") is True:
                    proxy_off = proxy_off or f"{where}[{i}] ({patch.name})"
        where = f"clusters.{cname}.cni"
        if cni_off and cluster.cni is None:
            found.append(
                (
                    where,
                    f"a CNI: patch {cni_off} sets cluster.network.cni.name: none and nothing installs "
                    "one, so the nodes never become Ready and `up` would wait and fail; add "
                    "`cni: {cilium: {chart_repository, chart_version}}`",
                )
            )
        if cluster.cni is not None and not cni_off:
            found.append(
                (
                    where,
                    "the default CNI switched off (a patch setting cluster.network.cni.name: none): "
                    "with Talos's own CNI left on, two CNIs would fight over the nodes",
                )
            )
        if proxy_off and cluster.cni is not None and cluster.cni.cilium.values.kubeProxyReplacement is False:
            found.append(
                (
                    f"{where}.cilium.values.kubeProxyReplacement",
                    f"true: patch {proxy_off} disables kube-proxy, and without Cilium's replacement nothing "
                    "serves Services, so the nodes never become Ready",
                )
            )
        if proxy_off and cluster.cni is None and not cni_off:  # else the missing CNI is the one mistake to name
            found.append(
                (
                    where,
                    f"a CNI that replaces kube-proxy: patch {proxy_off} disables kube-proxy and "
                    "nothing replaces it, so the nodes never become Ready",
                )
            )
    return found


def spec_document(spec: Spec) -> dict:
    """The spec as plain data that parse_spec accepts again: file patches travel as their content."""
    data = spec.model_dump(mode="json", exclude_none=True)
    for cluster in data.get("clusters", {}).values():
        pools = [cluster, cluster["control_plane"], *cluster.get("workers", [])]
        for pool in pools:
            for patch in pool.get("patches", []):
                patch.pop("file", None)
    return data
