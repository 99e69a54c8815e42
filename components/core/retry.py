"""Bounded retries for transient failures (a network blip, an API that answered too late), never for
permanent ones (a refused key, bad input, not found): those fail at once with their own message."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from components.core.console import progress

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # in all, the first included
    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 8.0

    def delays(self):
        delay = self.first_delay_seconds
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay_seconds)
            delay *= 2


DEFAULT_POLICY = RetryPolicy()


def with_retries(
    action: Callable[[], T],
    is_transient: Callable[[Exception], bool],
    what: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """action(), again after a growing pause while it fails transiently, at most policy.attempts times."""
    delays = policy.delays()
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            progress(f"{what}: {exc}; retrying in {delay:g}s")
            (sleep or time.sleep)(delay)
