"""Failed requests pay for their isolation: their answers are paced, their neighbours' are not."""

from __future__ import annotations

import asyncio
import time

import pytest

from scorer_core.errors import ModelError
from scorer_core.execution.batcher import Batcher
from scorer_core.execution.failures import FailurePacer
from tests.batching.conftest import in_process, task


def test_the_pacer_keeps_failures_within_their_share_and_its_bounds():
    now = [100.0]
    pacer = FailurePacer(share=0.1, max_delay=2.0, clock=lambda: now[0])
    assert pacer.delay(0.01, None) == pytest.approx(0.1)
    assert pacer.delay(0.01, None) == pytest.approx(0.2), "a second failure waits behind the first"
    assert pacer.delay(1.0, None) == pytest.approx(2.0), "never past max_delay"
    assert pacer.delay(1.0, deadline=100.5) == pytest.approx(0.45), "never past the deadline"
    assert pacer.delay(0.0, None) == 0.0, "a failure that cost nobody anything is answered at once"
    assert FailurePacer(share=1, max_delay=2).delay(5.0, None) == 0.0


def test_a_crash_is_paced_past_max_delay_but_never_past_its_deadline():
    now = [100.0]
    pacer = FailurePacer(share=0.05, max_delay=2.0, clock=lambda: now[0])
    # A worker that takes 0.5 s to start, lost to a crash: the answer waits 0.5 / 0.05 s.
    assert pacer.delay(0.5, deadline=160.0, capped=False) == pytest.approx(10.0)
    assert pacer.delay(0.5, deadline=115.0, capped=False) == pytest.approx(14.95), "behind the first"
    now[0] = 116.0  # the deadline also bounded the chain: a later failure does not wait behind 120
    assert pacer.delay(0.01, None) == pytest.approx(0.2)
    assert pacer.delay(5.0, None, capped=False) == pytest.approx(2.0), "no deadline: max_delay bounds it"


def test_good_neighbours_are_answered_before_the_paced_failure(probe_model):
    model = probe_model(score_delay=0.02)

    async def main():
        pacer = FailurePacer(share=0.05, max_delay=1.0)
        batcher = Batcher(in_process(model, 1), concurrency=1, max_rows=100, pacer=pacer)
        blocker = asyncio.ensure_future(batcher.submit(task([1])))  # the others batch behind it
        await asyncio.sleep(0.005)
        done: dict[str, float] = {}
        started = time.monotonic()

        async def timed(name, xs):
            try:
                return await batcher.submit(task(xs))
            finally:
                done[name] = time.monotonic() - started

        outcomes = await asyncio.gather(
            *(timed(f"good{i}", [i + 100]) for i in range(6)), timed("poison", [13]), return_exceptions=True
        )
        await blocker
        await batcher.close()
        return outcomes, done

    outcomes, done = asyncio.run(main())
    assert [o.outputs["y"].tolist() for o in outcomes[:6]] == [[2.0 * (i + 100)] for i in range(6)]
    assert isinstance(outcomes[6], ModelError)
    slowest_good = max(t for name, t in done.items() if name != "poison")
    # the isolation took a few 20 ms calls; at a 5% share its answer waits 20 times that
    assert done["poison"] > slowest_good + 0.2, done


def test_when_every_request_fails_nobody_waits(probe_model):
    model = probe_model(score_delay=0.01)

    async def main():
        batcher = Batcher(in_process(model, 1), concurrency=1, max_rows=100, pacer=FailurePacer(0.01, 5.0))
        blocker = asyncio.ensure_future(batcher.submit(task([1])))
        await asyncio.sleep(0.005)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(batcher.submit(task([13])) for _ in range(4)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        await blocker
        await batcher.close()
        return outcomes, elapsed

    outcomes, elapsed = asyncio.run(main())
    assert all(isinstance(o, ModelError) for o in outcomes)
    assert elapsed < 1.0, "a broken model's errors are not held: there is nobody to protect"
