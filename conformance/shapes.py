"""Shape checks for the H2O scoring API's bodies, written from its OpenAPI 3 definition.

Each ``check_*`` raises ``AssertionError`` with a message naming the member at fault.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CAPABILITIES",
    "DATA_TYPES",
    "check_capabilities",
    "check_contribution_response",
    "check_error",
    "check_model",
    "check_score_response",
    "interval_bound_names",
    "score_output_names",
]

DATA_TYPES = ("Bool", "Int32", "Int64", "Float32", "Float64", "Str", "Time64")
#: In the order H2O's Java scorer lists them.
CAPABILITIES = (
    "SCORE_PREDICTION_INTERVAL",
    "SCORE",
    "CONTRIBUTION_ORIGINAL",
    "CONTRIBUTION_TRANSFORMED",
)


def _strings(value: Any, where: str) -> list[str]:
    assert isinstance(value, list), f"{where} must be an array, got {value!r:.200}"
    for i, item in enumerate(value):
        assert isinstance(item, str), f"{where}[{i}] must be a string, got {item!r:.200}"
    return value


def _rows(value: Any, where: str, width: int | None) -> list[list[str]]:
    assert isinstance(value, list), f"{where} must be an array of rows, got {value!r:.200}"
    for i, row in enumerate(value):
        _strings(row, f"{where}[{i}]")
        if width is not None:
            assert len(row) == width, f"{where}[{i}] has {len(row)} cells, expected {width}"
    return value


def check_model(body: Any) -> None:
    """``GET /model/schema``: ``{"id", "schema": {"inputFields", "outputFields"}}``."""
    assert isinstance(body, dict), f"schema body must be an object, got {body!r:.200}"
    assert isinstance(body.get("id"), str) and body["id"], "schema.id must be a non-empty string"
    schema = body.get("schema")
    assert isinstance(schema, dict), "schema.schema must be an object"
    for side in ("inputFields", "outputFields"):
        fields = schema.get(side)
        assert isinstance(fields, list), f"schema.{side} must be an array"
        names = []
        for i, field in enumerate(fields):
            assert isinstance(field, dict), f"schema.{side}[{i}] must be an object"
            assert isinstance(field.get("name"), str), f"schema.{side}[{i}].name must be a string"
            assert field.get("dataType") in DATA_TYPES, (
                f"schema.{side}[{i}].dataType {field.get('dataType')!r} is not one of {DATA_TYPES}"
            )
            names.append(field["name"])
        assert len(set(names)) == len(names), f"schema.{side} has duplicate names: {names}"
    assert schema["outputFields"], "schema.outputFields must not be empty"


def interval_bound_names(model: dict[str, Any]) -> list[str]:
    """Output fields of ``/model/schema`` that are prediction-interval bounds, not scores.

    H2O's DAI scorer lists ``<target>.lower`` and ``<target>.upper`` among a schema's outputFields
    and returns them only under ``predictionIntervals``; a bound is such a name whose stem is
    another output field.
    """
    names = [f["name"] for f in model["schema"]["outputFields"]]
    return [
        n for n in names if n.endswith((".lower", ".upper")) and n.rsplit(".", 1)[0] in names
    ]


def score_output_names(model: dict[str, Any]) -> list[str]:
    """The output fields a ``/model/score`` response carries among its scores."""
    bounds = set(interval_bound_names(model))
    return [f["name"] for f in model["schema"]["outputFields"] if f["name"] not in bounds]


def check_capabilities(body: Any) -> None:
    """``GET /model/capabilities``: known values, no duplicates, in H2O's order."""
    values = _strings(body, "capabilities")
    for value in values:
        assert value in CAPABILITIES, f"unknown capability {value!r}; expected some of {CAPABILITIES}"
    assert values == sorted(set(values), key=CAPABILITIES.index), (
        f"capabilities must be unique and ordered as {CAPABILITIES}, got {values}"
    )


def check_score_response(body: Any, rows: int, *, field_names: bool = True) -> list[str] | None:
    """``POST /model/score``: ``id``, ``fields`` (unless suppressed) and ``rows`` score rows."""
    assert isinstance(body, dict), f"score body must be an object, got {body!r:.200}"
    assert isinstance(body.get("id"), str), "score.id must be a string"
    fields = None
    if field_names:
        fields = _strings(body.get("fields"), "score.fields")
    else:
        assert "fields" not in body, "score.fields must be absent when noFieldNamesInOutput is true"
    score = _rows(body.get("score"), "score.score", len(fields) if fields is not None else None)
    assert len(score) == rows, f"score.score has {len(score)} rows for a request of {rows} rows"
    for member in ("featureShapleyContributions", "predictionIntervals"):
        if member in body:
            assert body[member] is not None, f"score.{member} must be left out rather than null"
    return fields


def check_contribution_response(body: Any, rows: int) -> None:
    """``POST /model/contribution``: ``features`` and groups of one row per input row."""
    assert isinstance(body, dict), f"contribution body must be an object, got {body!r:.200}"
    features = _strings(body.get("features"), "contribution.features")
    groups = body.get("contributionGroups")
    assert isinstance(groups, list) and groups, "contribution.contributionGroups must be a non-empty array"
    for i, group in enumerate(groups):
        assert isinstance(group, dict), f"contributionGroups[{i}] must be an object"
        if "outputGroup" in group:
            assert isinstance(group["outputGroup"], str), (
                f"contributionGroups[{i}].outputGroup must be a string"
            )
        contributions = _rows(
            group.get("contributions"), f"contributionGroups[{i}].contributions", len(features)
        )
        assert len(contributions) == rows, (
            f"contributionGroups[{i}] has {len(contributions)} rows for a request of {rows} rows"
        )
    named = [g.get("outputGroup") for g in groups]
    assert len(groups) == 1 or all(named), "several contribution groups must each name their outputGroup"


def check_error(body: Any) -> str:
    """An error body: ``{"detail": "message"}``; returns the message."""
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), (
        f"error bodies must be {{'detail': str}}, got {body!r:.200}"
    )
    assert body["detail"].strip(), "error detail must not be empty"
    return str(body["detail"])
