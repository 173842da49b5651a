"""Waiting for something a separate process does, with a deadline: a test or benchmark must fail
with a reason rather than hang when a run, a service or a task never gets there."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(check: Callable[[], T | None], timeout: float, what: str | Callable[[], str], interval: float = 2.0) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return that.

    Raises :class:`TimeoutError` naming ``what`` (a text, or a function giving it, called once at the
    deadline so that it may describe the last state seen) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s: {what() if callable(what) else what}")
        time.sleep(interval)
    return result
