"""Omni's label selectors (a MachineClass's matchLabels, `omnictl get --selector`), checked by Omni's grammar.

Omni parses each selector with its own lexer and parser (client/pkg/cosi/labels in siderolabs/omni), not
Kubernetes': `key`, `!key`, `key = value` (also `==`, `!=`), `key in (a, b)`, `key notin (a, b)`, numeric
`<`, `<=`, `>`, `>=`, terms joined by commas, values quoted with "..." when they hold special characters.
After an operator a value runs to the next special character, spaces included (`zone = rack 1`). This module
restates those rules, so a selector Omni would refuse is refused when the spec is loaded, with Omni's words.
"""

from __future__ import annotations

from dataclasses import dataclass

_SPECIAL = "=!(),<>"
_WHITESPACE = " \t\r\n"
_OPERATORS = ("!", "!=", "==", "=", ">", ">=", "<", "<=", "in", "notin")
_COMPARISONS = ("==", "=", "!=", ">=", ">", "in", "notin", "<=", "<")  # the order Omni lists them in


class LabelSelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    key: str
    op: str  # exists, =, in, <, <=
    values: tuple[str, ...] = ()
    invert: bool = False


# Token kinds: "end", "id", "(", ")", ",", an operator itself, or "error" (its literal the lexer's complaint, which
# Omni's parser then quotes as what it found).


class _Lexer:
    def __init__(self, text: str):
        self.text, self.pos = text, 0
        self.after_operator = False  # a value after an operator may hold spaces
        self.in_list = False

    def _special(self) -> tuple[str, str]:
        start, kind = self.pos, ""
        while self.pos < len(self.text) and self.text[self.pos] in _SPECIAL:
            candidate = self.text[start : self.pos + 1]
            if candidate in _OPERATORS or candidate in ("(", ")", ","):
                kind = candidate
                self.pos += 1
            elif kind:
                break
            else:
                self.pos += 1
        if not kind:
            return "error", f"error expected: keyword found '{self.text[start : self.pos]}'"
        return kind, kind

    def _identifier(self) -> tuple[str, str]:
        start = self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in _SPECIAL or (ch in _WHITESPACE and not self.after_operator):
                break
            self.pos += 1
        word = self.text[start : self.pos]
        return (word, word) if word in ("in", "notin") else ("id", word)

    def _quoted(self) -> tuple[str, str]:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                return "error", "unterminated quoted string"
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                return "id", "".join(out)
            if ch == "\\":
                if self.pos >= len(self.text):
                    return "error", "unterminated escape sequence in quoted string"
                ch = self.text[self.pos]
                self.pos += 1
            out.append(ch)

    def next(self) -> tuple[str, str]:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1
        if self.pos >= len(self.text):
            return "end", ""
        if self.text[self.pos] == '"':
            self.pos += 1
            kind, literal = self._quoted()
        elif self.text[self.pos] in _SPECIAL:
            kind, literal = self._special()
        else:
            kind, literal = self._identifier()
        if kind in _OPERATORS:
            self.after_operator = True
        elif kind == "(":
            self.in_list = True
        elif kind == ")":
            self.in_list = False
        elif kind == "," and not self.in_list:
            self.after_operator = False
        return kind, literal


class _Parser:
    def __init__(self, text: str):
        self.lexer = _Lexer(text)
        self.ahead: tuple[str, str] | None = None

    def peek(self, values: bool = True) -> tuple[str, str]:
        if self.ahead is None:
            self.ahead = self.lexer.next()
        kind, literal = self.ahead
        # Where a value may stand, `in` and `notin` are plain words.
        return ("id", literal) if values and kind in ("in", "notin") else (kind, literal)

    def take(self, values: bool = True) -> tuple[str, str]:
        token = self.peek(values)
        self.ahead = None
        return token

    def query(self) -> list[Term]:
        terms: list[Term] = []
        while True:
            kind, literal = self.peek()
            if kind == "end":
                return terms
            if kind not in ("id", "!"):
                raise LabelSelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            terms.append(self.term())
            kind, literal = self.take()
            if kind == "end":
                return terms
            if kind != ",":
                raise LabelSelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self.peek()
            if kind not in ("id", "!"):
                raise LabelSelectorError(f"found '{literal}', expected: identifier after ','")

    def term(self) -> Term:
        kind, key = self.take()
        absent = kind == "!"
        if absent:
            kind, key = self.take()
        if kind != "id":
            raise LabelSelectorError(f"unable to parse term: found '{key}', expected: identifier")
        if self.peek()[0] in ("end", ","):
            return Term(key, "exists", invert=absent)
        if absent:
            # Omni names the token by its String(), which is empty for an identifier.
            raise LabelSelectorError(f"unable to parse term: expected EOF or ',', found {'' if kind == 'id' else kind}")
        kind, literal = self.take(values=False)
        shapes = {
            "in": ("in", False),
            "notin": ("in", True),
            "=": ("=", False),
            "==": ("=", False),
            "!=": ("=", True),
            "<": ("<", False),
            ">=": ("<", True),
            "<=": ("<=", False),
            ">": ("<=", True),
        }
        if kind not in shapes:
            raise LabelSelectorError(f"unable to parse term: found '{literal}', expected: {', '.join(_COMPARISONS)}")
        op, invert = shapes[kind]
        values = self.values() if op == "in" else self.exact_value()
        return Term(key, op, values, invert)

    def values(self) -> tuple[str, ...]:
        kind, literal = self.take()
        if kind != "(":
            raise LabelSelectorError(f"unable to parse term: found '{literal}' expected: '('")
        kind, literal = self.peek()
        if kind == ")":
            self.take()
            return ("",)
        if kind not in ("id", ","):
            raise LabelSelectorError(f"unable to parse term: found '{literal}', expected: ',', ')' or identifier")
        found: set[str] = set()
        while True:
            kind, literal = self.take()
            if kind == "id":
                found.add(literal)
                after, after_literal = self.peek()
                if after == ",":
                    continue
                if after != ")":
                    raise LabelSelectorError(f"unable to parse term: found '{after_literal}', expected: ',' or ')'")
                break
            if kind == ",":
                if not found:
                    found.add("")  # "(," holds an empty value
                after = self.peek()[0]
                if after == ")":
                    found.add("")
                    break
                if after == ",":
                    self.take()
                    found.add("")
                continue
            raise LabelSelectorError(f"unable to parse term: found '{literal}', expected: ',', or identifier")
        self.take()  # ")"
        return tuple(sorted(found))

    def exact_value(self) -> tuple[str, ...]:
        kind, literal = self.peek()
        if kind in ("end", ","):
            return ("",)
        kind, literal = self.take()
        if kind != "id":
            raise LabelSelectorError(f"unable to parse term: found '{literal}', expected: identifier")
        return (literal,)


def parse_selector(text: str) -> list[Term]:
    """One selector's terms (all must hold), or SelectorError in Omni's words."""
    return _Parser(text).query()
