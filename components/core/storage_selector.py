"""Storage selectors as the Proxmox infra provider judges them.

The provider compiles a selector with cel-go (talos's cel.ParseBooleanExpression): parsed, type-checked
against four declared variables, and refused unless its result is a bool. cel-expr-python (Google's CEL,
on cel-cpp) checks types by the same rules, so a selector this module accepts is one the provider accepts,
and the problem it names is the provider's own words (tests/unit/test_storage_selector.py holds the table
that shows the agreement, against the lab's provider stand-in, which is cel-go).
"""

from __future__ import annotations

import re
from functools import cache

from cel_expr_python import cel

# The variables the provider binds per storage (name, node, storageType as strings; availableSpace, bytes,
# as a uint: compare it with a uint literal, 1099511627776u).
VARIABLES = {
    "name": cel.Type.STRING,
    "node": cel.Type.STRING,
    "storageType": cel.Type.STRING,
    "availableSpace": cel.Type.UINT,
}


class SelectorError(ValueError):
    """A selector the provider refuses (at compile) or cannot evaluate (at a storage), in the provider's words."""


@cache
def _environment():
    return cel.NewEnv(variables=VARIABLES)


def _go_type_name(type_: cel.Type) -> str:
    """The name cel-go prints for a type (`string`, `list(int)`, `map(string, int)`, `null_type`)."""
    name = type_.name().lower()
    return "null_type" if name == "null" else name.replace("<", "(").replace(">", ")")


def _first_issue(message: str) -> str:
    """`ERROR: <input>:1:16: found no matching overload …` of the checker's report, without the status prefix."""
    for line in message.splitlines():
        found = re.search(r"ERROR: <input>:\d+:\d+: .*", line)
        if found:
            return found.group(0).removesuffix(" [INVALID_ARGUMENT]")
    return message.splitlines()[0] if message else "does not compile"


@cache
def compile_selector(selector: str):
    """The compiled selector; SelectorError with the provider's message if the provider would refuse it."""
    try:
        expression = _environment().compile(selector)
    except RuntimeError as exc:
        raise SelectorError(_first_issue(str(exc))) from None
    result = expression.return_type()
    if result != cel.Type.BOOL:
        raise SelectorError(f"expression output type is {_go_type_name(result)}, expected bool")
    return expression


def selector_problem(selector: str) -> str | None:
    """What is wrong with a selector, for a spec error: the expectation in words and the provider's message."""
    try:
        compile_selector(selector)
    except SelectorError as exc:
        hint = ""
        if "type(type)" in str(exc) or re.search(r"(?<![\w.])type\b", selector):
            hint = "; `type` is CEL's own word: the storage's type is storageType, e.g. storageType == \"rbd\""
        elif "uint" in str(exc):
            hint = "; availableSpace is unsigned: write numbers compared with it with a u, e.g. 1099511627776u"
        return (
            "a CEL expression over name, node, storageType and availableSpace that is true or false, "
            f'e.g. name == "vm_ssd" (the provider would say: {exc}{hint})'
        )
    return None


def matches(selector: str, storage_name: str, storage_type: str, available_bytes: int, node: str) -> bool:
    """Whether the selector is true for one storage of a node, as the provider evaluates it; SelectorError when
    the evaluation fails (an overflow, say), which fails the provider's provisioning too."""
    value = compile_selector(selector).eval(
        data={
            "name": storage_name,
            "node": node,
            "storageType": storage_type,
            "availableSpace": max(int(available_bytes), 0),
        }
    )
    if value.type() != cel.Type.BOOL:
        raise SelectorError(f"{selector!r} on storage {storage_name} of node {node}: {value.value()}")
    return bool(value.value())
