"""Monitoring events (``monitor.events.EventShaper``): rows typed as the model's schema types
them, large requests in parts, fields dropped or hashed, headers allow-listed, contributions as
columns; and every event made here valid against docs/monitoring-event.schema.json, read back
from the bytes a sink writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from scorer_core.frame import Frame
from scorer_core.monitor.events import EVENT_ROWS, EventShaper, Masking
from scorer_core.monitor.sinks import Event, event_bytes
from scorer_core.runtime import ContributionGroup, Contributions
from scorer_core.service.scored import ScoredRequest
from scorer_core.wire.cellrows import CellRows
from tests.monitor_records import FACTS, INPUTS, scored

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "docs" / "monitoring-event.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
KEY = b"a-hash-key-of-32-characters-xxxx"


def valid(event: Event) -> dict[str, Any]:
    """The event as a sink writes it, read back, after checking it against the schema."""
    written: dict[str, Any] = json.loads(event_bytes(event))
    VALIDATOR.validate(written)
    # jsonschema checks "date-time" only with rfc3339-validator installed: check it here as well.
    received = dt.datetime.fromisoformat(written["received"])
    assert received.utcoffset() == dt.timedelta(0), written["received"]
    return written


def shape(
    batch: Sequence[ScoredRequest], masking: Masking | None = None, headers: Sequence[str] = ()
) -> list[Any]:
    """The batch's events, each valid, as read back."""
    return [valid(event) for event in EventShaper(masking or Masking(), headers).shape(batch)]


def cells(*rows: Sequence[Any]) -> CellRows:
    """A small request's kept cells for the model's inputs (x: Float64, name: Str)."""
    return CellRows.of([spec.name for spec in INPUTS], rows, INPUTS)


