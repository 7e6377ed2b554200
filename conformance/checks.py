"""The conformance checks: every rule of the H2O scoring contract a runtime must honour.

Each class groups the checks of one rule; ``RuntimeSuite`` combines them. Subclass it in a plugin's
tests and provide a ``scorer_target`` fixture (see ``conformance.start_server``), or run
``scorer check MODEL_PATH``.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conformance.shapes import (
    check_capabilities,
    check_contribution_response,
    check_error,
    check_model,
    check_score_response,
    interval_bound_names,
    score_output_names,
)
from conformance.target import ScorerTarget, start_server

__all__ = [
    "CapabilityChecks",
    "ContractChecks",
    "ErrorChecks",
    "FieldChecks",
    "HeaderChecks",
    "RowCountChecks",
    "RuntimeSuite",
    "cells_match",
    "served",
    "vary_rows",
]

#: What ``served`` starts: a model path, or a function that builds one from other fixtures (it is
#: given ``request.getfixturevalue``), for models that a session fixture trains or writes.
ModelSource = str | os.PathLike[str] | Callable[[Callable[[str], Any]], "str | os.PathLike[str]"]

_NUMERIC = ("Int32", "Int64", "Float32", "Float64")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def vary_rows(scorer_schema: dict[str, Any], sample_row: list[str], count: int) -> list[list[str]]:
    """``count`` valid rows: the sample row with each numeric field varied per row."""
    inputs = scorer_schema["schema"]["inputFields"]
    rows = []
    for r in range(count):
        row = list(sample_row)
        for i, spec in enumerate(inputs):
            if spec["dataType"] in _NUMERIC:
                row[i] = str((r * (i + 3)) % 7)
            elif spec["dataType"] == "Bool":
                row[i] = "true" if (r + i) % 2 else "false"
        rows.append(row)
    return rows


def _score(target: ScorerTarget, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    reply = target.post("/model/score", body, **kwargs)
    assert reply.status == 200, f"/model/score: {reply}"
    return dict(reply.json())


def _scored_outputs(target: ScorerTarget, schema: dict[str, Any], body: dict[str, Any]) -> list[list[str]]:
    """Score ``body`` and return just the model-output cells of each row."""
    return _outputs(_score(target, body), schema)


def _outputs(body: dict[str, Any], scorer_schema: dict[str, Any]) -> list[list[str]]:
    """The model-output cells of each row, located by the schema's output names."""
    names = score_output_names(scorer_schema)
    positions = [body["fields"].index(name) for name in names]
    return [[row[p] for p in positions] for row in body["score"]]


def cells_match(left: list[list[str]], right: list[list[str]], rel: float = 1e-9) -> bool:
    """Equal cell by cell; numbers within ``rel`` (BLAS may round the last bit by batch size).

    A cell holding a JSON object or array (Hydrogen Torch's ``output``) is compared as parsed
    JSON, with the numbers inside it held to the same tolerance.
    """
    if len(left) != len(right):
        return False
    return all(
        len(row_a) == len(row_b) and all(_cell_matches(a, b, rel) for a, b in zip(row_a, row_b, strict=True))
        for row_a, row_b in zip(left, right, strict=True)
    )


def _cell_matches(a: str, b: str, rel: float) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
    except ValueError:
        pass
    if a[:1] in "[{" and b[:1] in "[{":
        try:
            return _json_matches(json.loads(a), json.loads(b), rel)
        except ValueError:
            return False
    return False


