"""The deadline of the request whose body is parsed, or whose answer is written, in this thread.

Why: that work runs in a thread, and a thread cannot be stopped. The request gets its 504 at the
deadline, but without this the thread would run on to the end of a 60 MB body, and clients that
keep sending such bodies would pile up threads that each hold a core. The server sets the
deadline (``working_until``) before handing the work to a thread, which inherits it, and the
loops over pieces, chunks and columns call ``checkpoint`` between pieces: past the deadline the
work stops there, within a piece's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["DeadlinePassed", "checkpoint", "working_until"]

_deadline: ContextVar[float | None] = ContextVar("scorer_work_deadline", default=None)


class DeadlinePassed(Exception):
    """Raised by ``checkpoint`` past the deadline; the server answers 504 (or already has)."""


@contextmanager
def working_until(deadline: float) -> Iterator[None]:
    """Work started in this context (and threads started from it) stops at ``deadline``
    (``time.monotonic()``)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def checkpoint() -> None:
    """Raise ``DeadlinePassed`` when the current work's deadline has passed."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlinePassed
