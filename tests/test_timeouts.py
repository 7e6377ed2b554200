"""``execution.timeouts.within``: what ``asyncio.wait_for`` did for the request path, cheaper."""

from __future__ import annotations

import asyncio
import warnings

import pytest

from scorer_core.execution.timeouts import within


def test_the_result_comes_back_when_in_time() -> None:
    async def main() -> str:
        async def work() -> str:
            await asyncio.sleep(0)
            return "done"

        return await within(work(), 5)

    assert asyncio.run(main()) == "done"


def test_past_the_limit_the_work_is_cancelled_where_it_waits_and_timeout_error_raised() -> None:
    seen: list[str] = []

    async def main() -> None:
        async def work() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await within(work(), 0.05)
        assert asyncio.get_running_loop().time() - started < 5
        # The caller's task is not left cancelled: it goes on awaiting.
        await asyncio.sleep(0)
        seen.append("after")

    asyncio.run(main())
    assert seen == ["cancelled", "after"]


@pytest.mark.parametrize("seconds", [0, -1.5])
def test_with_no_time_left_the_work_never_starts(seconds: float) -> None:
    started: list[bool] = []

    async def main() -> None:
        async def work() -> None:
            started.append(True)

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a coroutine never awaited would warn
            with pytest.raises(TimeoutError):
                await within(work(), seconds)

    asyncio.run(main())
    assert started == []


@pytest.mark.parametrize("seconds", [0, 0.01])
def test_a_future_given_up_on_is_cancelled_as_wait_for_does(seconds: float) -> None:
    """With no time left, before it is awaited; else at the limit."""

    async def main() -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            await within(future, seconds)
        return future

    assert asyncio.run(main()).cancelled()


def test_the_callers_own_cancellation_stays_a_cancellation() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(within(asyncio.sleep(10), 5))
        await asyncio.sleep(0)  # one turn of the loop: the task now waits in asyncio.sleep(10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_an_error_of_the_work_is_raised_as_it_is() -> None:
    async def main() -> None:
        async def work() -> None:
            raise ValueError("the work's own")

        with pytest.raises(ValueError, match="the work's own"):
            await within(work(), 5)

    asyncio.run(main())


def test_many_limits_under_way_each_ends_at_its_own() -> None:
    """One timer serves every limit: a shorter limit given later still ends first, and work done
    in time comes back while the others are cut off."""
    limits = [1.0, 0.05, 0.5, 5.0]

    async def main() -> list[tuple[float, object]]:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def one(limit: float) -> tuple[float, object]:
            work = asyncio.sleep(0.1, "done") if limit == 5.0 else asyncio.sleep(10)
            try:
                outcome: object = await within(work, limit)
            except TimeoutError:
                outcome = TimeoutError
            return loop.time() - started, outcome

        return await asyncio.gather(*(one(limit) for limit in limits))

    for limit, (took, outcome) in zip(limits, asyncio.run(main()), strict=True):
        if limit == 5.0:
            assert outcome == "done" and took < 1.0
        else:
            assert outcome is TimeoutError
            assert limit - 0.002 <= took < limit + 0.3, (limit, took)


def test_nested_limits_the_one_that_passed_raises() -> None:
    async def main() -> list[str]:
        seen: list[str] = []

        async def inner(limit: float) -> None:
            try:
                await within(asyncio.sleep(10), limit)
            except asyncio.CancelledError:
                seen.append("inner cancelled")
                raise
            except TimeoutError:
                seen.append("inner timed out")
                raise

        with pytest.raises(TimeoutError):
            await within(inner(5), 0.05)  # the outer limit passes
        with pytest.raises(TimeoutError):
            await within(inner(0.05), 5)  # the inner one does
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return seen

    assert asyncio.run(main()) == ["inner cancelled", "inner timed out"]


def test_work_that_finishes_despite_the_cancellation_returns_and_leaves_no_cancel_behind() -> None:
    async def main() -> tuple[str, int]:
        async def stubborn() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "finished anyway"
            return "slept"

        result = await within(stubborn(), 0.05)
        await asyncio.sleep(0.01)  # a cancel left pending would be raised here
        return result, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    assert asyncio.run(main()) == ("finished anyway", 0)


def test_limits_end_on_time_under_the_servers_event_loop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await within(asyncio.sleep(10), 0.03)
        return loop.time() - started

    took = uvloop.run(main())
    assert 0.028 <= took < 0.5, took
