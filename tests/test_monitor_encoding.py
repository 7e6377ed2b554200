"""How the relay hands a request to the export process: a small one as its record in JSON, made
on the event loop (``relay.encoded_of``), the others pickled. Both must give the export process
the same request: the events shaped from either are compared here, and the requests JSON cannot
carry as they are must be left to pickle."""

from __future__ import annotations

import dataclasses
import gc
import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pytest

from scorer_core.monitor.events import EventShaper, Masking
from scorer_core.monitor.monitor import Monitor
from scorer_core.monitor.queue import Limits, ScoredQueue
from scorer_core.monitor.relay import SCORE_BODY_BYTES, encoded_of, record_of, rows_of_score_body, scored_of
from scorer_core.runtime import ContributionGroup, Contributions
from scorer_core.schema import DataType, Field
from scorer_core.server.h2o_routes import OFF_LOOP_BYTES
from scorer_core.service.scored import ScoredRequest
from scorer_core.service.tasks import prepare_score
from scorer_core.wire.cellrows import KEPT_ROWS, CellRows
from scorer_core.wire.contract import ScoreRequest, parse_request
from scorer_core.wire.rows_array import PARSE_CHUNK_BYTES
from tests.monitor_records import FACTS, INPUTS, scored

KEY = b"a-hash-key-of-32-characters-xxxx"
HEADERS = ("x-tenant",)


def cells(*rows: Sequence[Any], inputs: Sequence[Field] = INPUTS) -> CellRows:
    """Kept cells as the fronts keep them: a list of rows."""
    return CellRows.of([spec.name for spec in inputs], list(rows), inputs)


def pickled(request: ScoredRequest) -> ScoredRequest:
    """The request as the export process gets it when the sending thread pickles its record."""
    record = pickle.loads(pickle.dumps(record_of(request, HEADERS, id(FACTS)), protocol=5))
    return scored_of(record, FACTS, {})


def from_json(request: ScoredRequest) -> ScoredRequest:
    encoded = encoded_of(request, HEADERS, id(FACTS))
    assert encoded is not None, "expected to be encoded as JSON"
    data, rows, key, body = encoded
    assert isinstance(data, bytes) and (rows, key) == (request.num_rows, id(FACTS))
    assert body is request.score_body
    handed = data if body is None else (data, body)
    return scored_of(pickle.loads(pickle.dumps(handed)), FACTS, {})


def from_body(body: dict[str, Any], request_id: str = "body", **changes: Any) -> ScoredRequest:
    """A score request as the H2O front scores it: its cells kept, and its body with them."""
    data = orjson.dumps(body)
    prepared = prepare_score(parse_request(ScoreRequest, data), FACTS, keep_cells=True)
    assert isinstance(prepared.frame, CellRows)
    return scored(request_id, frame=prepared.frame, score_body=data, **changes)


def events(requests: Sequence[ScoredRequest]) -> list[Any]:
    shaper = EventShaper(Masking(hashed=frozenset({"name", "p"}), key=KEY), HEADERS)
    return shaper.shape(requests)


SMALL = [
    scored("plain", frame=cells(["1.5", "a"])),
    scored("numbers", frame=cells([2, None], [-0.0, "b"], [1e300, ""])),
    scored("text", frame=cells(['é, "quoted"\n\u2028', "\x00"])),
    scored("headers", frame=cells(["1", "a"]), headers={"x-tenant": "acme", "authorization": "Basic eA=="}),
    scored("prefixed", frame=cells(["1", "a"]), prefix="/deployment-7"),
    scored("refused", frame=cells(["not a number", "c"]), outputs=None, status=400, error="bad cell: «x»"),
    scored("before its rows", frame=None, outputs=None, status=413, error="too large"),
    scored(
        "answer types",
        frame=cells(["1", "a"], ["2", "b"]),
        outputs={
            "p": np.array([0.25, np.nan]),
            "p32": np.array([0.1, 2.5], dtype=np.float32),
            "label": np.array([1, -(2**62)], dtype=np.int64),
            "flag": np.array([True, False]),
        },
    ),
    # Arrays orjson takes only in C order and native byte order: written from their lists.
    scored(
        "strided and big-endian answers",
        frame=cells(["1", "a"], ["2", "b"]),
        outputs={"p": np.arange(4.0)[::2], "q": np.array([1.5, -2.0], dtype=">f8"), "n": np.arange(4)[::-2]},
    ),
    scored(
        "sixty-four",
        frame=cells(*[[str(i), f"n{i}"] for i in range(KEPT_ROWS)]),
        outputs={"score": np.arange(KEPT_ROWS, dtype=float)},
    ),
]


