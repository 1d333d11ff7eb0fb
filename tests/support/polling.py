"""Waiting, bounded in time, for what another task or process makes true
without telling us (a socket file appearing, a counter reaching a value)."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio


async def wait_until(predicate: Callable[[], object], *, timeout: float = 5.0, interval: float = 0.01) -> None:
    """Return once ``predicate()`` is true; ``trio.TooSlowError`` after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  (nothing to wait on but the condition itself)
            await trio.sleep(interval)


def wait_until_sync(predicate: Callable[[], object], *, timeout: float = 15.0, interval: float = 0.05) -> None:
    """The same, blocking (for tests that drive processes); ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {predicate}")
        time.sleep(interval)
