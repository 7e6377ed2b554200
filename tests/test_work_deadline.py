"""Work on a large request stops at its deadline, not at the end of the body.

Parsing and answering run in a thread that cannot be killed; past the deadline every loop over
pieces, columns and chunks stops at its next ``checkpoint``. The request gets its 504 either way.
"""

from __future__ import annotations

import time

import orjson
import pytest

from scorer_core.schema import DataType, Field, ModelSchema
from scorer_core.service.answers import RowTable, encode
from scorer_core.wire.cells import build_frame
from scorer_core.wire.contract import ScoreRequest, parse_request
from scorer_core.wire.deadline import DeadlinePassed, checkpoint, working_until
from scorer_core.wire.fastpath import native_frame
from tests.test_server_asgi import run, serve  # noqa: F401  (the fixture)

ROWS = 100_000
TEXT = orjson.dumps({"fields": ["x", "s"], "rows": [["5.1", "setosa"]] * ROWS})
NUMBERS = orjson.dumps({"fields": ["x", "s"], "rows": [["5.1", "3.5"]] * ROWS})
PAST = 0.0  # time.monotonic() is far beyond it


def test_no_deadline_and_a_deadline_to_come_let_the_work_finish():
    assert len(parse_request(ScoreRequest, TEXT).rows) == ROWS
    with working_until(time.monotonic() + 60):
        checkpoint()
        assert len(parse_request(ScoreRequest, TEXT).rows) == ROWS


@pytest.mark.parametrize(
    "work",
    [
        pytest.param(lambda: parse_request(ScoreRequest, TEXT), id="general-parse"),
        pytest.param(
            lambda: native_frame(NUMBERS, ModelSchema([Field("x", DataType.FLOAT64), Field("s", DataType.FLOAT64)], [])),
            id="numeric-fast-path",
        ),
        pytest.param(lambda: build_frame(["x"], [["1"]] * ROWS, [Field("x", DataType.FLOAT64)]), id="float-matrix"),
        pytest.param(lambda: build_frame(["s"], [["a"]] * ROWS, [Field("s", DataType.STR)]), id="typed-columns"),
        pytest.param(lambda: encode({"score": RowTable([["1.0"] * ROWS], ROWS)}), id="answer"),
    ],
)
def test_past_the_deadline_each_kind_of_work_stops(work):
    with working_until(PAST), pytest.raises(DeadlinePassed):
        work()


def test_a_large_body_past_its_deadline_gets_504_naming_the_setting(serve):  # noqa: F811
    body = orjson.dumps({"fields": ["x", "s"], "rows": [["5.1", "setosa"]] * 400_000})

    async def main():
        inputs = [["x", "Float64"], ["s", "Str"]]
        async with serve(inputs=inputs, settings={"request_timeout": 0.02}) as client:
            started = time.monotonic()
            reply = await client.post("/model/score", content=body, headers={"content-type": "application/json"})
            return reply, time.monotonic() - started

    reply, took = run(main())
    assert reply.status_code == 504, reply.text[:200]
    assert "SCORER_REQUEST_TIMEOUT" in reply.json()["detail"]
    assert took < 2, "answered at the deadline, not after the whole body was parsed"
