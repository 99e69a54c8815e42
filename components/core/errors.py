"""The two kinds of user mistake: a wrong spec file and a wrong stack config. Each prints as lines of
`file: field: what was expected`, never as a traceback; callers catch UserError for both."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    expected: str
    line: int | None = None  # 1-based line in the file, where known; orders the report

    def sort_key(self) -> tuple:
        return (self.line is None, self.line or 0, self.path)


class UserError(Exception):
    """One or more mistakes in one file; the message holds one line per mistake, in file order."""

    def __init__(self, file: str, path: str = "", expected: str = "", *, problems: Iterable[Problem] = ()):
        found = sorted(problems, key=Problem.sort_key) or [Problem(path, expected)]
        self.file, self.problems = file, found
        # The first mistake's fields, for callers (and tests) that deal in one.
        self.path, self.expected = found[0].path, found[0].expected
        super().__init__(
            "\n".join(f"{file}: {p.path}: {p.expected}" if p.path else f"{file}: {p.expected}" for p in found)
        )


class SpecError(UserError):
    """A mistake in the spec file (specs/omni.yaml or the stack's `spec`)."""


class ConfigError(UserError):
    """A mistake in the stack config (Pulumi.<stack>.yaml): a missing secret, a bad number, a bad key."""
