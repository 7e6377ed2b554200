"""Random ids in UUID version 4's form, without a system call per id.

Why: ``uuid.uuid4()`` reads ``os.urandom``, and CPython releases the GIL around that
``getrandom(2)``. On a loaded server the model thread takes the GIL at that moment, and the event
loop waits to get it back, up to the interpreter's switch interval: one such wait for every Open
Inference Protocol request without an ``id``, and one for every row of an H2O answer whose
``idField`` is generated. Counted with strace on a server at 64 clients: an Open Inference
Protocol request made 15.8 futex calls (GIL hand-offs) and one ``getrandom``; with these ids,
11.3 and none, as an H2O request (11.8).

The bits still come from ``os.urandom``, so an id cannot be guessed from others (a seeded
generator's can: 400 ids of one answer gave its state away), but 256 ids' worth at a time: one
system call per 256 ids. A forked child drops what its parent had drawn.
"""

from __future__ import annotations

import os

__all__ = ["random_uuid"]

#: Ids drawn from the kernel in one system call.
_DRAWN = 256
#: Bits drawn and not yet given (list.pop is atomic: threads never get the same bits).
_unused: list[int] = []

#: UUID version 4 (the 4 bits at 76-79) and RFC 4122's variant (the 2 bits at 62-63).
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_SET = (0x4 << 76) | (0x2 << 62)


def random_uuid() -> str:
    """A random UUID (version 4), as ``str(uuid.uuid4())`` writes one."""
    try:
        bits = _unused.pop()
    except IndexError:
        drawn = os.urandom(16 * _DRAWN)
        _unused.extend(int.from_bytes(drawn[i : i + 16], "big") for i in range(0, len(drawn), 16))
        bits = _unused.pop()
    text = "%032x" % (bits & _CLEAR | _SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# A forked child (a Ray replica, a forking process manager) must not give its parent's ids again.
os.register_at_fork(after_in_child=_unused.clear)