#: H2O score requests, whose rows the export process reads from their bodies.
WITH_BODIES = [
    from_body({"fields": ["x", "name"], "rows": [["1.5", "a"]]}, "as the model's inputs"),
    # Fields in another order, one the model does not take, cells of every JSON type, escapes.
    from_body(
        {
            "fields": ["name", "extra", "x"],
            "rows": [['é "q"\n\u2028', "e", "2"], [None, 7, -0.0], ["", True, 1e300]],
            "includeFieldsInOutput": ["extra"],
        },
        "reordered",
        outputs={"score": np.array([1.0, -2.5, 3.0])},
        headers={"x-tenant": "acme"},
    ),
    from_body(
        {"fields": ["x", "name"], "rows": [["abc", "a"]]},
        "refused",
        outputs=None,
        status=400,
        error="bad cell",
    ),
    from_body(
        {"fields": ["name", "x"], "rows": [[f"n{i}", str(i)] for i in range(KEPT_ROWS)]},
        "sixty-four",
        outputs={"score": np.arange(KEPT_ROWS, dtype=np.int64)},
    ),
]


@pytest.mark.parametrize("request_", SMALL + WITH_BODIES, ids=[r.request_id for r in SMALL + WITH_BODIES])
def test_a_small_request_sent_as_json_makes_the_events_its_pickle_makes(request_):
    assert events([from_json(request_)]) == events([pickled(request_)])


def test_a_record_with_a_score_body_carries_no_rows_of_its_own():
    request = WITH_BODIES[1]
    encoded = encoded_of(request, HEADERS, id(FACTS))
    assert encoded is not None and encoded[3] is request.score_body
    assert orjson.loads(encoded[0])[10] is None
    # and the body is what the rows come from: another body, other rows
    other = orjson.dumps({"fields": ["x", "name"], "rows": [["9", "z"]] * 3})
    rows = scored_of((encoded[0], other), FACTS, {}).frame
    assert isinstance(rows, CellRows) and rows.rows == [["9", "z"]] * 3


def test_a_batch_of_json_records_is_typed_together_as_pickled_ones_are():
    every = SMALL + WITH_BODIES
    assert events([from_json(r) for r in every]) == events([pickled(r) for r in every])


@pytest.mark.parametrize(
    "request_",
    [
        # Typed rows (a large request's, or the numeric fast path's): numpy columns.
        scored("typed", 2),
        scored("contributions", frame=cells(["1", "a"]), outputs=None, contributions=Contributions(
            features=("x", "name"), groups=(ContributionGroup(None, np.array([[0.5, -0.25]])),))),
        # Cells kept for inputs other than the model's (a model replaced since): Fields, not JSON.
        scored("other inputs", frame=cells(["1"], inputs=(Field("x", DataType.FLOAT64),))),
        # An answer of objects, or of times: arrays, which orjson refuses.
        scored("objects", frame=cells(["1", "a"]), outputs={"o": np.array([{"a": 1}], dtype=object)}),
        scored("times", frame=cells(["1", "a"]), outputs={"t": np.array(["2024-01-02"], dtype="datetime64[D]")}),
        # Cells JSON cannot give back as they are.
        scored("a huge integer", frame=cells([2**70, "a"])),
        scored("bytes", frame=cells([b"\x01", "a"])),
    ],
    ids=lambda r: r.request_id,
)  # fmt: skip
def test_what_json_cannot_carry_as_it_is_is_left_to_pickle(request_):
    assert encoded_of(request_, HEADERS, id(FACTS)) is None
    # and the pickled path still carries it
    assert [event["id"] for event in events([pickled(request_)])] == [request_.request_id]


