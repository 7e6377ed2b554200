"""GET /model/score?file=NAME (H2O's getScoreByFile), served only inside SCORER_FILE_SCORING_DIR."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import model_calls, wait_for

pytestmark = pytest.mark.slow

SPEC = {"inputs": [["x", "Float64"]], "outputs": [["y", "Float64"]]}


@pytest.fixture
def scoring_dir(tmp_path):
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "rows.csv").write_text("x,note\n1.5,a\n,b\n-2,c\n")
    (root / "sub" / "more.jsonl").write_text('{"x": 4}\n{"x": null}\n')
    outside = tmp_path / "secret.csv"
    outside.write_text("x\n42\n")
    (root / "link.csv").symlink_to(outside)
    (root / "big.csv").write_text("x\n" + "1\n" * 3000)
    (root / "doc.json").write_text('[{"x": 1}]')  # a JSON document, not JSON Lines
    (root / "broken.jsonl").write_text('{"x": 1}\n[2]\n')
    (root / "ragged.csv").write_text("x,y\n1,2\n3\n")
    # A Unix socket: open() fails with ENXIO. Bound through /proc, since a socket's path is at most
    # 108 bytes and tmp_path's may be longer; the socket file stays once the socket is closed.
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(f"/proc/self/fd/{directory}/socket.csv")
    finally:
        os.close(directory)
    return root


def test_a_file_in_the_directory_is_scored_as_its_rows_would_be_when_posted(probe_server, scoring_dir):
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        by_file = target.get("/model/score?file=rows.csv")
        posted = target.post(
            "/model/score", {"fields": ["x", "note"], "rows": [["1.5", "a"], ["", "b"], ["-2", "c"]]}
        )
        assert by_file.status == 200, by_file
        assert by_file.json()["score"] == posted.json()["score"]
        nested = target.get("/model/score?file=sub/more.jsonl")
        assert nested.status == 200 and len(nested.json()["score"]) == 2
        assert target.get("/d-1/model/score?file=rows.csv").status == 200  # under a deployment prefix


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("../secret.csv", 400, "outside SCORER_FILE_SCORING_DIR"),
        ("sub/../../secret.csv", 400, "outside SCORER_FILE_SCORING_DIR"),
        ("link.csv", 400, "outside SCORER_FILE_SCORING_DIR"),  # a symlink out
        ("/etc/passwd", 400, "relative to SCORER_FILE_SCORING_DIR, not an absolute one"),
        ("gone.csv", 400, "does not exist"),
        ("sub", 400, "not a regular file"),
        ("big.csv", 413, "larger than SCORER_MAX_REQUEST_BYTES"),
        ("", 400, "give the file to score"),
        ("doc.json", 400, "unknown format"),
        ("socket.csv", 400, "file 'socket.csv' is not a regular file in SCORER_FILE_SCORING_DIR"),
        # The client's file at fault: a 400 naming the file, never where the server keeps it.
        ("broken.jsonl", 400, "file 'broken.jsonl' cannot be read: line 2 is not a JSON object"),
        ("ragged.csv", 400, "file 'ragged.csv' cannot be read: "),
    ],
)
def test_paths_outside_the_directory_are_refused(probe_server, scoring_dir, name, status, message):
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir), "SCORER_MAX_REQUEST_BYTES": "2048"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        reply = target.get(f"/model/score?file={name}")
    assert reply.status == status, reply
    assert message in reply.json()["detail"]
    assert "42" not in reply.text and str(scoring_dir) not in reply.text


def test_the_file_endpoint_needs_the_credential_too(probe_server, scoring_dir):
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir), "SCORER_PASSPHRASE": "p-1"}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        assert target.get("/model/score?file=rows.csv").status == 401
        assert target.get("/model/score?file=rows.csv", headers={"Authorization": "Bearer p-1"}).status == 200
    assert os.path.exists(scoring_dir / "rows.csv")


def test_client_mistakes_are_4xx_naming_only_what_the_client_sent(probe_server, scoring_dir):
    """Each of these answered 500, some naming where the server keeps its files."""
    (scoring_dir / "deep.jsonl").write_text('{"x": ' + "[" * 500 + "]" * 500 + "}\n")
    env = {"SCORER_FILE_SCORING_DIR": str(scoring_dir)}
    cases = [
        ("a.csv%00x", "file name must not hold a NUL byte"),
        ("A" * 5000 + ".csv", "file name is too long"),
        ("A" * 300 + ".csv", "file name is too long"),
        ("deep.jsonl", "file 'deep.jsonl' cannot be read: "),
    ]
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        replies = [(target.get(f"/model/score?file={name}"), message) for name, message in cases]
        # The same deep cell, posted, is a 400 too.
        posted = target.post("/model/score", {"fields": ["x"], "rows": [[[[[]]]]]})
        assert target.get("/model/score?file=rows.csv").status == 200
    assert posted.status == 400, posted
    for reply, message in replies:
        assert reply.status == 400, reply
        assert message in reply.json()["detail"]
        assert str(scoring_dir) not in reply.text and "fsdir" not in reply.text


def test_under_overload_a_file_is_refused_before_it_is_opened(probe_server, scoring_dir):
    """A refusal costs no walk of the directory: a name that does not exist gets the overload
    answer, not its 400, while the one slot is busy. It got the 400: the file was opened first."""
    env = {
        "SCORER_FILE_SCORING_DIR": str(scoring_dir),
        "SCORING_CONCURRENCY": "1",
        "SCORER_QUEUE_SIZE": "0",
        "SCORER_QUEUE_TIMEOUT": "7",
    }
    with probe_server(env=env, score_delay=3.0, **SPEC) as target:
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(target.post, "/model/score", {"fields": ["x"], "rows": [["1"]]}, timeout=60)
            wait_for(lambda: model_calls(target) == 1, what="the first request in the model")
            refused = [target.get(f"/model/score?file={name}") for name in ("gone.csv", "rows.csv")]
            assert busy.result().status == 200
        missing = target.get("/model/score?file=gone.csv")
        scored = target.get("/model/score?file=rows.csv")
    for reply in refused:
        assert reply.status == 503, reply
        assert reply.headers["retry-after"] == "7" and "SCORING_CONCURRENCY" in reply.json()["detail"]
    assert missing.status == 400 and "does not exist" in missing.json()["detail"], missing
    assert scored.status == 200 and len(scored.json()["score"]) == 3, scored
