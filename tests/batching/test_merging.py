from __future__ import annotations

import pytest

from scorer_core.errors import ModelError, RowCountMismatch
from scorer_core.execution.isolation import run_batch
from scorer_core.execution.merging import Batch, batch_key
from scorer_core.execution.scoring import run_task
from scorer_core.schema import ShapleyType
from tests.batching.conftest import task


def test_batch_key_separates_headers_and_options():
    assert batch_key(task([1], "a")) == batch_key(task([2, 3], "a"))
    assert batch_key(task([1], "a")) != batch_key(task([1], "b"))
    assert batch_key(task([1])) != batch_key(task([1], "a"))
    assert batch_key(task([1], intervals=True)) != batch_key(task([1]))
    assert batch_key(task([1], shapley=ShapleyType.ORIGINAL)) != batch_key(task([1]))
    assert batch_key(task([1], outputs=False, shapley=ShapleyType.ORIGINAL)) != batch_key(
        task([1], shapley=ShapleyType.ORIGINAL)
    )


def test_different_authorization_never_share_a_batch():
    with pytest.raises(ValueError, match="different batch keys"):
        Batch((task([1], "Bearer a"), task([2], "Bearer b")))


def test_merge_and_split_by_row_offset(probe_model):
    model = probe_model()
    tasks = (task([1, 2]), task([]), task([3]), task([4, 5, 6]))
    batch = Batch(tasks)
    assert batch.offsets == [0, 2, 2, 3, 6]
    merged = batch.merged()
    assert merged.frame["x"].tolist() == [1, 2, 3, 4, 5, 6]
    parts = batch.split(run_task(model, merged))
    assert [p.outputs["y"].tolist() for p in parts] == [[2, 4], [], [6], [8, 10, 12]]


def test_split_cuts_contributions_and_intervals_too(probe_model):
    model = probe_model(intervals=True, contributions=["ORIGINAL"], classes=["a", "b"])
    tasks = (
        task([1, 2], intervals=True, shapley=ShapleyType.ORIGINAL),
        task([3], intervals=True, shapley=ShapleyType.ORIGINAL),
    )
    parts = Batch(tasks).split(run_task(model, Batch(tasks).merged()))
    assert parts[1].intervals["y.lower"].tolist() == [5.0]
    assert [g.values.tolist() for g in parts[1].contributions.groups] == [[[3.0]], [[6.0]]]
    assert parts[0].contributions.groups[0].values.tolist() == [[1.0], [2.0]]


def test_failing_merged_call_is_retried_per_request_so_only_the_culprit_fails(probe_model):
    model = probe_model()
    outcomes = run_batch(model, [task([1]), task([13, 2]), task([3])]).outcomes
    assert outcomes[0].outputs["y"].tolist() == [2]
    assert isinstance(outcomes[1], ModelError) and "exploded" in str(outcomes[1])
    assert outcomes[2].outputs["y"].tolist() == [6]


def test_wrong_row_count_on_the_merged_call_is_retried_per_request(probe_model):
    model = probe_model(behaviour="drop_row_when_merged")
    outcomes = run_batch(model, [task([1]), task([2]), task([3, 4])]).outcomes
    assert [o.outputs["y"].tolist() for o in outcomes[:2]] == [[2], [4]]
    assert isinstance(outcomes[2], RowCountMismatch)
    assert str(outcomes[2]) == "Runtime 'probe-scorer' returned 1 rows for a request of 2 rows"


@pytest.mark.parametrize("poison_at", [0, 5, 15])
def test_one_poison_request_costs_about_two_log2_n_calls_not_n(probe_model, poison_at):
    model = probe_model()
    calls = []
    score = model.score
    model.score = lambda frame: calls.append(frame.num_rows) or score(frame)  # type: ignore[method-assign]
    tasks = [task([13 if i == poison_at else i + 100]) for i in range(16)]
    outcomes = run_batch(model, tasks).outcomes
    assert [isinstance(o, ModelError) for o in outcomes] == [i == poison_at for i in range(16)]
    assert [o.outputs["y"].tolist() for i, o in enumerate(outcomes) if i != poison_at] == [
        [2.0 * (i + 100)] for i in range(16) if i != poison_at
    ]
    assert len(calls) <= 1 + 2 * 4, f"{len(calls)} model calls for 16 requests with one poison"
    assert max(calls[1:]) == 8, "the clean half is scored in one merged call"


def test_every_request_failing_still_gets_its_own_error(probe_model):
    model = probe_model()
    outcomes = run_batch(model, [task([13]), task([13]), task([13])]).outcomes
    assert all(isinstance(o, ModelError) for o in outcomes)