def _json_matches(a: Any, b: Any, rel: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_matches(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_matches(x, y, rel) for x, y in zip(a, b, strict=True))
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return bool(a == b)


class ContractChecks:
    """Endpoints exist and return the documented shapes."""

    def test_readyz_says_ready(self, scorer_target: ScorerTarget) -> None:
        reply = scorer_target.get("/readyz")
        assert (reply.status, reply.text) == (200, "Ready")

    def test_model_id_is_plain_text(self, scorer_target: ScorerTarget, scorer_schema: dict[str, Any]) -> None:
        reply = scorer_target.get("/model/id")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
        assert reply.text == scorer_schema["id"], "/model/id must match the schema's id"

    def test_schema_shape(self, scorer_schema: dict[str, Any]) -> None:
        check_model(scorer_schema)

    def test_capabilities_shape_and_order(self, scorer_capabilities: list[str]) -> None:
        check_capabilities(scorer_capabilities)
        assert "SCORE" in scorer_capabilities

    def test_sample_request_passes_validation(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_input_names: list[str],
    ) -> None:
        assert scorer_sample["fields"] == scorer_input_names
        assert len(scorer_sample["rows"]) == 1 and len(scorer_sample["rows"][0]) == len(scorer_input_names)
        check_score_response(_score(scorer_target, scorer_sample), 1)

    def test_every_schema_output_is_in_fields(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_output_names: list[str],
    ) -> None:
        fields = _score(scorer_target, scorer_sample)["fields"]
        missing = [name for name in scorer_output_names if name not in fields]
        assert not missing, f"schema output fields missing from the score response: {missing}"

    def test_paths_work_under_a_deployment_prefix(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
    ) -> None:
        prefix = "/conformance-deployment"
        assert scorer_target.get(f"{prefix}/readyz").text == "Ready"
        assert scorer_target.get(f"{prefix}/model/schema").json() == scorer_schema
        reply = scorer_target.post(f"{prefix}/model/score", scorer_sample)
        assert reply.status == 200, reply

    def test_openapi_describes_the_contract(self, scorer_target: ScorerTarget) -> None:
        reply = scorer_target.get("/openapi.json")
        assert reply.status == 200, reply
        spec = reply.json()
        for path in (
            "/model/score",
            "/model/contribution",
            "/model/schema",
            "/model/capabilities",
            "/model/id",
            "/model/sample_request",
        ):
            assert path in spec["paths"], f"/openapi.json does not describe {path}"
        schemas = spec["components"]["schemas"]
        for name, members in {
            "ScoreRequest": {
                "fields",
                "rows",
                "includeFieldsInOutput",
                "noFieldNamesInOutput",
                "idField",
                "requestShapleyValueType",
                "requestPredictionIntervals",
            },
            "ScoreResponse": {
                "id",
                "fields",
                "score",
                "featureShapleyContributions",
                "predictionIntervals",
            },
            "ContributionRequest": {"requestShapleyValueType", "fields", "rows"},
            "ContributionResponse": {"features", "contributionGroups"},
        }.items():
            assert name in schemas, f"/openapi.json has no {name} schema"
            assert members <= set(schemas[name]["properties"]), (
                f"{name} lacks {members - set(schemas[name]['properties'])}"
            )

    def test_media_score_is_not_implemented(self, scorer_target: ScorerTarget) -> None:
        assert scorer_target.post("/model/media-score", {}).status == 501


class RowCountChecks:
    """N rows in, N rows out, in order."""

    @pytest.mark.parametrize("count", [1, 7, 100])
    def test_row_count_is_preserved(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        count: int,
    ) -> None:
        body = {
            "fields": scorer_sample["fields"],
            "rows": vary_rows(scorer_schema, scorer_sample["rows"][0], count),
        }
        check_score_response(_score(scorer_target, body), count)

    def test_empty_rows_return_the_output_fields(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_output_names: list[str],
    ) -> None:
        body = _score(scorer_target, {"fields": scorer_sample["fields"], "rows": []})
        assert body["score"] == []
        assert body["fields"] == scorer_output_names

    def test_rows_keep_their_order(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        scorer_relative_tolerance: float,
    ) -> None:
        rows = vary_rows(scorer_schema, scorer_sample["rows"][0], 5)
        together = _scored_outputs(
            scorer_target, scorer_schema, {"fields": scorer_sample["fields"], "rows": rows}
        )
        alone = [
            _scored_outputs(scorer_target, scorer_schema, {"fields": scorer_sample["fields"], "rows": [row]})[
                0
            ]
            for row in rows
        ]
        assert cells_match(together, alone, scorer_relative_tolerance), (
            f"scoring rows together must give each row what scoring it alone gives: {together} != {alone}"
        )


class FieldChecks:
    """Extra, reordered and copied fields, ids and field-name suppression."""

    def test_extra_fields_are_tolerated(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        scorer_relative_tolerance: float,
    ) -> None:
        plain = _scored_outputs(scorer_target, scorer_schema, scorer_sample)
        body = {
            "fields": ["conformance_row_id", *scorer_sample["fields"]],
            "rows": [["r0", *scorer_sample["rows"][0]]],
        }
        assert cells_match(
            _scored_outputs(scorer_target, scorer_schema, body), plain, scorer_relative_tolerance
        )

    def test_field_order_does_not_matter(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        scorer_relative_tolerance: float,
    ) -> None:
        rows = vary_rows(scorer_schema, scorer_sample["rows"][0], 3)
        plain = _scored_outputs(
            scorer_target, scorer_schema, {"fields": scorer_sample["fields"], "rows": rows}
        )
        reversed_body = {
            "fields": scorer_sample["fields"][::-1],
            "rows": [row[::-1] for row in rows],
        }
        assert cells_match(
            _scored_outputs(scorer_target, scorer_schema, reversed_body), plain, scorer_relative_tolerance
        )

    def test_include_fields_are_copied_in_input_order(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_output_names: list[str],
    ) -> None:
        first = scorer_sample["fields"][0]
        body = {
            "fields": ["row_id", *scorer_sample["fields"]],
            "rows": [["id-7", *scorer_sample["rows"][0]]],
            "includeFieldsInOutput": [first, "row_id"],
        }
        reply = _score(scorer_target, body)
        assert reply["fields"] == ["row_id", first, *scorer_output_names]
        assert reply["score"][0][:2] == ["id-7", scorer_sample["rows"][0][0]]

    def test_missing_id_field_is_generated(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_output_names: list[str],
    ) -> None:
        body = {
            **scorer_sample,
            "idField": "uid",
            "includeFieldsInOutput": ["uid"],
            "rows": scorer_sample["rows"] * 2,
        }
        reply = _score(scorer_target, body)
        assert reply["fields"] == ["uid", *scorer_output_names]
        ids = [row[0] for row in reply["score"]]
        assert all(_UUID.match(i) for i in ids) and len(set(ids)) == 2, f"expected two UUIDs, got {ids}"

    def test_include_field_not_in_fields_is_rejected(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        reply = scorer_target.post(
            "/model/score", {**scorer_sample, "includeFieldsInOutput": ["no_such_field"]}
        )
        assert reply.status == 400 and "no_such_field" in check_error(reply.json())

    def test_no_field_names_in_output(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        check_score_response(
            _score(scorer_target, {**scorer_sample, "noFieldNamesInOutput": True}),
            1,
            field_names=False,
        )

    def test_json_numbers_equal_numeric_strings(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        scorer_relative_tolerance: float,
    ) -> None:
        inputs = scorer_schema["schema"]["inputFields"]
        if not any(f["dataType"] in _NUMERIC for f in inputs):
            pytest.skip("the model has no numeric input field to send a JSON number to")
        row = vary_rows(scorer_schema, scorer_sample["rows"][0], 2)[1]
        numbers = [
            int(cell) if spec["dataType"] in _NUMERIC else cell
            for cell, spec in zip(row, inputs, strict=True)
        ]
        as_strings = _scored_outputs(
            scorer_target, scorer_schema, {"fields": scorer_sample["fields"], "rows": [row]}
        )
        as_numbers = _scored_outputs(
            scorer_target, scorer_schema, {"fields": scorer_sample["fields"], "rows": [numbers]}
        )
        assert cells_match(as_numbers, as_strings, scorer_relative_tolerance)


class ErrorChecks:
    """Bad input gets a 4xx naming the problem, and the server keeps serving."""

    def _rejects(
        self,
        target: ScorerTarget,
        body: Any = None,
        *,
        raw: bytes | None = None,
        path: str = "/model/score",
    ) -> str:
        reply = target.post(path, body, raw=raw)
        assert reply.status == 400, f"expected 400, got {reply}"
        return check_error(reply.json())

    def test_malformed_json(self, scorer_target: ScorerTarget) -> None:
        assert "JSON" in self._rejects(scorer_target, raw=b'{"fields": [')

    def test_body_must_be_an_object(self, scorer_target: ScorerTarget) -> None:
        self._rejects(scorer_target, ["not", "an", "object"])

    def test_missing_model_field_is_named(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        dropped = scorer_sample["fields"][-1]
        body = {"fields": scorer_sample["fields"][:-1], "rows": [scorer_sample["rows"][0][:-1]]}
        assert dropped in self._rejects(scorer_target, body)

    def test_duplicate_fields_are_named(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        first = scorer_sample["fields"][0]
        body = {
            "fields": [*scorer_sample["fields"], first],
            "rows": [[*scorer_sample["rows"][0], scorer_sample["rows"][0][0]]],
        }
        assert first in self._rejects(scorer_target, body)

    @pytest.mark.parametrize("delta", [-1, 1])
    def test_ragged_row_is_named(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any], delta: int
    ) -> None:
        good = scorer_sample["rows"][0]
        bad = good[:-1] if delta < 0 else [*good, "extra"]
        message = self._rejects(scorer_target, {"fields": scorer_sample["fields"], "rows": [good, bad]})
        assert "row 1" in message

    def test_unknown_shapley_type_lists_the_choices(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        message = self._rejects(scorer_target, {**scorer_sample, "requestShapleyValueType": "SOMETIMES"})
        assert "SOMETIMES" in message and "ORIGINAL" in message

    def test_unparsable_number_names_row_and_field(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
    ) -> None:
        inputs = scorer_schema["schema"]["inputFields"]
        numeric = [i for i, f in enumerate(inputs) if f["dataType"] in _NUMERIC]
        if not numeric:
            pytest.skip("the model has no numeric input field to send a bad number to")
        rows = vary_rows(scorer_schema, scorer_sample["rows"][0], 3)
        rows[2][numeric[0]] = "not-a-number"
        message = self._rejects(scorer_target, {"fields": scorer_sample["fields"], "rows": rows})
        assert "Row 2" in message and inputs[numeric[0]]["name"] in message

    def test_server_keeps_serving_after_errors(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        for raw in (b"{", b"[]", b'{"fields": ["x"], "rows": [[1, 2]]}'):
            assert scorer_target.post("/model/score", raw=raw).status == 400
        check_score_response(_score(scorer_target, scorer_sample), 1)


class CapabilityChecks:
    """What ``/model/capabilities`` says is what the endpoints do."""

    @pytest.mark.parametrize("shapley", ["ORIGINAL", "TRANSFORMED"])
    def test_contribution_endpoint_matches_capabilities(
        self,
        scorer_target: ScorerTarget,
        scorer_schema: dict[str, Any],
        scorer_sample: dict[str, Any],
        scorer_capabilities: list[str],
        shapley: str,
    ) -> None:
        body = {
            "fields": scorer_sample["fields"],
            "rows": vary_rows(scorer_schema, scorer_sample["rows"][0], 3),
            "requestShapleyValueType": shapley,
        }
        reply = scorer_target.post("/model/contribution", body)
        if f"CONTRIBUTION_{shapley}" in scorer_capabilities:
            assert reply.status == 200, reply
            check_contribution_response(reply.json(), 3)
        else:
            assert reply.status in (400, 501), f"{shapley} is not in capabilities, yet: {reply}"
            check_error(reply.json())

    @pytest.mark.parametrize("shapley", ["ORIGINAL", "TRANSFORMED"])
    def test_score_with_contributions_matches_capabilities(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_capabilities: list[str],
        shapley: str,
    ) -> None:
        reply = scorer_target.post("/model/score", {**scorer_sample, "requestShapleyValueType": shapley})
        if f"CONTRIBUTION_{shapley}" in scorer_capabilities:
            assert reply.status == 200, reply
            check_contribution_response(reply.json()["featureShapleyContributions"], 1)
        else:
            assert reply.status in (400, 501), f"{shapley} is not in capabilities, yet: {reply}"

    def test_contribution_type_none_is_rejected(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        reply = scorer_target.post(
            "/model/contribution", {**scorer_sample, "requestShapleyValueType": "NONE"}
        )
        assert reply.status == 400, reply

    def test_prediction_intervals_match_capabilities(
        self,
        scorer_target: ScorerTarget,
        scorer_sample: dict[str, Any],
        scorer_capabilities: list[str],
        scorer_schema: dict[str, Any],
    ) -> None:
        reply = scorer_target.post("/model/score", {**scorer_sample, "requestPredictionIntervals": True})
        if "SCORE_PREDICTION_INTERVAL" in scorer_capabilities:
            assert reply.status == 200, reply
            intervals = reply.json()["predictionIntervals"]
            assert len(intervals["rows"]) == 1 and len(intervals["fields"]) == len(intervals["rows"][0])
            bounds = interval_bound_names(scorer_schema)
            if bounds:  # listed in the schema: exactly those, and never among the scores
                assert intervals["fields"] == bounds
                assert not set(bounds) & set(reply.json()["fields"])
        else:
            assert reply.status == 400 and "interval" in check_error(reply.json())

    def test_members_not_requested_are_absent(
        self, scorer_target: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        body = _score(scorer_target, scorer_sample)
        assert "featureShapleyContributions" not in body and "predictionIntervals" not in body


class HeaderChecks:
    """Forwarded headers reach model code through ``request_headers``; tracing headers never do."""

    @pytest.fixture
    def recorded(self, scorer_target: ScorerTarget) -> ScorerTarget:
        if scorer_target.header_log is None:
            pytest.skip("header forwarding is observable only on a server the suite starts (--scorer-model)")
        return scorer_target

    def _calls_after(
        self,
        target: ScorerTarget,
        before: int,
        scorer_sample: dict[str, Any],
        headers: dict[str, str],
    ) -> list[dict[str, Any]]:
        _score(target, scorer_sample, headers=headers)
        return target.seen_headers()[before:]

    def test_configured_headers_reach_model_code(
        self, recorded: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        token = f"Bearer {uuid.uuid4()}"
        calls = self._calls_after(
            recorded,
            len(recorded.seen_headers()),
            scorer_sample,
            {"Authorization": token, "X-Tenant-Id": "tenant-a"},
        )
        assert calls, "the model was not called"
        assert calls[-1]["headers"] == {"Authorization": token, "X-Tenant-Id": "tenant-a"}

    def test_tracing_headers_are_never_forwarded(
        self, recorded: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        headers = {
            "Authorization": "Bearer t",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "X-Request-Id": str(uuid.uuid4()),
            "X-Not-Configured": "secret",
        }
        calls = self._calls_after(recorded, len(recorded.seen_headers()), scorer_sample, headers)
        assert calls[-1]["headers"] == {"Authorization": "Bearer t"}

    def test_headers_do_not_leak_into_later_requests(
        self, recorded: ScorerTarget, scorer_sample: dict[str, Any]
    ) -> None:
        before = len(recorded.seen_headers())
        self._calls_after(recorded, before, scorer_sample, {"Authorization": "Bearer first"})
        calls = self._calls_after(recorded, before, scorer_sample, {})
        assert calls[-1]["headers"] == {}, f"a request without headers saw {calls[-1]['headers']}"


class RuntimeSuite(ContractChecks, RowCountChecks, FieldChecks, ErrorChecks, CapabilityChecks, HeaderChecks):
    """Every conformance check. Subclass it and provide a ``scorer_target`` fixture."""


def served(
    model: ModelSource, *, env: dict[str, str] | None = None, runtime: str | None = None
) -> Any:
    """A class-scoped ``scorer_target`` fixture: one server for ``model`` shared by a suite's checks.

    Every suite needs the same fixture, and a hand-written one is easy to get subtly wrong (a
    function scope starts a server per check), so a subclass names only what differs::

        class TestMyRuntime(conformance.RuntimeSuite):
            scorer_target = conformance.served(lambda fixture: fixture("my_model").path, env={...})
    """

    def scorer_target(cls: type, request: pytest.FixtureRequest) -> Iterator[ScorerTarget]:
        path = model(request.getfixturevalue) if callable(model) else model
        with start_server(path, env=env, runtime=runtime) as target:
            yield target

    # A class method, as pytest wants for a class-scoped fixture that lives in a class (its
    # stubs type a fixture as a plain callable, which a classmethod object is not to mypy).
    as_method: Any = classmethod(scorer_target)
    return pytest.fixture(scope="class")(as_method)
