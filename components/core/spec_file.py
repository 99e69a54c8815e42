"""Reading a spec file into a Spec, or into every mistake it holds at once (components/core/errors.py: SpecError).

The models (components/core/spec.py) say what a value must be; this module turns pydantic's findings into one line
per mistake, in words, at the mistake's place in the file (YAML positions), names a misspelt key as unknown with
the field it probably meant, checks the references between parts on the raw document (so they are reported beside
every other mistake), and then what needs a valid model: patch files, and clusters that could never become Ready.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from components.core.errors import Problem, SpecError
from components.core.spec import CrossCheckFailure, CrossCheckFailures, Spec


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
        if isinstance(cause, (CrossCheckFailure, CrossCheckFailures)):
            for failure in cause.failures if isinstance(cause, CrossCheckFailures) else [cause]:
                out.append((loc + _split(failure.path), failure.expected))
            continue
        if loc in unknown:
            parent = loc[:-1]
            fields = _fields_at(parent)
            sibling_missing = [m[-1] for m in missing if m[:-1] == parent and isinstance(m[-1], str)]
            # A required field left out is the likeliest meaning; any field of the model next.
            guess = difflib.get_close_matches(str(loc[-1]), sibling_missing, n=1) or difflib.get_close_matches(
                str(loc[-1]), fields or [], n=1
            )
            if guess:
                explained.add(parent + (guess[0],))
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

    def one_of(loc: tuple, value: object, choices: list | None, what: str, target: tuple) -> None:
        """choices as the message shows them: nodes in the spec's order, names sorted."""
        if isinstance(value, str) and choices is not None and value not in choices and not wrong(target):
            out.append((loc, f"one of the {what} {choices} (got {value!r})"))

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
                None if classes is None else sorted(classes),
                "machine classes",
                ("machine_classes",),
            )
            class_name = _get(pool, "machine_class")
            # Omni refuses a class that auto-provisions an unlimited set at `sync` (its state validation), which
            # the offline `template validate` does not catch; a class that matches labels may have one.
            if (
                _get(pool, "size") == "unlimited"
                and class_name in (classes or {})
                and _get((classes or {})[class_name], "match_labels") is None
            ):
                out.append(
                    (
                        ("clusters", cname) + where + ("size",),
                        f"a number of machines, e.g. 3: machine class {class_name!r} provisions its machines, and "
                        f'Omni refuses it an unlimited set ("machine class {class_name!r} is using autoprovision, '
                        'so unlimited machine set allocation is not supported")',
                    )
                )
    one_of(
        ("tailscale_operator", "cluster"),
        _get(data, "tailscale_operator", "cluster"),
        sorted(clusters),
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
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()  # parsed once: the document and its keys' lines both come from it
        return (None, {}) if node is None else (loader.construct_document(node), yaml_lines(node))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(display_name, where, f"valid YAML ({getattr(exc, 'problem', exc)})") from None
    finally:
        loader.dispose()


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


def _read_yaml_file(target: Path, what: str) -> tuple[list | None, str | None]:
    """The documents of a file the spec names, or what is wrong with it."""
    try:
        return [d for d in yaml.safe_load_all(target.read_text()) if d is not None], None
    except OSError as exc:
        return None, f"a readable {what} ({target}: {exc.strerror})"
    except yaml.YAMLError as exc:
        return None, f"a {what} of valid YAML ({target}: {exc})"


def resolve_patch_files(spec: Spec, base: Path) -> list[tuple[str, str]]:
    """A file patch (one YAML mapping) or manifest file (Kubernetes documents) must be readable now, not when
    omnictl runs; its content is rendered inline, so templates never depend on paths. Returns (path, expected) of
    those that are not."""
    found = []
    for cname, cluster in spec.clusters.items():
        for where, patches in cluster._patch_lists():
            for i, patch in enumerate(patches):
                if patch.file is None:
                    continue
                dotted = f"clusters.{cname}.{where}[{i}].file"
                documents, problem = _read_yaml_file(base / patch.file, "patch file")
                if documents is not None and (len(documents) != 1 or not isinstance(documents[0], dict)):
                    problem = f"a patch file holding a YAML mapping ({base / patch.file})"
                if problem or documents is None:
                    found.append((dotted, problem or ""))
                    continue
                object.__setattr__(patch, "inline", documents[0])  # a frozen model: set once, at load
        for i, manifest in enumerate(cluster.manifests):
            if manifest.file is None:
                continue
            dotted = f"clusters.{cname}.manifests[{i}].file"
            documents, problem = _read_yaml_file(base / manifest.file, "manifest file")
            if documents is not None and not all(isinstance(d, dict) and d.get("kind") for d in documents):
                problem = f"a manifest file of Kubernetes objects, each with its kind ({base / manifest.file})"
            if problem or documents is None:
                found.append((dotted, problem or ""))
                continue
            object.__setattr__(manifest, "inline", documents)
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
