"""What a client or an operator is told, over real HTTP: each message says what went wrong in
words they can act on, and quotes no more of what the client sent than it needs to."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

import pytest

from conformance import ScorerTarget, start_server
from tests.conftest import model_calls, plugin_env

pytestmark = pytest.mark.slow

PREFIX = "Invalid scoring request due to: "


def test_a_huge_bad_cell_is_quoted_by_its_start_and_a_short_one_whole(probe_server):
    with probe_server(record_headers=False) as target:
        short = target.post("/model/score", {"fields": ["x"], "rows": [["1"], ["abc"]]})
        assert short.status == 400
        assert short.json()["detail"] == f"{PREFIX}Row 1, field 'x': cannot parse 'abc' as Float64"
        huge = target.post("/model/score", {"fields": ["x"], "rows": [["1"], ["z" * 5_000_000]]}, timeout=60)
        assert huge.status == 400, huge.text[:300]
        assert huge.json()["detail"] == (
            f"{PREFIX}Row 1, field 'x': cannot parse '{'z' * 99}...(5000000 characters) as Float64"
        )
        assert target.post("/model/score", {"fields": ["x"], "rows": [["2"]]}).json()["score"] == [["4.0"]]


def test_client_sent_names_are_listed_up_to_ten_each_cut_as_a_cell_is(probe_server):
    with probe_server(record_headers=False) as target:
        few = target.post("/model/score", {"fields": ["x", "x"], "rows": [["1", "1"]]})
        assert few.json()["detail"] == f"{PREFIX}duplicate fields: 'x'"
        long_name = "n" * 1_000_000
        names = [long_name, long_name, *(f"d{i}" for i in range(30) for _ in range(2))]
        many = target.post("/model/score", {"fields": ["x", *names], "rows": [["1"] * (1 + len(names))]}, timeout=60)
        assert many.status == 400
        detail = many.json()["detail"]
        assert detail.startswith(f"{PREFIX}duplicate fields: 'd0', 'd1', ") and detail.endswith(" and 21 more")
        assert len(detail) < 1_000
        unknown = target.post(
            "/model/score",
            {"fields": ["x"], "rows": [["1"]], "includeFieldsInOutput": [long_name]},
            timeout=60,
        )
        assert unknown.status == 400
        assert f"'{'n' * 99}...(1000000 characters)" in unknown.json()["detail"]
        assert len(unknown.json()["detail"]) < 1_000


def rogue(tmp_path, **spec) -> AbstractContextManager[ScorerTarget]:
    """A server for a model of tests/plugins/rogue_plugin.py."""
    model = tmp_path / "model.rogue"
    model.write_text(json.dumps(spec))
    return start_server(model, env=plugin_env("rogue_plugin"), record_headers=False)


def test_a_dict_where_a_column_should_be_is_named_as_such(tmp_path):
    with rogue(tmp_path, rogue="nested") as target:
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["2"]]})
    assert reply.status == 500
    assert reply.json()["detail"] == (
        "Failed scoring request due to: Runtime 'rogue-scorer' returned a dict as column 'y' for "
        "scoring; expected a sequence of 1 values, one per row"
    )


def test_dict_cells_are_answered_as_json_whether_a_model_or_the_client_made_them(tmp_path, probe_server):
    with rogue(tmp_path, rogue="dict_cells", outputs=[["y", "Str"]]) as target:
        reply = target.post("/model/score", {"fields": ["x"], "rows": [["2"], ["3"]]})
    assert reply.status == 200, reply.text
    assert reply.json()["score"] == [['{"nested":[1,2,3]}'], ['{"nested":[1,2,3]}']]
    copied = {
        "fields": ["x", "extra"],
        "rows": [["2", {"nested": [1, 2, 3]}], ["3", ["a", None]]],
        "includeFieldsInOutput": ["extra"],
    }
    with probe_server(record_headers=False) as target:
        reply = target.post("/model/score", copied)
    assert reply.status == 200, reply.text
    assert reply.json()["score"] == [['{"nested":[1,2,3]}', "4.0"], ['["a",null]', "6.0"]]


def test_a_copied_cell_nested_too_deep_to_write_back_is_a_400_before_the_model_runs(probe_server):
    """orjson reads 1,024 levels but writes 254: such a cell, copied, answered 500 after the model
    had run, with an ERROR traceback. Small bodies and large ones (parsed in pieces) alike."""
    deep = "[" * 300 + "]" * 300
    small = f'{{"fields": ["x", "e"], "rows": [["1", {deep}]], "includeFieldsInOutput": ["e"]}}'
    large = (
        '{"fields": ["x", "e"], "rows": ['
        + '["1", "a"], ' * 40_000
        + f'["1", {deep}]], "includeFieldsInOutput": ["e"]}}'
    )
    assert len(large) > 256 * 1024
    with probe_server() as target:
        replies = [target.post("/model/score", raw=body.encode(), timeout=60) for body in (small, large)]
        calls = model_calls(target)
        # Not copied, the same cell is no trouble; 254 levels can be written back.
        ignored = target.post("/model/score", raw=small.replace('"e"]}', '"x"]}').encode())
        fits = "[" * 254 + "]" * 254
        copied = target.post("/model/score", raw=small.replace(deep, fits).encode())
        log = target.server_log()
    for reply, row in zip(replies, (0, 40_000), strict=True):
        assert reply.status == 400, reply.text[:300]
        assert reply.json()["detail"] == (
            f"{PREFIX}row {row} (zero-indexed), field 'e': the cell nests deeper than 254 levels, too deep "
            "to copy to the output (includeFieldsInOutput)"
        )
    assert calls == 0, "the model ran for a request that could not be answered"
    assert ignored.status == 200 and ignored.json()["score"] == [["1", "2.0"]], ignored.text[:300]
    assert copied.status == 200 and copied.json()["score"] == [[fits, "2.0"]], copied.text[:300]
    assert "Traceback" not in log and "Recursion limit" not in log
