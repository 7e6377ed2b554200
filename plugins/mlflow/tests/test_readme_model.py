"""The README's "Serving your own model" runs as written: its script saves a model with the MLflow
this project installs, and the server answers its requests with the answer it shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conformance import start_server

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[3] / "README.md"
ENV = {"SCORER_LOAD_PLUGINS": "mlflow"}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def block(text: str, language: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert found, f"no ```{language} block in the README's section"
    return found.group(1)


def test_the_readme_saves_serves_and_scores_its_own_model(tmp_path):
    own_model = section("Serving your own model")
    script = block(own_model, "python")
    saved = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert saved.returncode == 0, saved.stderr[-4000:]
    model = tmp_path / "iris-forest"
    assert f".venv/bin/scorer serve {model.name}\n" in own_model
    request = json.loads(re.search(r"-d '(.*?)'", own_model, re.DOTALL).group(1))  # type: ignore[union-attr]
    shown = json.loads(block(own_model, "json"))
    with start_server(model, env=ENV, record_headers=False) as target:
        sample = target.get("/model/sample_request")
        sample_scored = target.post("/model/score", sample.json())
        reply = target.post("/model/score", request)
    assert sample.status == 200 and sample_scored.status == 200, (sample, sample_scored)
    assert sample.json()["rows"] == [["5.1", "3.5", "1.4", "0.2"]]
    assert reply.status == 200, reply
    answer = reply.json()
    assert answer["id"] == yaml.safe_load((model / "MLmodel").read_text())["model_uuid"]
    assert {k: v for k, v in answer.items() if k != "id"} == {k: v for k, v in shown.items() if k != "id"}
    assert re.fullmatch(r"[0-9a-f]{32}", shown["id"])
