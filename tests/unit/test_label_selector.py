"""Omni's label-selector grammar (client/pkg/cosi/labels), restated: what Omni accepts parses to the same terms,
and what it refuses is refused with its words."""

import pytest

from components.core.label_selector import LabelSelectorError, Term, parse_selector

# Each row as Omni v1.7.0's labels.ParseQuery answers it (checked against that code, built from its module).
ACCEPTED = [
    ("a", [Term("a", "exists")]),
    ("!a", [Term("a", "exists", invert=True)]),
    (" a ", [Term("a", "exists")]),
    ("a, b", [Term("a", "exists"), Term("b", "exists")]),
    ("omni.sidero.dev/arch = amd64", [Term("omni.sidero.dev/arch", "=", ("amd64",))]),
    ("a==b", [Term("a", "=", ("b",))]),
    ("a != b", [Term("a", "=", ("b",), invert=True)]),
    ("a in (x, y, x)", [Term("a", "in", ("x", "y"))]),
    ("a notin (y,x)", [Term("a", "in", ("x", "y"), invert=True)]),
    ("a in ()", [Term("a", "in", ("",))]),
    ("a in (,x)", [Term("a", "in", ("", "x"))]),
    ("a in (x,,y)", [Term("a", "in", ("", "x", "y"))]),
    ("n < 5", [Term("n", "<", ("5",))]),
    ("n >= 5", [Term("n", "<", ("5",), invert=True)]),
    ("n <= 5", [Term("n", "<=", ("5",))]),
    ("n > 5", [Term("n", "<=", ("5",), invert=True)]),
    # After an operator a value runs to the next special character, spaces included.
    ("zone = rack 1, b", [Term("zone", "=", ("rack 1",)), Term("b", "exists")]),
    ("a = b c", [Term("a", "=", ("b c",))]),
    ("a in (x y)", [Term("a", "in", ("x y",))]),
    ('a = "x,y"', [Term("a", "=", ("x,y",))]),
    ("a =", [Term("a", "=", ("",))]),
    ("a, !b, c = d", [Term("a", "exists"), Term("b", "exists", invert=True), Term("c", "=", ("d",))]),
    ("", []),
]

TERM = "unable to parse term: "
COMPARISONS = "expected: ==, =, !=, >=, >, in, notin, <=, <"
REFUSED = [
    ("a b", f"{TERM}found 'b', {COMPARISONS}"),
    ("a ~ b", f"{TERM}found '~', {COMPARISONS}"),
    # `in` as a key is the operator to the lexer, so what follows it is a value, space and all.
    ("in in (in, notin)", f"{TERM}found 'in ', {COMPARISONS}"),
    ("a,", "found '', expected: identifier after ','"),
    ("!a = b", f"{TERM}expected EOF or ',', found "),
    ("a in x", f"{TERM}found 'x' expected: '('"),
    ("a in (x", f"{TERM}found '', expected: ',' or ')'"),
    ('a = "x', f"{TERM}found 'unterminated quoted string', expected: identifier"),
    ("a =! b", f"{TERM}found '!', expected: identifier"),
    ("a >== 5", f"{TERM}found '=', expected: identifier"),
    ("= b", "found '=', expected: !, identifier, or 'end of string'"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("!", f"{TERM}found '', expected: identifier"),
]


@pytest.mark.parametrize("text,terms", ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_what_omni_accepts_parses_to_its_terms(text, terms):
    assert parse_selector(text) == terms


@pytest.mark.parametrize("text,message", REFUSED, ids=[a for a, _ in REFUSED])
def test_what_omni_refuses_is_refused_in_its_words(text, message):
    with pytest.raises(LabelSelectorError) as refused:
        parse_selector(text)
    assert str(refused.value) == message
