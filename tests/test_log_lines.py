"""The text log format keeps each record's text on its own line, whatever the text holds; JSON keeps
the text as it was (JSON escapes it)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from scorer_core.config.logs import JsonFormatter, TextFormatter

FORGED = "2026-12-06 06:00:00,000 CRITICAL scorer_core.auth: FORGED"
HOSTILE = f"x']\n{FORGED}\r\x1b[31mred\x1b[0m\u2028\x85\x00"


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tests.log_lines")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def raise_chained() -> None:
    try:
        raise ValueError(f"Found unknown categories ['{HOSTILE}']")
    except ValueError as exc:
        exc.add_note(f"note: {HOSTILE}")
        raise RuntimeError(f"wrapped {HOSTILE}") from exc


def test_a_text_record_is_one_line_and_its_traceback_cannot_pose_as_a_record(written):
    logger, out = written
    logger.handlers[0].setFormatter(TextFormatter())
    logger.error("POST failed: %s", HOSTILE)
    try:
        raise_chained()
    except RuntimeError:
        logger.exception("unexpected: %s", HOSTILE)
    lines = out.getvalue().split("\n")
    records = [line for line in lines if line and not line.startswith(" ")]
    assert len(records) == 2 and all(" ERROR tests.log_lines: " in line for line in records), lines
    escaped = "x']\\n2026-12-06 06:00:00,000 CRITICAL scorer_core.auth: FORGED\\r\\x1b[31mred\\x1b[0m\\u2028\\x85\\x00"
    assert records[0].endswith(f"POST failed: {escaped}")
    assert not any(ch in out.getvalue() for ch in "\r\x1b\u2028\x85\x00")
    traceback = "\n".join(lines[lines.index(records[1]) + 1 :])
    # Every message of the chain, its notes included, stays on its line, escaped.
    assert f"    ValueError: Found unknown categories ['{escaped}']\n" in traceback
    assert f"    note: {escaped}\n" in traceback
    assert f"    RuntimeError: wrapped {escaped}" in traceback
    assert "    Traceback (most recent call last):" in traceback


def test_json_records_keep_the_text_as_it_was(written):
    logger, out = written
    logger.handlers[0].setFormatter(JsonFormatter())
    try:
        raise_chained()
    except RuntimeError:
        logger.exception("unexpected: %s", HOSTILE)
    (line,) = out.getvalue().rstrip("\n").split("\n")
    entry = json.loads(line)
    assert entry["message"] == f"unexpected: {HOSTILE}"
    assert f"RuntimeError: wrapped {HOSTILE}" in entry["exception"]
