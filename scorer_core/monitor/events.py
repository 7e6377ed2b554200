"""Scored requests shaped into monitoring events: typed rows, private fields dropped or hashed.

Runs in each sink's outbox thread, never on the event loop. A small request's cells were kept as
sent (``wire.cellrows``) and typed where the model ran, which may be a worker process: they are
typed again here, all the batch's at once, as the batcher types them. An event holds at most
``EVENT_ROWS`` rows; a larger request becomes several events (``part`` of ``parts``) with the same
``id``, so that no Kafka record or HTTP post grows with a client's request.

The shape is ``docs/monitoring-event.schema.json``; tests validate every event against it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorer_core.errors import ScorerError
from scorer_core.frame import Frame
from scorer_core.monitor.sinks import Event
from scorer_core.runtime import Contributions
from scorer_core.service.scored import ScoredRequest
from scorer_core.wire.cellrows import CellRows
from scorer_core.wire.columns import cell_of

__all__ = ["EVENT_ROWS", "EventShaper", "Masking"]

#: Most rows one event holds.
EVENT_ROWS = 1000
#: What an event's cell may hold as it is (docs/monitoring-event.schema.json: string, number,
#: boolean, null).
_CELL_TYPES = frozenset({str, int, float, bool, type(None)})
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class Masking:
    """What never leaves the process as sent: fields left out, fields replaced by a keyed hash."""

    drop: frozenset[str] = frozenset()
    hashed: frozenset[str] = frozenset()
    key: bytes | None = None

    def __post_init__(self) -> None:
        if self.hashed and not self.key:
            raise ValueError("hashing fields needs a key")

    def hash(self, value: Any) -> str | None:
        """HMAC-SHA256 of the value's text (a string as it is, a number as JSON writes it), hex;
        a missing value stays missing."""
        if value is None or (isinstance(value, float) and value != value):
            return None
        assert self.key is not None
        text = value if isinstance(value, str) else _json_text(value)
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return str(value)


class EventShaper:
    """Turns scored requests into events. ``headers``: the names copied from each request."""

    def __init__(self, masking: Masking, headers: Iterable[str] = ()) -> None:
        self._masking = masking
        self._headers = tuple(name.lower() for name in headers)

    def shape(self, batch: Sequence[ScoredRequest]) -> list[Event]:
        """The events of ``batch``, in its order (several for a request of many rows)."""
        events: list[Event] = []
        for scored, rows in zip(batch, self._request_rows(batch), strict=True):
            answer = _answer_columns(scored)
            events.extend(self._events(scored, rows, self._table(answer) if answer is not None else None))
        return events

    def _events(self, scored: ScoredRequest, request: _Slice | None, response: _Table | None) -> list[Event]:
        rows = request.stop - request.start if request is not None else 0
        parts = max(1, -(-rows // EVENT_ROWS))
        facts = scored.facts
        common = {
            "received": dt.datetime.fromtimestamp(scored.received, _UTC).isoformat(timespec="microseconds"),
            "duration_ms": round(scored.seconds * 1000, 3),
            "model": {
                "id": facts.model_id,
                "name": facts.model_name,
                "version": facts.model_version,
                "runtime": facts.runtime,
            },
            "deployment": scored.prefix,
            "endpoint": scored.endpoint,
            "status": scored.status,
            "error": scored.error,
            "headers": {name: scored.headers[name] for name in self._headers if name in scored.headers},
        }
        events = []
        for part in range(parts):
            first = part * EVENT_ROWS
            events.append(
                {
                    "id": scored.request_id,
                    "part": part + 1,
                    "parts": parts,
                    **common,
                    "request": request.part(first, first + EVENT_ROWS) if request is not None else None,
                    "response": response.part(first, first + EVENT_ROWS) if response is not None else None,
                }
            )
        return events

    def _request_rows(self, batch: Sequence[ScoredRequest]) -> list[_Slice | None]:
        """Each request's rows, typed and masked. The kept cells of a batch's requests are typed
        all at once, as the batcher types them, and made into rows once: each request's are a
        slice of them. Typed requests (large ones, or the numeric fast path's) make their own."""
        found: list[_Slice | None] = [None] * len(batch)
        kept: dict[int, list[tuple[int, CellRows]]] = {}
        for index, scored in enumerate(batch):
            frame = scored.frame
            if isinstance(frame, CellRows):
                kept.setdefault(id(scored.facts), []).append((index, frame))
            elif frame is not None:
                found[index] = _Slice(self._table(frame), 0, frame.num_rows)
        for members in kept.values():
            merged, each = _typed_together([cells for _, cells in members])
            table = self._table(merged) if merged is not None else None
            offset = 0
            for position, (index, cells) in enumerate(members):
                alone = each[position] if each else None
                if isinstance(alone, Frame):
                    found[index] = _Slice(self._table(alone), 0, alone.num_rows)
                elif table is not None and alone is None:
                    found[index] = _Slice(table, offset, offset + cells.num_rows)
                elif alone is not None:
                    # Its cells could not be typed (its answer was that 400): they are exported as
                    # sent, which is what whoever reads the event about a refused request needs.
                    found[index] = _Slice(self._table(_as_sent(cells)), 0, cells.num_rows)
                offset += cells.num_rows
        return found

    def _table(self, columns: Mapping[str, Any]) -> _Table:
        """The columns as masked rows: dropped fields left out, hashed ones hashed."""
        masking = self._masking
        fields = [name for name in columns if name not in masking.drop]
        values = []
        for name in fields:
            column = columns[name]
            column = _values(column) if isinstance(column, np.ndarray) else column
            if name in masking.hashed:
                column = [masking.hash(value) for value in column]
            values.append(column)
        return _Table(fields, list(map(list, zip(*values, strict=True))))


@dataclass(frozen=True)
class _Table:
    fields: list[str]
    rows: list[list[Any]]

    def part(self, start: int, stop: int) -> dict[str, Any]:
        return {"fields": self.fields, "rows": self.rows[start:stop]}


@dataclass(frozen=True)
class _Slice:
    """One request's rows in a table that may hold its batch's."""

    table: _Table
    start: int
    stop: int

    def part(self, start: int, stop: int) -> dict[str, Any]:
        """Rows ``start`` to ``stop`` of the request's own."""
        return self.table.part(self.start + start, min(self.start + stop, self.stop))


def _typed_together(parts: list[CellRows]) -> tuple[Frame | None, list[Frame | ScorerError]]:
    """The parts' cells typed in one pass (the merged frame, no parts), or, when a cell cannot
    be typed (a refused request's) or the parts were kept for different inputs (a model replaced
    between them), each part typed alone."""
    try:
        return CellRows.concat(parts).typed(), []
    except (ScorerError, ValueError):
        return None, [_typed_alone(cells) for cells in parts]


def _as_sent(cells: CellRows) -> dict[str, list[Any]]:
    """Kept cells by column, untyped."""
    return {spec.name: [row[i] for row in cells.rows] for i, spec in enumerate(cells.inputs)}


def _typed_alone(cells: CellRows) -> Frame | ScorerError:
    try:
        return cells.typed()
    except ScorerError as exc:
        return exc


def _answer_columns(scored: ScoredRequest) -> Mapping[str, Any] | None:
    if scored.outputs is not None:
        return {name: np.asarray(column) for name, column in scored.outputs.items()}
    if scored.contributions is not None:
        return _contribution_columns(scored.contributions)
    return None


def _contribution_columns(contributions: Contributions) -> dict[str, list[Any]]:
    """One column per feature and group (``feature.group`` when the model has several)."""
    columns: dict[str, list[Any]] = {}
    for group in contributions.groups:
        values = np.asarray(group.values)
        for position, feature in enumerate(contributions.features):
            name = feature if group.output_group is None else f"{feature}.{group.output_group}"
            columns[name] = values[:, position].tolist()
    return columns


def _values(column: np.ndarray) -> list[Any]:
    """A column as JSON values: times as ISO 8601 text, missing values as None (NaN as JSON
    writes it: null)."""
    if column.dtype.kind == "M":
        text = np.datetime_as_string(column, unit="auto")
        return [None if t == "NaT" else t for t in text.tolist()]
    values: list[Any] = column.tolist()
    if column.dtype.kind == "O" and not set(map(type, values)) <= _CELL_TYPES:
        values = [value if type(value) in _CELL_TYPES else _cell(value) for value in values]
    return values


def _cell(value: Any) -> Any:
    """A model's own object, as its answer shows it: a dict or a list as JSON text, a numpy
    number as the number, anything else as its text. Written as it is, one value JSON cannot
    hold (a Decimal) failed its whole batch at the sink, and a dict broke the event's shape."""
    if isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    try:
        return cell_of(value)
    except TypeError:  # a dict or list holding what JSON cannot (orjson's error is a TypeError)
        return str(value)
