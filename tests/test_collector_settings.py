"""The server's garbage-collector settings once its model is loaded (``server.app``): what was
loaded is frozen out of every collection, and young collections wait for 5,000 net allocations
of tracked objects instead of CPython's 700 (the measurements are in ``YOUNG_COLLECTION_THRESHOLD``'s
comment)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from scorer_core.server.app import YOUNG_COLLECTION_THRESHOLD, _settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    """The collector's settings of this test process, restored afterwards."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_loaded_objects_are_frozen_and_young_collections_come_less_often(collector):
    loaded = [[i] for i in range(1000)]  # tracked objects that live as long as the server
    gc.unfreeze()
    _, older, oldest = gc.get_threshold()

    _settle_collector()

    assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, older, oldest)
    assert YOUNG_COLLECTION_THRESHOLD > 700


def test_a_request_that_makes_fewer_objects_than_the_threshold_starts_no_collection(collector):
    _settle_collector()
    counts = gc.get_count()[0]
    started: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        kept = [{"row": [str(i)]} for i in range(YOUNG_COLLECTION_THRESHOLD // 2 - counts // 2 - 100)]
    finally:
        gc.callbacks.remove(seen)
    assert kept and started == []
