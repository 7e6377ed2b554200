from __future__ import annotations

import asyncio

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scorer_core.errors import ModelError, ScorerError
from scorer_core.execution.batcher import Batcher
from scorer_core.execution.isolation import BatchReport
from scorer_core.execution.scoring import run_task
from tests.batching.conftest import in_process, task


def test_concurrent_tasks_share_model_calls(probe_model):
    model = probe_model(score_delay=0.02, outputs=[["y", "Float64"], ["batch_rows", "Int64"]])

    async def main():
        batcher = Batcher(in_process(model, 1), concurrency=1, max_rows=1000)
        results = await asyncio.gather(*(batcher.submit(task([i])) for i in range(20, 40)))
        await batcher.close()
        return batcher, results

    batcher, results = asyncio.run(main())
    assert [r.outputs["y"].tolist() for r in results] == [[2.0 * i] for i in range(20, 40)]
    assert batcher.batches_sent < 20, "concurrent requests must be merged"
    assert max(int(r.outputs["batch_rows"][0]) for r in results) > 1


def test_max_rows_bounds_a_merged_call(probe_model):
    model = probe_model(score_delay=0.01, outputs=[["y", "Float64"], ["batch_rows", "Int64"]])

    async def main():
        batcher = Batcher(in_process(model, 1), concurrency=1, max_rows=4)
        results = await asyncio.gather(*(batcher.submit(task([i, i])) for i in range(10)))
        await batcher.close()
        return results

    assert max(int(r.outputs["batch_rows"][0]) for r in asyncio.run(main())) <= 4


def test_max_wait_grows_a_partial_batch(probe_model):
    model = probe_model(outputs=[["y", "Float64"], ["batch_rows", "Int64"]])

    async def main():
        batcher = Batcher(in_process(model, 1), concurrency=1, max_rows=3, max_wait=0.5)
        first = asyncio.ensure_future(batcher.submit(task([1])))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(task([2, 3])))
        results = await asyncio.gather(first, second)
        await batcher.close()
        return results

    assert [int(r.outputs["batch_rows"][0]) for r in asyncio.run(main())] == [3, 3]


def test_a_failing_executor_fails_only_its_batch(probe_model):
    calls = []

    async def flaky(tasks, settle):
        calls.append(len(tasks))
        if len(calls) == 1:
            raise RuntimeError("worker died")
        return BatchReport([run_task(probe_model(), t) for t in tasks])

    async def main():
        batcher = Batcher(flaky, concurrency=1, max_rows=100)
        first = await asyncio.gather(batcher.submit(task([1])), return_exceptions=True)
        second = await batcher.submit(task([2]))
        await batcher.close()
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, ModelError) and "worker died" in str(first)
    assert second.outputs["y"].tolist() == [4.0]


requests = st.lists(
    st.tuples(
        st.lists(st.sampled_from([0.5, 1.0, 2.0, 13.0, -3.0]), min_size=0, max_size=6),
        st.sampled_from([None, "Bearer a", "Bearer b"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests, max_rows=st.integers(1, 20), concurrency=st.integers(1, 3))
def test_any_mix_of_requests_gets_what_scoring_each_alone_gets(probe_model, requests, max_rows, concurrency):
    """Sizes, header values and failing rows (x = 13) mixed at random and submitted at once."""
    model = probe_model(outputs=[["y", "Float64"], ["auth", "Str"]])
    tasks = [task(xs, auth) for xs, auth in requests]

    def alone(t):
        try:
            result = run_task(model, t)
            return ("ok", {n: c.tolist() for n, c in result.outputs.items()})
        except ScorerError as exc:
            return ("error", str(exc))

    async def together():
        batcher = Batcher(in_process(model, concurrency), concurrency=concurrency, max_rows=max_rows)
        outcomes = await asyncio.gather(*(batcher.submit(t) for t in tasks), return_exceptions=True)
        await batcher.close()
        return [
            ("error", str(o))
            if isinstance(o, ScorerError)
            else ("ok", {n: c.tolist() for n, c in o.outputs.items()})
            for o in outcomes
        ]

    expected = [alone(t) for t in tasks]
    assert asyncio.run(together()) == expected
    for (xs, auth), (status, outputs) in zip(requests, expected, strict=True):
        if status == "ok":
            assert outputs["auth"] == [auth or ""] * len(xs)
            assert np.allclose(outputs["y"], [2 * x for x in xs])
