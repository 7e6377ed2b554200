"""Admission's queue: FIFO hand-over, expiry, refusal and clients that leave while waiting."""

from __future__ import annotations

import asyncio

import pytest

from scorer_core.errors import Overloaded
from scorer_core.service.admission import Admission


async def hold_slot(admission: Admission, release: asyncio.Event) -> None:
    """Take a slot and keep it until ``release`` is set."""
    async with admission.admit():
        await release.wait()


def test_a_finished_request_hands_its_slot_to_the_oldest_waiter():
    order: list[str] = []

    async def request(admission: Admission, name: str, hold: asyncio.Event) -> None:
        async with admission.admit():
            order.append(name)
            await hold.wait()

    async def main() -> None:
        admission = Admission(concurrency=1, queue_size=2, queue_timeout=5)
        first, rest = asyncio.Event(), asyncio.Event()
        rest.set()
        running = [asyncio.create_task(request(admission, "a", first))]
        await asyncio.sleep(0)
        running += [asyncio.create_task(request(admission, n, rest)) for n in "bc"]
        await asyncio.sleep(0)
        assert (admission.in_flight, admission.waiting, admission.full) == (1, 2, True)
        with pytest.raises(Overloaded, match="SCORER_QUEUE_SIZE"):
            async with admission.admit():
                pass
        first.set()
        await asyncio.gather(*running)
        assert (admission.in_flight, admission.waiting) == (0, 0)

    asyncio.run(main())
    assert order == ["a", "b", "c"]


def test_a_waiter_past_the_queue_timeout_is_refused_and_frees_its_place():
    async def main() -> None:
        admission = Admission(concurrency=1, queue_size=1, queue_timeout=0.05)
        hold = asyncio.Event()
        task = asyncio.create_task(hold_slot(admission, hold))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="SCORER_QUEUE_TIMEOUT"):
            async with admission.admit():
                pass
        assert admission.waiting == 0
        hold.set()
        await task
        assert admission.in_flight == 0

    asyncio.run(main())


def test_a_client_that_leaves_while_waiting_costs_no_slot():
    async def main() -> None:
        admission = Admission(concurrency=1, queue_size=4, queue_timeout=5)
        hold = asyncio.Event()
        async def waiter() -> None:
            async with admission.admit():
                pass

        task = asyncio.create_task(hold_slot(admission, hold))
        await asyncio.sleep(0)
        leaving = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        assert admission.waiting == 1
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        assert admission.waiting == 0
        hold.set()
        await task
        async with admission.admit():
            assert admission.in_flight == 1
        assert admission.in_flight == 0

    asyncio.run(main())
