from __future__ import annotations

import pytest

from scorer_core.errors import InvalidRequest
from scorer_core.schema import ShapleyType
from scorer_core.wire.contract import ContributionRequest, ScoreRequest, parse_request


def rejects(body: bytes, model=ScoreRequest) -> str:
    with pytest.raises(InvalidRequest) as excinfo:
        parse_request(model, body)
    return excinfo.value.detail


def test_full_request_parses():
    request = parse_request(
        ScoreRequest,
        b'{"fields": ["a", "id"], "rows": [["1", "x"]], "includeFieldsInOutput": ["id"], "idField": "id",'
        b' "noFieldNamesInOutput": true, "requestShapleyValueType": "ORIGINAL", "requestPredictionIntervals": false,'
        b' "somethingNew": 1}',
    )
    assert request.fields == ["a", "id"] and request.rows == [["1", "x"]]
    assert request.requestShapleyValueType is ShapleyType.ORIGINAL
    assert request.noFieldNamesInOutput is True


def test_nan_and_infinity_literals_are_accepted():
    request = parse_request(ScoreRequest, b'{"fields": ["a"], "rows": [[NaN], [Infinity], [null], [1.5]]}')
    assert request.rows[1] == [float("inf")] and request.rows[2] == [None]


def test_malformed_json_says_where():
    assert rejects(b'{"fields": [').startswith("Invalid scoring request due to: malformed JSON")


def test_non_object_body():
    assert "JSON object" in rejects(b"[1, 2]")


def test_missing_members_are_named():
    assert "'fields' is required" in rejects(b'{"rows": []}')
    assert "'rows' is required" in rejects(b'{"fields": []}')


def test_row_that_is_not_an_array_is_named():
    assert "row 1 (zero-indexed) must be an array" in rejects(b'{"fields": ["a"], "rows": [["1"], "2"]}')


def test_unknown_shapley_type_lists_choices():
    message = rejects(b'{"fields": [], "rows": [], "requestShapleyValueType": "ALL"}')
    assert "unknown requestShapleyValueType 'ALL'; expected one of ORIGINAL, TRANSFORMED, NONE" in message


def test_contribution_request_requires_a_shapley_type():
    assert "'requestShapleyValueType' is required" in rejects(
        b'{"fields": [], "rows": []}', ContributionRequest
    )
