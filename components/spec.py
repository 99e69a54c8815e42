"""The estate as typed models: the whole of specs/omni.yaml.

Every value a user can get wrong fails here, before Pulumi registers anything,
as one SpecError naming the file, the dotted path and what was expected.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SpecError(Exception):
    """A user mistake in a spec or stack config: printed as one line, never a traceback."""

    def __init__(self, file: str, path: str, expected: str):
        self.file, self.path, self.expected = file, path, expected
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {expected}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class DiskCache(str, Enum):
    none = "none"
    writethrough = "writethrough"
    writeback = "writeback"
    directsync = "directsync"
    unsafe = "unsafe"


class DiskAio(str, Enum):
    native = "native"
    threads = "threads"
    io_uring = "io_uring"


class MachineType(str, Enum):
    q35 = "q35"
    i440fx = "i440fx"


class Hugepages(str, Enum):
    two_mb = "2MB"
    one_gb = "1GB"


# The CEL variables the Proxmox provider binds when it evaluates a storage selector.
CEL_VARIABLES = ("name", "node", "storageType", "availableSpace")


class ProviderData(_Strict):
    """providerdata of the Omni Proxmox infra provider (its published JSON schema, restated)."""

    cores: int = Field(ge=1, description="cores per socket")
    memory: int = Field(ge=2048, description="MB")
    disk_size: int = Field(ge=5, description="GB")
    storage_selector: str = Field(min_length=1)
    sockets: Optional[int] = Field(default=None, ge=1)
    node: Optional[Name] = None
    network_bridge: Optional[str] = None
    vlan: Optional[int] = Field(default=None, ge=0)
    disk_ssd: Optional[bool] = None
    disk_discard: Optional[bool] = None
    disk_iothread: Optional[bool] = None
    disk_cache: Optional[DiskCache] = None
    disk_aio: Optional[DiskAio] = None
    cpu_type: Optional[str] = None
    machine_type: Optional[MachineType] = None
    numa: Optional[bool] = None
    hugepages: Optional[Hugepages] = None
    balloon: Optional[bool] = None

    @model_validator(mode="after")
    def _selector_uses_known_variables(self):
        if re.search(r"\btype\b", self.storage_selector):
            raise ValueError(
                "storage_selector uses `type`, a reserved word in CEL; use `storageType` "
                '(e.g. storageType == "rbd")'
            )
        return self

    @property
    def total_cores(self) -> int:
        return self.cores * (self.sockets or 1)

    def as_document(self) -> dict:
        """The providerdata mapping Omni stores: unset fields left out, enums as plain strings."""
        return self.model_dump(mode="json", exclude_none=True)


class MachineClassSpec(_Strict):
    provider_id: str = Field(min_length=1)
    provider_data: ProviderData


class InfraProviderSpec(_Strict):
    id: str = Field(min_length=1)


class ProxmoxSpec(_Strict):
    cluster: Name
    nodes: list[Name] = Field(min_length=1)


class Spec(_Strict):
    infra_provider: InfraProviderSpec
    proxmox: ProxmoxSpec
    machine_classes: dict[Name, MachineClassSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self):
        for name, cls in self.machine_classes.items():
            if cls.provider_id != self.infra_provider.id:
                raise _AtPath(
                    f"machine_classes.{name}.provider_id",
                    f"the infra provider id {self.infra_provider.id!r} (got {cls.provider_id!r}); "
                    "a class naming an unregistered provider never provisions anything",
                )
            node = cls.provider_data.node
            if node is not None and node not in self.proxmox.nodes:
                raise _AtPath(
                    f"machine_classes.{name}.provider_data.node",
                    f"one of the Proxmox nodes {self.proxmox.nodes} (got {node!r})",
                )
        return self


class _AtPath(ValueError):
    """A cross-check failure that knows its own dotted path."""

    def __init__(self, path: str, expected: str):
        super().__init__(expected)
        self.path, self.expected = path, expected


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _AtPath):
        return cause.path, cause.expected
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "no such field (check the spelling; see specs/omni.yaml for the fields)"
    elif err["type"] == "missing":
        msg = "a value (this field is required)"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return _dotted(loc), msg


def parse_spec(data: object, file: str) -> Spec:
    if not isinstance(data, dict):
        raise SpecError(file, "", "a YAML mapping at the top level")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        path, expected = _first_error(exc)
        raise SpecError(file, path, expected) from None


def load_spec(path: str | Path, display_name: str | None = None) -> Spec:
    """display_name is how messages name the file (the path the user wrote, not an absolute one)."""
    file = display_name or str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(file, "", f"a readable spec file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(file, where, f"valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_spec(data, file)
