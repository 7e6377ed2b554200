"""A request's cells kept as sent, to be typed once for every request of a merged batch.

Typing a column costs about the same for one row as for a hundred: a call into orjson or numpy per
column, and for a model of a dozen columns that fixed cost was most of what a single-row request
cost the event loop. So a small request keeps its cells (``CellRows``), only reordered into the
model's input order; the batch that merges it with its neighbours types all their cells at once,
in the thread or worker process that calls the model, not on the event loop.

Typing is per cell, so typing the merged rows gives each request exactly the columns it would get
alone, then merged (``Frame.concat``'s promotions included: an integer column with a missing cell
is float64 either way). A request whose cells cannot be typed must still get its own 400, whose
row numbers count its own rows: when the merged rows fail, ``type_each`` types each request alone,
and only the requests that fail alone get an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from scorer_core.errors import InvalidRequest, ModelError, ScorerError
from scorer_core.frame import Frame
from scorer_core.schema import Field
from scorer_core.wire.cells import build_frame

__all__ = ["KEPT_ROWS", "CellRows", "Typed", "type_each", "typed"]

#: Requests of at most this many rows keep their cells. Above it, typing costs in proportion to the
#: rows, merging saves little, and a request typed where it is parsed overlaps the model's work on
#: another: measured on the ``mixed`` model in a worker process, 1,000-row requests kept as cells
#: ran at 0.53x of typing them as they were parsed.
KEPT_ROWS = 64

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellRows:
    """Rows of cells, one per model input, in the schema's input order; not yet typed.

    ``missing_values``: the model's own missing-value tokens (None: the defaults), as
    ``build_frame`` takes them.
    """

    rows: Sequence[Sequence[Any]]
    inputs: tuple[Field, ...]
    missing_values: frozenset[str] | None = None

    @classmethod
    def of(
        cls,
        fields: Sequence[str],
        rows: Sequence[Sequence[Any]],
        inputs: Sequence[Field],
        missing_values: frozenset[str] | None = None,
    ) -> CellRows:
        """A request's rows (already checked: one cell per name in ``fields``, every input
        present) with only the model's inputs kept, in its order."""
        position = {name: i for i, name in enumerate(fields)}
        wanted = [position[spec.name] for spec in inputs]
        if wanted != list(range(len(fields))):
            if len(wanted) == 1:
                only = wanted[0]
                rows = [(row[only],) for row in rows]
            else:
                pick = itemgetter(*wanted)
                rows = [pick(row) for row in rows]
        return cls(rows, tuple(inputs), missing_values)

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> CellRows:
        return CellRows(self.rows[start:stop], self.inputs, self.missing_values)

    def typed(self) -> Frame:
        """The typed columns; ``InvalidRequest`` names the first bad cell by its row here."""
        return build_frame([spec.name for spec in self.inputs], self.rows, self.inputs, self.missing_values)

    @classmethod
    def concat(cls, parts: Sequence[CellRows]) -> CellRows:
        """The parts' rows, one after the other (every part typed for the same model)."""
        if not parts:
            raise ValueError("cannot concatenate zero parts")
        first = parts[0]
        if len(parts) == 1:
            return first
        for part in parts[1:]:
            if part.inputs != first.inputs or part.missing_values != first.missing_values:
                raise ValueError("cell rows typed for different inputs cannot be merged")
        rows: list[Sequence[Any]] = []
        for part in parts:
            rows.extend(part.rows)
        return cls(rows, first.inputs, first.missing_values)


#: A scoring task's rows: typed columns, or cells still to be typed.
Typed = Frame | CellRows


def typed(frame: Typed) -> Frame:
    """The typed frame (``InvalidRequest`` when cells were kept and one cannot be typed)."""
    return frame if isinstance(frame, Frame) else frame.typed()


def type_each(parts: Sequence[CellRows]) -> tuple[Frame | None, list[Frame | ScorerError]]:
    """Type the parts: merged in one pass when every cell can be typed, giving the merged frame
    and each part's rows of it (views); else each part alone, giving each its frame or its own
    error, and no merged frame. Whatever goes wrong typing one part stays that part's error."""
    try:
        merged = CellRows.concat(parts).typed()
    except Exception:  # a bad cell (InvalidRequest) or a bug: each part alone says whose
        pass
    else:
        frames: list[Frame | ScorerError] = []
        start = 0
        for part in parts:
            frames.append(merged.slice(start, start + part.num_rows))
            start += part.num_rows
        return merged, frames
    alone: list[Frame | ScorerError] = []
    for part in parts:
        try:
            alone.append(part.typed())
        except InvalidRequest as error:
            alone.append(error)
        except Exception as error:  # a bug in typing: this request's 500, not its batch's
            log.exception("Typing a request's cells failed")
            failed = f"typing the request's cells failed: {type(error).__name__}"
            alone.append(ModelError(failed, runtime="scorer_core"))
    return None, alone
