"""Random ids in UUID version 4's form, made without a system call.

Why: ``uuid.uuid4()`` reads ``os.urandom``, and CPython releases the GIL around that
``getrandom(2)``. On a loaded server the model thread takes the GIL at that moment, and the event
loop waits to get it back, up to the interpreter's switch interval: one such wait for every Open
Inference Protocol request without an ``id``, and one for every row of an H2O answer whose
``idField`` is generated. Counted with strace on a server at 64 clients: an Open Inference
Protocol request made 15.8 futex calls (GIL hand-offs) and one ``getrandom``; with these ids,
11.3 and none, as an H2O request (11.8).

The ids have to be unique, not secret: nothing is authorised by one. A generator seeded from
``os.urandom`` once per process, and again in a forked child, gives the same 122 random bits.
"""

from __future__ import annotations

import os
import random

__all__ = ["random_uuid"]

_random = random.Random()  # seeded from os.urandom

#: UUID version 4 (the 4 bits at 76-79) and RFC 4122's variant (the 2 bits at 62-63).
_CLEAR = ~((0xF << 76) | (0x3 << 62))
_SET = (0x4 << 76) | (0x2 << 62)


def random_uuid() -> str:
    """A random UUID (version 4), as ``str(uuid.uuid4())`` writes one."""
    text = "%032x" % (_random.getrandbits(128) & _CLEAR | _SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _reseed() -> None:
    """A forked child (a Ray replica, a forking process manager) must not repeat its parent's ids."""
    _random.seed()


os.register_at_fork(after_in_child=_reseed)