def test_the_queue_holds_bytes_that_the_collector_does_not_track():
    encoded = encoded_of(scored("plain", frame=cells(["1.5", "a"])), HEADERS, id(FACTS))
    assert encoded is not None
    gc.collect()
    assert not gc.is_tracked(encoded)


@pytest.mark.parametrize("limit", ["requests", "rows"])
def test_full_says_what_offer_does_so_that_a_stalled_sink_costs_no_encoding(limit):
    limits = Limits(requests=3, rows=1_000_000, retry_seconds=1) if limit == "requests" else Limits(
        requests=100, rows=5, retry_seconds=1)  # fmt: skip
    queue = ScoredQueue[tuple[bytes, int, int]](limits, rows_of=lambda item: item[1])
    offers = []
    for _ in range(8):
        full = queue.full(2)
        offers.append((full, queue.offer((b"{}", 2, 0))))
    # Full exactly when the offer drops (and says how many events it dropped).
    assert all(full == (dropped > 0) for full, dropped in offers), offers
    assert [full for full, _ in offers].count(False) == (3 if limit == "requests" else 2)
    queue.close(0)
    assert queue.full(0)


def test_a_score_body_only_the_lenient_parse_reads_gives_its_cells_again():
    # H2O's Java scorer takes NaN and Infinity, which strict JSON does not: the front's lenient
    # parse read this body, and the export process reads it the same way.
    body = b'{"fields": ["name", "x"], "rows": [["a", NaN], ["b", 2]]}'
    rows = rows_of_score_body(body, FACTS)
    assert tuple(rows[1]) == (2, "b")
    assert math.isnan(rows[0][0]) and rows[0][1] == "a"


def test_a_score_body_is_read_again_as_the_front_read_it():
    body = orjson.dumps({"fields": ["extra", "name", "x"], "rows": [[1, "a", "1.5"]], "idField": "extra"})
    kept = prepare_score(parse_request(ScoreRequest, body), FACTS, keep_cells=True).frame
    assert isinstance(kept, CellRows)
    assert rows_of_score_body(body, FACTS) == list(kept.rows)


def test_a_long_score_body_is_not_carried_its_cells_are():
    # A body of few rows may be mostly fields the model does not read: the queue, bounded by
    # requests and rows, would hold all of it.
    wide = {
        "fields": ["x", "name", *[f"unread{i}" for i in range(400)]],
        "rows": [["1", "a", *["z" * 40] * 400]],
    }
    request = from_body(wide, "wide")
    assert request.score_body is not None and len(request.score_body) > SCORE_BODY_BYTES
    encoded = encoded_of(request, HEADERS, id(FACTS))
    assert encoded is not None and encoded[3] is None
    assert orjson.loads(encoded[0])[10] == [["1", "a"]]
    assert events([from_json(dataclasses.replace(request, score_body=None))]) == events([pickled(request)])


def test_only_bodies_the_front_reads_whole_keep_their_cells():
    # rows_of_score_body reads a body in one parse: the front must have too.
    assert OFF_LOOP_BYTES <= PARSE_CHUNK_BYTES


@pytest.mark.parametrize(
    ("sample", "failures", "direct"), [(1.0, True, True), (0.5, True, False), (1.0, False, False)]
)
def test_the_monitor_gives_the_plane_its_one_channel_only_when_it_keeps_every_request(
    sample, failures, direct
):
    class Channel:
        def __init__(self) -> None:
            self.offered: list[str] = []

        def offer(self, scored_: ScoredRequest) -> None:
            self.offered.append(scored_.request_id)

    channel = Channel()
    monitor = Monitor([channel], sample=sample, failures=failures)  # type: ignore[list-item]
    assert (monitor.observer == channel.offer) is direct
    monitor.observer(scored("refused", status=400, error="bad"))
    assert channel.offered == (["refused"] if failures and monitor.kept("refused") else [])
