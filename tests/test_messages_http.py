"""What a client or an operator is told, over real HTTP: each message says what went wrong in
words they can act on, and quotes no more of what the client sent than it needs to."""

from __future__ import annotations

import pytest

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
