"""Runtime 2.0's output splitting: a legacy whole-batch JSON blob becomes one JSON string per row.

The rules, from H2O's migration guide (HT scorer runtime 1.7.x to 2.0.x):

- A legacy blob for N rows holds, under each per-row key, a list of N entries: row i gets entry i.
  For one row that list has one entry, so the extra list layer (``[[0.9, 0.1]]``) is unwrapped by
  the same rule. Every other key describes the model (``labels``) and is copied to every row.
- A model that already returns N per-row strings is passed through untouched.
- Anything else (a per-row key with another length, not a list, missing, or a blob that is not a
  JSON object) is a row-count or model error naming what was wrong, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scorer_mlflow.runtime import prediction_columns

from scorer_core import ModelError, RowCountMismatch
from scorer_hydrogen_torch.metadata import HydrogenTorchMetadata

__all__ = ["output_cells", "split_rows"]

_RUNTIME = "hydrogen-torch-scorer"
#: The one output field of an HT model (runtime 2.0): a JSON string per row.
OUTPUT_FIELD = "output"


def output_cells(prediction: Any) -> list[Any]:
    """The cells of a pyfunc prediction with one output column (DataFrame, Series, array, list, str)."""
    if isinstance(prediction, str):
        return [prediction]
    return list(prediction_columns(prediction, [OUTPUT_FIELD], _RUNTIME)[OUTPUT_FIELD])


def split_rows(prediction: Any, rows: int, metadata: HydrogenTorchMetadata) -> list[str]:
    """One JSON string per input row from whatever the model returned for ``rows`` rows."""
    cells = output_cells(prediction)
    if metadata.output_format == "per_row" or (rows > 1 and len(cells) == rows):
        if len(cells) != rows:
            raise RowCountMismatch(runtime=_RUNTIME, expected=rows, actual=len(cells))
        return [cell if isinstance(cell, str) else json.dumps(cell) for cell in cells]
    if len(cells) != 1:
        raise RowCountMismatch(runtime=_RUNTIME, expected=rows, actual=len(cells))
    blob = _parse_blob(cells[0])
    return [json.dumps(row, ensure_ascii=False) for row in _blob_rows(blob, rows, metadata.row_keys)]


def _parse_blob(cell: Any) -> dict[str, Any]:
    if isinstance(cell, dict):
        return cell
    try:
        blob = json.loads(cell)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"the model's output is not a JSON blob: {exc}", runtime=_RUNTIME) from exc
    if not isinstance(blob, dict):
        raise ModelError(
            f"the model's JSON blob is a {type(blob).__name__}, not an object with per-row keys",
            runtime=_RUNTIME,
        )
    return blob


def _blob_rows(blob: dict[str, Any], rows: int, row_keys: Sequence[str]) -> list[dict[str, Any]]:
    missing = [key for key in row_keys if key not in blob]
    if missing == list(row_keys):
        raise ModelError(
            f"the model's JSON blob has none of the per-row keys {list(row_keys)} (it has {sorted(blob)})",
            runtime=_RUNTIME,
        )
    for key in row_keys:
        if key not in blob:
            continue
        value = blob[key]
        if not isinstance(value, list):
            raise ModelError(
                f"the model's JSON blob holds a {type(value).__name__} under per-row key '{key}', "
                f"not a list of {rows} rows",
                runtime=_RUNTIME,
            )
        if len(value) != rows:
            raise RowCountMismatch(runtime=_RUNTIME, expected=rows, actual=len(value))
    return [
        {key: (value[i] if key in row_keys else value) for key, value in blob.items()} for i in range(rows)
    ]
