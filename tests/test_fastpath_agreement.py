"""Any request gets exactly the answer the general path gives, whatever its size (issue: a large
body with ``"5.1,3.5"`` in a cell was scored as two numbers).

Each body is sent twice to the same in-process app: as the server handles it (bodies of 64 KiB
or more may take the numeric fast path), and with the fast path switched off. Status and body
must be identical. Bodies are generated small and large, with ragged rows, commas and spaces in
cells, exponents, NaN and Infinity, nested arrays, escaped quotes and extra members.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scorer_core.server.h2o_routes as routes_module
from scorer_core.config.settings import load_settings
from scorer_core.execution.executors import InProcessExecutor, load_runtime
from scorer_core.schema import DataType, Field, ModelSchema
from scorer_core.server.app import create_app
from scorer_core.service.host import ModelHost
from scorer_core.wire.fastpath import FAST_PATH_MIN_BYTES, native_frame
from tests.conftest import PLUGINS_DIR

FIELDS = ["x", "b", "n"]
SPEC = {"inputs": [["x", "Float64"], ["b", "Float32"], ["n", "Int64"]]}


def probe_app(directory: Path, spec: dict[str, Any]) -> Callable[[], Any]:
    """The app over an in-process probe model of ``spec``, made anew per call: its batcher lives
    in the event loop that first used it."""
    sys.path.insert(0, str(PLUGINS_DIR))
    try:
        from probe_plugin import ProbeRuntime
    finally:
        sys.path.remove(str(PLUGINS_DIR))
    path = directory / "m.probe"
    path.write_text(json.dumps(spec))
    config = load_settings()
    runtime, facts = load_runtime(ProbeRuntime, path, config)
    executor = InProcessExecutor(runtime, facts, 1)
    return lambda: create_app(config, ModelHost(executor=executor))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return probe_app(tmp_path_factory.mktemp("fast"), SPEC)


def both_paths(app, body: bytes) -> tuple[tuple[int, Any], tuple[int, Any]]:
    async def post(client: httpx.AsyncClient) -> tuple[int, Any]:
        reply = await client.post("/model/score", content=body, headers={"content-type": "application/json"})
        return reply.status_code, reply.json()

    async def main() -> tuple[tuple[int, Any], tuple[int, Any]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://s") as client:
            served = await post(client)
            original = routes_module.native_frame
            routes_module.native_frame = lambda body, schema, missing_values=None: None
            try:
                general = await post(client)
            finally:
                routes_module.native_frame = original
            return served, general

    return asyncio.run(main())


numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["1e5", "-2.5E-3", "7", "0", "-0", "3.0"]),
)
cells = st.one_of(
    numbers,
    numbers,
    numbers,
    st.tuples(numbers, numbers).map(",".join),  # a comma smuggled into one cell
    st.tuples(numbers, numbers).map(" ".join),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "", " 5 ", "+5", "01", ".5", "5.", 'a"b', "1\\2"]),
    st.integers(-1000, 1000),  # a JSON number
    st.floats(allow_nan=False, allow_infinity=False),
    st.just(None),
    st.booleans(),
    numbers.map(lambda n: [n]),  # a nested array as a cell
)
rows = st.lists(st.lists(cells, min_size=2, max_size=4), min_size=1, max_size=6)
extras = st.fixed_dictionaries(
    {},
    optional={
        "extra": st.lists(st.lists(numbers, max_size=3), max_size=3),
        "noFieldNamesInOutput": st.booleans(),
        "comment": st.text(max_size=10),
        # A "rows" key of a nested object, before the top-level one: not the rows to score.
        "nested": st.fixed_dictionaries({"rows": st.lists(st.lists(numbers, max_size=3), max_size=3)}),
    },
)


def encode(rows_: list[list[Any]], extra: dict[str, Any], large: bool) -> bytes:
    nested = {"nested": extra.pop("nested")} if "nested" in extra else {}
    body = orjson.dumps({**nested, "fields": FIELDS, "rows": rows_, **extra})
    if large and len(body) < FAST_PATH_MIN_BYTES:
        # Pad with valid rows before the generated ones, so the generated cells stay in play.
        pad = [["1.5", "2.5", "3"]] * math.ceil(FAST_PATH_MIN_BYTES / 16)
        body = orjson.dumps({**nested, "fields": FIELDS, "rows": [*pad, *rows_], **extra})
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_=rows, extra=extras, large=st.booleans())
def test_both_paths_give_the_same_answer(app, rows_, extra, large):
    body = encode(rows_, extra, large)
    served, general = both_paths(app, body)
    assert served == general


def large_rows_with(cell_bytes: bytes) -> bytes:
    good = b'["1.5","2.5","3"],' * math.ceil(FAST_PATH_MIN_BYTES / 16)
    return b'{"fields":["x","b","n"],"rows":[' + good + cell_bytes + b"]}"


@pytest.mark.parametrize(
    "row",
    [
        b'["5.1,3.5","2"]',  # a 2-cell row whose first cell smuggles a comma: issue 12's case
        b'["5.1","2","3","4"]',  # too many cells
        b'["1""2","3","4"]',  # two strings run together (invalid JSON) make one number
        b'["1"2,"3","4"]',  # a string and a number run together
        b'["1" "2","3"]',
        b'[["5.1"],"3.5","1"]',  # a nested array as a cell
        b'["NaN","1","2"]',
        b'["1e400","1","2"]',
        b'["12345678901234567890","1","99999999999999999999"]',
        b'["\\u0031","2","3"]',  # an escaped digit
        b'["", "2", "3"]',
    ],
)
def test_malformed_large_bodies_get_the_general_paths_answer(app, row):
    body = large_rows_with(row)
    assert len(body) >= FAST_PATH_MIN_BYTES
    served, general = both_paths(app, body)
    assert served == general


def test_the_issues_body_is_a_400_not_a_score(app):
    body = large_rows_with(b'["5.1,3.5","2"]')
    status, reply = both_paths(app, body)[0]
    assert status == 400
    assert "Not enough elements in row" in reply["detail"]


def test_a_nested_array_cell_is_a_400_naming_row_and_field(app):
    status, reply = both_paths(app, orjson.dumps({"fields": FIELDS, "rows": [[["5.1"], "3.5", "1"]]}))[0]
    assert status == 400
    assert (
        reply["detail"] == "Invalid scoring request due to: Row 0, field 'x': cannot parse ['5.1'] as Float64"
    )


def test_rows_of_a_nested_object_are_not_scored_in_place_of_the_top_level_rows(app):
    # The fast path once took the first "rows": [ in the bytes, and scored 5,000 rows here.
    nested = {"rows": [["1.5", "2.5", "3"]] * 5000}
    body = orjson.dumps({"extra": nested, "fields": FIELDS, "rows": []})
    assert len(body) >= FAST_PATH_MIN_BYTES
    served, general = both_paths(app, body)
    assert served == general
    assert served[0] == 200 and served[1]["score"] == []


@pytest.fixture(scope="module")
def app_float32_int(tmp_path_factory):
    return probe_app(tmp_path_factory.mktemp("f32"), {"inputs": [["x", "Float32"], ["n", "Int64"]]})


# Found by a red-team pass over the native decoder; each gave the two paths different answers.
@pytest.mark.parametrize("repeat", [4096, 20000], ids=["fast-path-size", "pieces-size"])
def test_minus_zero_keeps_its_sign_on_every_path(app, repeat):
    body = b'{"fields":["x","b","n"],"rows":[' + b'["1.5","2.5","3"],' * repeat + b'["-0","2.5","3"]]}'
    served, general = both_paths(app, body)
    assert served == general
    assert served[1]["score"][-1] == ["-0.0"], "float('-0') and Java's parseDouble keep the sign"


def test_a_float32_column_of_huge_integers_is_rounded_alike_on_both_paths(app_float32_int):
    body = b'{"fields":["x","n"],"rows":[' + b'["2","3"],' * 8000 + b'["1152921573326323713","3"]]}'
    served, general = both_paths(app_float32_int, body)
    assert served == general


@pytest.mark.parametrize("repeat", [4096, 20000], ids=["fast-path-size", "pieces-size"])
def test_a_later_rows_key_spelling_the_sentinel_is_not_taken_for_it(app, repeat):
    rows = b'["1.5","2.5","3"],' * repeat + b'["1","2","3"]]'
    body = b'{"fields":["x","b","n"],"rows":[' + rows + b',"rows":"\\u0000\\u0073corer-rows"}'
    served, general = both_paths(app, body)
    assert served == general
    assert served[0] == 400 and "'rows'" in served[1]["detail"]


MIXED_SPEC = {
    "inputs": [["x", "Float64"], ["s", "Str"], ["n", "Int64"]],
    "outputs": [["y", "Float64"], ["echo_x", "Str"], ["echo_s", "Str"], ["echo_n", "Str"]],
}


@pytest.fixture(scope="module")
def app_mixed(tmp_path_factory):
    return probe_app(tmp_path_factory.mktemp("mixed"), MIXED_SPEC)


texts = st.one_of(
    st.sampled_from(
        ["Oslo", "Zürich", "東京", "", "NA", " NA ", "?", "null", "-0", "12", "a\\b", 'say "hi"']
    ),
    st.text(max_size=6),  # control characters, surrogates' neighbours, anything
)
mixed_cells = st.one_of(numbers, numbers, texts, texts, st.just(None), st.integers(-5, 5), st.booleans())
mixed_rows = st.lists(st.lists(mixed_cells, min_size=3, max_size=3), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_=mixed_rows, large=st.booleans(), extra_field=st.booleans())
def test_string_and_number_columns_get_the_general_paths_answer(app_mixed, rows_, large, extra_field):
    fields = ["s", "x", "n"]
    if extra_field:  # a field the model does not take, whatever its cells hold
        fields.append("z")
        rows_ = [[*row, row[0]] for row in rows_]
    body = orjson.dumps({"fields": fields, "rows": rows_})
    if large:
        pad = [["Oslo", "1.5", "3", "Oslo"][: len(fields)]] * math.ceil(FAST_PATH_MIN_BYTES / 14)
        body = orjson.dumps({"fields": fields, "rows": [*pad, *rows_]})
        assert len(body) >= FAST_PATH_MIN_BYTES
    served, general = both_paths(app_mixed, body)
    assert served == general


def test_a_large_mixed_body_echoes_each_cell_as_the_general_path_types_it(app_mixed):
    rows_ = [["Oslo", "1.5", "3"], ["", "", ""], ["Zürich", "-0", "-0"], ["NA", "NA", "7"]] * 2000
    body = orjson.dumps({"fields": ["s", "x", "n"], "rows": rows_})
    inputs = [Field(name, DataType(kind)) for name, kind in MIXED_SPEC["inputs"]]
    assert native_frame(body, ModelSchema(inputs, [])) is not None, "the body must take the native path"
    served, general = both_paths(app_mixed, body)
    assert served == general
    status, reply = served
    assert status == 200
    assert reply["score"][:4] == [
        ["3.0", "float64:np.float64(1.5)", "object:'Oslo'", "float64:np.float64(3.0)"],
        ["NaN", "float64:np.float64(nan)", "object:None", "float64:np.float64(nan)"],
        ["-0.0", "float64:np.float64(-0.0)", "object:'Zürich'", "float64:np.float64(0.0)"],
        ["NaN", "float64:np.float64(nan)", "object:'NA'", "float64:np.float64(7.0)"],
    ]