def test_the_validator_refuses_what_the_schema_does_not_allow():
    [event] = shape([scored("r1")])
    for wrong in ({**event, "extra": 1}, {**event, "part": 0}, {**event, "endpoint": "elsewhere"}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(wrong)


def test_an_event_says_who_what_and_when():
    request = scored(
        "abc-1", 2, received=1_700_000_000.25, seconds=0.0123456, prefix="/dep-7", endpoint="oip_infer"
    )
    [event] = shape([request])
    assert event["id"] == "abc-1"
    assert (event["part"], event["parts"]) == (1, 1)
    assert event["received"] == "2023-11-14T22:13:20.250000+00:00"
    assert event["duration_ms"] == 12.346
    assert event["model"] == {"id": "model-1", "name": "m", "version": "model-1", "runtime": "probe-scorer"}
    assert (event["deployment"], event["endpoint"], event["status"], event["error"]) == (
        "/dep-7",
        "oip_infer",
        200,
        None,
    )
    assert event["request"] == {"fields": ["x", "name"], "rows": [[0.0, "n0"], [1.0, "n1"]]}
    assert event["response"] == {"fields": ["score"], "rows": [[0.0], [2.0]]}


def test_each_column_type_is_written_as_its_json_value_and_missing_values_as_null():
    frame = Frame(
        {
            "f64": np.array([1.5, np.nan]),
            "f32": np.array([0.5, np.nan], dtype=np.float32),
            "i64": np.array([1, -(2**40)], dtype=np.int64),
            "i32": np.array([7, 8], dtype=np.int32),
            "b": np.array([True, False]),
            "s": np.array(['é, "quoted"\n', None], dtype=object),
            "t": np.array(["2024-01-02T03:04:05.123456789", "NaT"], dtype="datetime64[ns]"),
            "day": np.array(["2024-01-02", "NaT"], dtype="datetime64[ns]"),
        }
    )
    outputs = {"label": np.array(["yes", None], dtype=object), "p": np.array([0.25, np.inf])}
    [event] = shape([scored("r1", frame=frame, outputs=outputs)])

    assert event["request"]["fields"] == ["f64", "f32", "i64", "i32", "b", "s", "t", "day"]
    first, second = event["request"]["rows"]
    assert first == [1.5, 0.5, 1, 7, True, 'é, "quoted"\n', "2024-01-02T03:04:05.123456789", "2024-01-02"]
    assert second == [None, None, -(2**40), 8, False, None, None, None]
    assert [type(value) for value in first[:5]] == [float, float, int, int, bool]
    # JSON has no infinity: written as null, as NaN is.
    assert event["response"] == {"fields": ["label", "p"], "rows": [["yes", 0.25], [None, None]]}


def test_a_models_own_objects_are_written_as_the_answer_shows_them():
    # An object column may hold what the model made: dicts and lists (the answer shows them as
    # JSON), numpy scalars, or values JSON has no word for. None may break the event's shape,
    # nor make its batch unwritable: one Decimal failed every event of its batch at the sink.
    answer = np.array(
        [{"a": 1}, [1, "b"], Decimal("1.50"), np.float32(0.5), np.int64(3), np.bool_(True), None, "s", 2.5],
        dtype=object,
    )
    rows = len(answer)
    [event] = shape([scored("r", rows, outputs={"obj": answer})])
    assert [row[0] for row in event["response"]["rows"]] == [
        '{"a":1}',
        '[1,"b"]',
        "1.50",
        0.5,
        3,
        True,
        None,
        "s",
        2.5,
    ]


def test_kept_cells_are_typed_and_a_bad_cell_spoils_only_its_own_request():
    good = scored("good", frame=cells(["1.5", "a"], ["", "b"]))
    also = scored("also", frame=cells([2, None]))
    bad = scored("bad", frame=cells(["not a number", "c"]), outputs=None, status=400, error="bad cell")
    typed = scored("typed", 2)
    events = {event["id"]: event for event in shape([good, bad, typed, also])}

    assert list(events) == ["good", "bad", "typed", "also"]
    assert events["good"]["request"] == {"fields": ["x", "name"], "rows": [[1.5, "a"], [None, "b"]]}
    assert events["also"]["request"] == {"fields": ["x", "name"], "rows": [[2.0, None]]}
    assert events["typed"]["request"]["rows"] == [[0.0, "n0"], [1.0, "n1"]]
    # Its rows could not be typed: they are exported as sent, beside the error that says why.
    assert events["bad"]["request"] == {"fields": ["x", "name"], "rows": [["not a number", "c"]]}
    assert events["bad"]["response"] is None
    assert (events["bad"]["status"], events["bad"]["error"]) == (400, "bad cell")


def test_kept_cells_of_several_requests_are_typed_as_each_alone():
    batch = [scored(f"r{i}", frame=cells([str(i * 0.5), f"n{i}"])) for i in range(40)]
    events = shape(batch)
    assert [event["request"]["rows"] for event in events] == [[[i * 0.5, f"n{i}"]] for i in range(40)]


def test_a_request_of_2500_rows_is_three_events_of_1000_1000_and_500_rows():
    assert EVENT_ROWS == 1000
    events = shape([scored("big", 2500), scored("after", 1)])
    parts = [event for event in events if event["id"] == "big"]
    assert [(event["part"], event["parts"]) for event in parts] == [(1, 3), (2, 3), (3, 3)]
    assert [len(event["request"]["rows"]) for event in parts] == [1000, 1000, 500]
    assert [len(event["response"]["rows"]) for event in parts] == [1000, 1000, 500]
    for number, event in enumerate(parts):
        xs = [row[0] for row in event["request"]["rows"]]
        assert xs == [float(x) for x in range(number * 1000, min(number * 1000 + 1000, 2500))]
        assert [row[0] for row in event["response"]["rows"]] == [2 * x for x in xs]  # aligned
        assert event["received"] == parts[0]["received"]
    assert [(event["id"], event["parts"]) for event in events[3:]] == [("after", 1)]


def test_exactly_1000_rows_are_one_event_and_no_rows_one_event():
    [thousand] = shape([scored("r", 1000)])
    assert (thousand["parts"], len(thousand["request"]["rows"])) == (1, 1000)
    [empty] = shape([scored("e", 0)])
    assert (empty["parts"], empty["request"], empty["response"]) == (
        1,
        {"fields": ["x", "name"], "rows": []},
        {"fields": ["score"], "rows": []},
    )


def test_dropped_fields_leave_the_request_and_the_response():
    masking = Masking(drop=frozenset({"name", "score", "absent"}))
    [event] = shape(
        [scored("r", 2, outputs={"score": np.zeros(2), "label": np.array(["a", "b"], dtype=object)})], masking
    )
    assert event["request"] == {"fields": ["x"], "rows": [[0.0], [1.0]]}
    assert event["response"] == {"fields": ["label"], "rows": [["a"], ["b"]]}
    assert b"n0" not in event_bytes(event)


def test_hashed_fields_are_the_hmac_of_their_text_and_null_stays_null():
    frame = Frame(
        {
            "name": np.array(["alice@example.com", None, "ünï"], dtype=object),
            "x": np.array([1.0, np.nan, 0.25]),
            "n": np.array([3, -4, 0], dtype=np.int64),
            "b": np.array([True, False, True]),
        }
    )
    masking = Masking(hashed=frozenset({"name", "x", "n", "b", "score"}), key=KEY)
    [event] = shape([scored("r", frame=frame, outputs={"score": np.array([-2.5, 1e-7, 12.0])})], masking)

    def mac(text: str) -> str:
        return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()

    # A string as it is; a number as JSON writes it.
    assert event["request"]["rows"] == [
        [mac("alice@example.com"), mac("1.0"), mac("3"), mac("true")],
        [None, None, mac("-4"), mac("false")],
        [mac("ünï"), mac("0.25"), mac("0"), mac("true")],
    ]
    assert event["response"]["rows"] == [[mac(json.dumps(v))] for v in (-2.5, 1e-7, 12.0)]
    assert b"alice" not in event_bytes(event)
    # Keyed: without the key, the plain hash of the value does not match.
    assert event["request"]["rows"][0][0] != hashlib.sha256(b"alice@example.com").hexdigest()


def test_the_same_value_hashes_the_same_in_every_event_and_key_to_key_differently():
    masking = Masking(hashed=frozenset({"name"}), key=KEY)
    other = Masking(hashed=frozenset({"name"}), key=b"another-key-of-32-characters-xxx")
    first = shape([scored("a", 3), scored("b", 1)], masking)
    assert first[0]["request"]["rows"][0][1] == first[1]["request"]["rows"][0][1]  # "n0" both
    assert shape([scored("a", 1)], other)[0]["request"]["rows"][0][1] != first[0]["request"]["rows"][0][1]


def test_hashing_needs_a_key():
    with pytest.raises(ValueError, match="needs a key"):
        Masking(hashed=frozenset({"name"}))


def test_only_the_allowed_headers_are_copied():
    headers = {
        "x-tenant": "acme",
        "authorization": "Bearer pass-phrase-42",
        "cookie": "session=pass-phrase-42",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "x-other": "not allowed",
    }
    [event] = shape([scored("r", headers=headers)], headers=["X-Tenant", "X-Client"])
    assert event["headers"] == {"x-tenant": "acme"}
    [none] = shape([scored("r", headers=headers)])
    assert none["headers"] == {}
    assert b"pass-phrase-42" not in event_bytes(event) + event_bytes(none)


def test_contributions_are_one_column_per_feature_and_group():
    single = Contributions(
        ["x", "name", "bias"], [ContributionGroup(None, np.array([[0.1, -0.2, 0.5], [0.3, 0.0, 0.5]]))]
    )
    [event] = shape([scored("c", 2, endpoint="contribution", outputs=None, contributions=single)])
    assert event["response"] == {"fields": ["x", "name", "bias"], "rows": [[0.1, -0.2, 0.5], [0.3, 0.0, 0.5]]}

    groups = Contributions(
        ["x", "name"],
        [
            ContributionGroup("setosa", np.array([[1.0, 2.0]])),
            ContributionGroup("virginica", np.array([[3.0, 4.0]])),
        ],
    )
    masking = Masking(drop=frozenset({"name.virginica"}))
    [multi] = shape([scored("m", 1, endpoint="contribution", outputs=None, contributions=groups)], masking)
    assert multi["response"] == {
        "fields": ["x.setosa", "name.setosa", "x.virginica"],
        "rows": [[1.0, 2.0, 3.0]],
    }


def test_a_request_refused_before_its_rows_were_checked_has_null_tables():
    [event] = shape([scored("r", frame=None, outputs=None, status=415, error="Unsupported content type")])
    assert (event["request"], event["response"], event["status"]) == (None, None, 415)
    assert event["error"] == "Unsupported content type"


@pytest.mark.parametrize("endpoint", ["score", "contribution", "score_file", "oip_infer", "grpc_infer"])
def test_every_endpoint_the_server_names_is_one_the_schema_allows(endpoint):
    shape([scored("r", endpoint=endpoint)])


def test_the_facts_are_those_of_the_request():
    assert shape([scored("r", facts=FACTS)])[0]["model"]["id"] == FACTS.model_id
