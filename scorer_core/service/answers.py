"""Shaping model results into the H2O wire format: ScoreResponse and ContributionResponse bodies."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from scorer_core.config.ids import random_uuid
from scorer_core.execution.scoring import ScoringResult
from scorer_core.runtime import Contributions
from scorer_core.service.tasks import PreparedRequest
from scorer_core.wire.cells import format_column
from scorer_core.wire.collector import collection_paused
from scorer_core.wire.columns import ColumnRows, cell_of
from scorer_core.wire.deadline import checkpoint
from scorer_core.wire.native import string_rows

__all__ = ["RowTable", "contribution_body", "encode", "score_body"]


class RowTable:
    """Rows kept as their columns until ``encode`` writes them, a chunk at a time.

    A million one-row lists live long enough to reach the garbage collector's oldest generation,
    whose full collections then hold the GIL for a tenth of a second; rows built a chunk at a time
    die young."""

    def __init__(self, columns: list[list[str]], num_rows: int) -> None:
        self.columns = columns
        self.num_rows = num_rows

    def chunk(self, start: int, stop: int) -> list[list[str]]:
        if not self.columns:
            return [[] for _ in range(start, min(stop, self.num_rows))]
        return [list(row) for row in zip(*(c[start:stop] for c in self.columns), strict=True)]


def score_body(
    model_id: str, request: PreparedRequest, result: ScoringResult, *, lazy: bool = False
) -> dict[str, Any]:
    """The ScoreResponse: copied input fields, then a generated id, then the model's outputs.

    Members that would be null are left out, as H2O's Java scorer does. ``lazy``: rows as
    ``RowTable`` objects, for ``encode``.
    """
    n = request.frame.num_rows
    outputs = result.outputs or {}
    columns = [_copied_column(request.rows, i) for i in request.copied_positions]
    names = list(request.copied_fields)
    if request.generated_id is not None:
        names.append(request.generated_id)
        columns.append([random_uuid() for _ in range(n)])
    names.extend(outputs)
    columns.extend(map(_column_cells, outputs.values()))
    body: dict[str, Any] = {"id": model_id}
    if request.field_names_in_output:
        body["fields"] = names
    table = RowTable(columns if n else [], n)
    body["score"] = table if lazy else table.chunk(0, n)
    if result.contributions is not None:
        body["featureShapleyContributions"] = contribution_body(result.contributions)
    if result.intervals is not None:
        bounds = RowTable(list(map(format_column, result.intervals.values())), n)
        body["predictionIntervals"] = {
            "fields": list(result.intervals),
            "rows": bounds if lazy else bounds.chunk(0, n),
        }
    return body


def contribution_body(contributions: Contributions) -> dict[str, Any]:
    """The ContributionResponse: feature names and one group per output (per class if multiclass)."""
    groups = []
    for group in contributions.groups:
        wire: dict[str, Any] = {}
        if group.output_group is not None:
            wire["outputGroup"] = group.output_group
        values = group.values
        width = values.shape[1] if values.ndim == 2 else 0
        flat = format_column(values.ravel()) if values.size else []
        wire["contributions"] = (
            [flat[i : i + width] for i in range(0, len(flat), width)]
            if width
            else [[] for _ in range(len(values))]
        )
        groups.append(wire)
    return {"features": list(contributions.features), "contributionGroups": groups}


def _copied_column(rows: Any, position: int) -> list[str]:
    """A copied input field's cells: a batch chunk's column as it is (``ColumnRows`` makes its
    strings once, as ``_cell`` would), else each row's cell."""
    if isinstance(rows, ColumnRows):
        return rows.cells(position)
    return [_cell(row[position]) for row in rows]


def _cell(value: Any) -> str:
    """A copied input cell: as sent, a nested one (a dict or list in a field the model does not
    read) as JSON, which the client can parse, not Python's repr."""
    if isinstance(value, str):
        return value
    return cell_of(value) if isinstance(value, (dict, list)) else format_column([value])[0]


def _column_cells(column: np.ndarray) -> list[str]:
    """An output column's cells; a model's dicts and lists (objects, one per row) as JSON."""
    if column.dtype.kind == "O":
        return [cell_of(value) for value in column.tolist()]
    return format_column(column)


#: Items of one list encoded per orjson call. orjson holds the GIL for a whole call: one call over
#: a million-row response stalled every other request for a quarter of a second.
ENCODE_CHUNK_ITEMS = 8 * 1024


def _encode_rows(table: RowTable, start: int) -> bytes:
    checkpoint()
    stop = min(start + ENCODE_CHUNK_ITEMS, table.num_rows)
    if table.columns and all(len(column) == table.num_rows for column in table.columns):
        # Straight from the columns, with no list per row: what orjson writes, a tenth of the time.
        # (Columns of another length take zip's strict check below.)
        written = string_rows(table.columns, start, stop)
        if written is not None:
            return written
    with collection_paused():  # the chunk's row lists die before any collection sees them
        return orjson.dumps(table.chunk(start, stop))[1:-1]


def encode(body: Any) -> bytes:
    """``orjson.dumps(body)``, byte for byte, with long lists encoded a chunk at a time."""
    if isinstance(body, dict):
        members = (orjson.dumps(str(key)) + b":" + encode(value) for key, value in body.items())
        return b"{" + b",".join(members) + b"}"
    if isinstance(body, RowTable):
        chunks = (_encode_rows(body, start) for start in range(0, body.num_rows, ENCODE_CHUNK_ITEMS))
        return b"[" + b",".join(chunks) + b"]"
    if isinstance(body, list):
        if body and isinstance(body[0], dict):
            return b"[" + b",".join(encode(item) for item in body) + b"]"
        if len(body) > ENCODE_CHUNK_ITEMS:
            chunks = (
                orjson.dumps(body[start : start + ENCODE_CHUNK_ITEMS])[1:-1]
                for start in range(0, len(body), ENCODE_CHUNK_ITEMS)
            )
            return b"[" + b",".join(chunks) + b"]"
    return orjson.dumps(body)
