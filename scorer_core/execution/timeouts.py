"""Awaiting with a time limit, at a cost a single-row request can afford.

Why not ``asyncio.wait_for``: it runs what it awaits in a task of its own, about 16 us per call
on this project's machines, and a request met it twice (its body, its score). A time limit on
the current task (``asyncio.timeout``, Python 3.11) costs about 4 us and cancels the awaited
work the same way: a ``CancelledError`` raised where it waits.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11 and later


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable``, or ``TimeoutError`` once ``seconds`` have passed.

    With no time left (``seconds <= 0``) it raises at once, before the work starts, as
    ``wait_for`` does: a request whose deadline has passed never joins a batch.
    """
    if seconds <= 0:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: no "was never awaited" warning
        elif asyncio.isfuture(awaitable):
            awaitable.cancel()  # as wait_for cancels what it gave up on
        raise TimeoutError
    if _timeout is None:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
            raise TimeoutError from None
    async with _timeout(seconds):
        return await awaitable
