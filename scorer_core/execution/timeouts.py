"""Awaiting with a time limit, at a cost a single-row request can afford.

Why not ``asyncio.wait_for``: it runs what it awaits in a task of its own, about 16 us per call
on this project's machines, and a request met it twice (its body, its score). A time limit on
the current task (``asyncio.timeout``, Python 3.11) cancels the awaited work the same way, a
``CancelledError`` raised where it waits, but still cost 6.6 us a use: a timer armed and
cancelled in the event loop, and two coroutines for its context manager. Under single rows at
64 connections its line was 5% of the event loop's samples.

So each event loop keeps one ``_Watch`` of the deadlines of every ``within`` under way, armed
on the earliest. A request adds its deadline to a set and takes it out again (under a
microsecond), and the timer is armed again only when a deadline comes before the one it is
armed on: requests given the same time limit come in the order of their deadlines, and each one
finishes long before its own. The cancellation is ``asyncio.timeout``'s: the task is cancelled
at its deadline, and the ``CancelledError`` becomes ``TimeoutError`` unless someone else also
cancelled the task.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")

#: Whether tasks count their cancel requests (``Task.uncancel``, Python 3.11), which tells the
#: watch's cancellation from a caller's.
_COUNTED = hasattr(asyncio.Task, "uncancel")
#: A deadline this close to the loop's time when the timer runs is due: timers may run early by
#: the loop's clock resolution (uvloop's is a millisecond), and one running early must not
#: leave its deadline for a second turn of the timer.
_EARLY = 0.001


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
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop) if _COUNTED else None
    if task is None:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:  # not the built-in TimeoutError before Python 3.11
            raise TimeoutError from None
    watch: _Watch | None = getattr(_local, "watch", None)
    if watch is None or watch.loop is not loop:
        # A thread that runs another loop gets a new watch; the old one keeps the deadlines it
        # has, and its loop's timer, until they are done.
        watch = _local.watch = _Watch(loop)
    deadline = _Deadline(loop.time() + seconds, task)
    watch.add(deadline)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if deadline.expired and task.uncancel() <= deadline.cancelling:
            raise TimeoutError from None
        raise
    except BaseException:
        if deadline.expired:
            task.uncancel()
        raise
    finally:
        watch.remove(deadline)
    if deadline.expired:  # the work swallowed the cancellation and finished
        task.uncancel()
    return result


class _Deadline:
    """One ``within``: when, and which task it cancels then."""

    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, when: float, task: asyncio.Task[object]) -> None:
        self.when = when
        self.task = task
        #: The task's cancel requests before this deadline's: one more, on the way out, was not ours.
        self.cancelling = task.cancelling()
        self.expired = False


class _Watch:
    """The deadlines of one event loop's ``within`` calls, under one timer armed on the earliest."""

    __slots__ = ("_armed_at", "_deadlines", "_timer", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._deadlines: set[_Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def add(self, deadline: _Deadline) -> None:
        self._deadlines.add(deadline)
        if deadline.when < self._armed_at:
            self._arm(deadline.when)

    def remove(self, deadline: _Deadline) -> None:
        # The timer stays armed: it finds nothing due, and arms itself on what is left.
        self._deadlines.discard(deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._armed_at = math.inf
        now = self.loop.time() + _EARLY
        due = [deadline for deadline in self._deadlines if deadline.when <= now]
        for deadline in due:
            self._deadlines.discard(deadline)
            deadline.expired = True
            deadline.task.cancel()
        if self._deadlines:
            self._arm(min(deadline.when for deadline in self._deadlines))


#: The watch of the loop that ran last on each thread: a loop runs on one thread, and a server
#: runs one loop.
_local = threading.local()
