"""Storage selectors judged as the provider judges them (components/core/storage_selector.py), row by row
against cel-go itself: the lab's provider stand-in compiles selectors with the provider's environment
(`--check-selectors`). cel-python, which the spec used before, agreed on 20 of these 40 rows (it parses but
does not check types); cel-expr-python agrees on all 40, and on the message of 39 (the other differs in how a
member call's argument types are written)."""

import json
import re
import subprocess

import pytest

from components.core.storage_selector import SelectorError, compile_selector, matches, selector_problem
from tests.conftest import PROJECT_ROOT

STANDIN = PROJECT_ROOT / ".tools" / "bin" / "omni-infra-provider-standin"

# (selector, whether the provider accepts it)
SELECTORS = [
    ('name == "vm_ssd"', True),
    ('storageType == "lvmthin"', True),
    ("availableSpace > 1099511627776u", True),
    ('name.startsWith("vm") && availableSpace >= 100u', True),
    ('node == "hotel" || name == "local"', True),
    ('name in ["vm_ssd", "local-lvm"]', True),
    ('name.matches("^vm_")', True),
    ("size(name) > 2", True),
    ('name.contains("ssd")', True),
    ('!(name == "x")', True),
    ("int(availableSpace) > 5", True),
    ("availableSpace > uint(5)", True),
    ("type(name) == string", True),
    ('dyn(name) == "x"', True),
    ("availableSpace / 2u > 1u", True),
    ("true", True),
    ('name == "a" ? true : false', True),
    ("name", False),  # not a bool: the provider's "expression output type is string, expected bool"
    ('"vm_ssd"', False),
    ("availableSpace", False),
    ("availableSpace > 1099511627776", False),  # uint against int: no overload
    ("1 == 1u", False),
    ('type == "rbd"', False),
    ("foo == 1", False),
    ("name == ", False),
    ("name.size()", False),
    ("[1]", False),
    ('{"a": 1}', False),
    ("1.5", False),
    ("null", False),
    ("name == 1", False),
    ("availableSpace > 1.5", False),
    ("availableSpace > -1", False),
    ('name + 1 == "x"', False),
    ("availableSpace > 18446744073709551616u", False),  # beyond uint64
    ('"a" < 1', False),
    ("name.startsWith(1)", False),
    ('name == "a" ? 1 : 2', False),
    ('storage == "vm_ssd"', False),
    ('availableSpace >= 0 && name == "x"', False),
]


@pytest.fixture(scope="module")
def cel_go() -> dict[str, str]:
    """The provider's verdict per selector: '' when accepted, else cel-go's message."""
    proc = subprocess.run(
        [str(STANDIN), "--check-selectors"],
        input="".join(json.dumps(selector) + "\n" for selector, _ in SELECTORS),
        capture_output=True,
        text=True,
        check=True,
    )
    return {v["selector"]: v["problem"] for v in map(json.loads, proc.stdout.splitlines())}


@pytest.mark.parametrize(("selector", "accepted"), SELECTORS)
def test_a_selector_is_judged_as_cel_go_judges_it_in_its_words(cel_go, selector, accepted):
    assert (cel_go[selector] == "") is accepted  # the table itself says what cel-go does
    try:
        compile_selector(selector)
        problem = ""
    except SelectorError as exc:
        problem = str(exc)
    # cel-go writes a member call's argument types as 'string.(int)', cel-cpp as '(string, int)' (1 row of 40).
    expected = re.sub(r"'(\w+)\.\(([^)]*)\)'", r"'(\1, \2)'", cel_go[selector].split("\n")[0])
    assert problem == expected


def test_the_spec_error_says_what_is_expected_and_quotes_the_provider():
    assert selector_problem('name == "vm_ssd"') is None
    problem = selector_problem("availableSpace > 1099511627776")
    assert problem.startswith("a CEL expression over name, node, storageType and availableSpace that is true or false")
    assert "found no matching overload for '_>_' applied to '(uint, int)'" in problem and "1099511627776u" in problem
    assert "expression output type is string, expected bool" in selector_problem("name")
    assert "storageType" in selector_problem('type == "rbd"')


def test_evaluation_is_the_providers_and_an_overflow_is_an_error_not_a_miss():
    assert matches('name == "vm_ssd" && availableSpace > 10u', "vm_ssd", "lvmthin", 11, "hotel")
    assert not matches('name == "vm_ssd" && availableSpace > 10u', "vm_ssd", "lvmthin", 10, "hotel")
    assert matches('node == "hotel"', "local", "dir", -1, "hotel")  # a negative reading is read as 0
    with pytest.raises(SelectorError, match="overflow"):
        matches("availableSpace - 20u > 0u", "vm_ssd", "lvmthin", 10, "hotel")
