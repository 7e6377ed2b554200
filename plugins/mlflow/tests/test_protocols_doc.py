"""docs/protocols.md's worked examples, sent to the demo model they are written for: each curl
command's request, and the Python example run as written, give the answers the page shows."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conformance import start_server
from tests.kserve_client import ensure_kserve

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[3] / "docs" / "protocols.md"
ENV = {"SCORER_LOAD_PLUGINS": "mlflow"}
#: Where the page's examples say the server is.
DOC_ADDRESS = "localhost:8080"


def _blocks(kind: str) -> dict[str, str]:
    """Each fenced block after a ``<!-- kind: name -->`` marker, by name."""
    pattern = rf"<!-- {kind}: ([\w-]+) -->\n```\w+\n(.*?)\n```"
    return dict(re.findall(pattern, DOC.read_text(), flags=re.S))


def _matches(documented: Any, got: Any) -> bool:
    """Equal, where "…" in the page stands for any value and numbers agree to 1e-9."""
    if documented == "…":
        return True
    if isinstance(documented, dict):
        return documented.keys() == got.keys() and all(_matches(documented[k], got[k]) for k in documented)
    if isinstance(documented, list):
        return len(documented) == len(got) and all(map(_matches, documented, got))
    if isinstance(documented, float) and isinstance(got, float):
        return math.isclose(documented, got, rel_tol=1e-9)
    return bool(documented == got)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    env = {**ENV, "SCORER_DEMO_DIR": str(tmp_path_factory.mktemp("demo"))}
    with start_server(None, env=env, record_headers=False) as target:
        yield target


#: The examples that are Python programs, not curl commands.
PROGRAMS = {"tritonclient", "kserve"}


@pytest.mark.parametrize("name", sorted(_blocks("example").keys() - PROGRAMS))
def test_each_curl_example_gives_the_documented_answer(demo, name):
    words = shlex.split(_blocks("example")[name].replace("\\\n", " "))
    assert words[0] == "curl", words
    url = next(w for w in words if w.startswith(DOC_ADDRESS))
    body = words[words.index("-d") + 1]
    reply = demo.post(url[len(DOC_ADDRESS) :], raw=body.encode())
    answers = _blocks("answer")
    if name in answers:
        documented = json.loads(answers[name])
        assert _matches(documented, reply.json()), (documented, reply.json())
    else:
        assert reply.status == 200, reply


def test_the_tritonclient_example_prints_what_its_comment_says(demo):
    code = _blocks("example")["tritonclient"].replace(DOC_ADDRESS, demo.base_url.split("//", 1)[1].rstrip("/"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), {})
    expected = re.search(r"# (.*)$", code.strip().splitlines()[-1])
    assert expected is not None and printed.getvalue().strip() == expected.group(1)


def test_the_kserve_example_prints_what_its_comment_says(demo, tmp_path):
    """Run by KServe's client in its own venv (``tests/kserve_client.py``)."""
    code = _blocks("example")["kserve"].replace(DOC_ADDRESS, demo.base_url.split("//", 1)[1].rstrip("/"))
    program = tmp_path / "example.py"
    program.write_text(code)
    run = subprocess.run([str(ensure_kserve()), str(program)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = re.search(r"# (.*)$", next(line for line in code.splitlines() if "print(" in line))
    assert expected is not None and run.stdout.strip() == expected.group(1)


def test_every_example_is_tested():
    assert set(_blocks("example")) == {"infer-per-field", "infer-matrix", "wrong-name"} | PROGRAMS
