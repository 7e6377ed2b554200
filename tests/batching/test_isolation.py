"""Failure isolation against a clock the model advances: deadlines, early answers, call counts."""

from __future__ import annotations

import dataclasses

import pytest

from scorer_core.errors import ModelError, ScoringTimeout
from scorer_core.execution.isolation import run_batch
from tests.batching.conftest import task


class SlowModel:
    """Wraps a probe runtime so that every model call takes ``seconds`` on a fake clock."""

    def __init__(self, runtime, seconds: float) -> None:
        self.now = 0.0
        self.calls: list[list[float]] = []
        score = runtime.score

        def timed(frame):
            self.calls.append(frame["x"].tolist())
            self.now += seconds
            return score(frame)

        runtime.score = timed
        self.runtime = runtime

    def clock(self) -> float:
        return self.now


def with_deadline(tasks, deadline):
    return [dataclasses.replace(t, deadline=deadline) for t in tasks]


@pytest.mark.parametrize("poison_at", range(11))
def test_good_neighbours_of_a_poison_request_are_scored_within_their_deadline(probe_model, poison_at):
    # The case: 0.3 s per call, one bad request among 11, a 2 s timeout. Re-scoring every
    # request alone (or halving without reusing what each call showed) made all 11 late.
    model = SlowModel(probe_model(), 0.3)
    tasks = with_deadline([task([13 if i == poison_at else i + 100]) for i in range(11)], 2.0)
    answered_at: dict[int, float] = {}

    def settle(pairs):
        for index, _ in pairs:
            answered_at[index] = model.now

    report = run_batch(model.runtime, tasks, settle=settle, clock=model.clock)
    late = []
    for index, outcome in enumerate(report.outcomes):
        if index == poison_at:
            assert isinstance(outcome, ModelError | ScoringTimeout)
        elif isinstance(outcome, ScoringTimeout):
            late.append(index)
        else:
            assert outcome.outputs["y"].tolist() == [2.0 * (index + 100)], index
            assert answered_at[index] <= 2.0, f"request {index} answered at {answered_at[index]} s"
    # One bad among 11 needs up to 7 calls before every good one has been in a call that
    # succeeded (the merged call, then two per halving where the bad half comes first); 7 * 0.3 s
    # is past 2 s, so at most one good request can be late, and it is told so without a call
    # that could not end in time.
    assert len(late) <= 1, late
    assert model.now <= 2.0 + 0.3 and len(model.calls) <= 7


def test_successes_are_settled_as_they_happen_and_failures_only_reported(probe_model):
    model = SlowModel(probe_model(), 0.1)
    tasks = [task([i + 100]) for i in range(7)] + [task([13])]
    settled: list[tuple[float, list[int]]] = []
    report = run_batch(
        model.runtime, tasks, settle=lambda pairs: settled.append((model.now, [i for i, _ in pairs])),
        clock=model.clock,
    )  # fmt: skip
    assert sorted(i for _, group in settled for i in group) == list(range(7))
    assert settled[0] == (pytest.approx(0.2), [0, 1, 2, 3]), "the clean half goes after one more call"
    assert isinstance(report.outcomes[7], ModelError) and "exploded" in str(report.outcomes[7])
    assert report.isolation_seconds == pytest.approx(0.1 * (len(model.calls) - 1))


def test_the_culprit_known_by_inference_is_scored_alone_last(probe_model):
    model = SlowModel(probe_model(), 0.1)
    run_batch(model.runtime, [task([101]), task([102]), task([103]), task([13])], clock=model.clock)
    # all four fail; [101, 102] succeeds, so the failure is in [103, 13]; [103] succeeds, so 13 is
    # the culprit, scored alone to get its own error, not the merged call's.
    assert model.calls == [[101, 102, 103, 13], [101, 102], [103], [13]]


def test_a_request_past_its_deadline_is_not_scored_again(probe_model):
    model = SlowModel(probe_model(), 1.0)
    tasks = [*with_deadline([task([1]), task([13])], 10.0), *with_deadline([task([2]), task([3])], 0.5)]
    report = run_batch(model.runtime, tasks, clock=model.clock)
    assert [type(o).__name__ for o in report.outcomes] == [
        "ScoringResult", "ModelError", "ScoringTimeout", "ScoringTimeout",
    ]  # fmt: skip
    assert all(2.0 not in call and 3.0 not in call for call in model.calls[1:])
    assert "SCORER_REQUEST_TIMEOUT" in str(report.outcomes[2])


def test_a_batch_that_succeeds_costs_one_call_and_no_isolation_time(probe_model):
    model = SlowModel(probe_model(), 0.1)
    report = run_batch(model.runtime, [task([1]), task([2, 3])], clock=model.clock)
    assert len(model.calls) == 1 and report.isolation_seconds == 0
    assert [o.outputs["y"].tolist() for o in report.outcomes] == [[2.0], [4.0, 6.0]]
