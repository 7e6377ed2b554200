"""``config.ids.random_uuid``: ids in UUID version 4's form, with no system call per id."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from scorer_core.config.ids import random_uuid


def test_each_id_is_a_version_4_uuid_written_as_uuid_writes_it() -> None:
    for _ in range(20_000):
        text = random_uuid()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat_and_every_random_digit_varies() -> None:
    ids = [random_uuid() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    # Apart from the version digit (14) and the variant's (19, one of 8, 9, a, b), every position
    # takes all 16 digits: the bits are not stuck anywhere.
    positions = [i for i in range(36) if i not in (8, 13, 14, 18, 19, 23)]
    for i in positions:
        assert len({text[i] for text in ids}) == 16, i
    assert {text[14] for text in ids} == {"4"}
    assert {text[19] for text in ids} == set("89ab")


def test_the_kernels_random_source_is_read_once_per_256_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # os.urandom releases the GIL around getrandom(2): the hand-off the module makes rare.
    calls: list[int] = []
    real = os.urandom

    def counted(size: int) -> bytes:
        calls.append(size)
        return real(size)

    monkeypatch.setattr(os, "urandom", counted)
    assert len({random_uuid() for _ in range(2560)}) == 2560
    assert 10 <= len(calls) <= 11 and set(calls) == {16 * 256}


def test_ids_come_from_the_kernels_random_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not from a seeded generator, whose state a client could recover from the ids it sees."""
    from scorer_core.config import ids

    monkeypatch.setattr(ids, "_unused", [])
    monkeypatch.setattr(os, "urandom", lambda size: bytes(range(16)) * (size // 16))
    assert random_uuid() == str(uuid.UUID(bytes=bytes(range(16)), version=4))


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork: Linux")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.close(read)
        os.write(write, ",".join(random_uuid() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parents = [random_uuid() for _ in range(3)]
    with os.fdopen(read, "rb") as pipe:
        childs = pipe.read().decode().split(",")
    os.waitpid(pid, 0)
    assert len(childs) == 3 and not set(childs) & set(parents)
