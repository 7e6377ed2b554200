"""``MlflowRuntime.preload_modules``: what loading a model imports, named from its files without
running any of them, and the worker processes forked from a process that imported it."""

from __future__ import annotations

import datetime
import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath

import pytest
from scorer_mlflow.preload import pickled_modules, preload_modules

from conformance import start_server
from tests.conftest import children, is_forkserver


def recorded_modules(data: bytes) -> set[str]:
    """The modules unpickling ``data`` looks globals up in, recorded as it runs: the reference."""
    modules: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            modules.add(module)
            return super().find_class(module, name)

    import io

    Recording(io.BytesIO(data)).load()
    return modules - {"__builtin__", "__main__"}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_modules_read_from_a_pickles_opcodes_are_those_its_loading_looks_in(protocol, tmp_path):
    shared = Fraction(2, 3)  # written once, then fetched from the memo
    value = [
        "decimal",  # a module's name as data first: the global reads it back from the memo
        {"datetime": 1},
        OrderedDict(a=1),
        Fraction(1, 3),
        Decimal("1.5"),
        datetime.date(2026, 12, 7),
        {"again": shared, "and again": shared},
        PurePosixPath("x"),
        OrderedDict(b=2),
    ]
    data = pickle.dumps(value, protocol=protocol)
    (tmp_path / "value.pkl").write_bytes(data)
    found = pickled_modules(tmp_path / "value.pkl")
    assert found == recorded_modules(data)
    # Protocols before 3 name modules by their Python 2 names where those differ (copy_reg).
    assert {"fractions", "decimal", "datetime", "pathlib"} <= found


class _Mkdir:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_reading_a_pickle_runs_nothing_in_it(tmp_path):
    marker = tmp_path / "made-by-the-pickle"
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(_Mkdir(str(marker))))
    assert pickled_modules(tmp_path / "model.pkl") == {"posix"}  # os.mkdir's module
    assert not marker.exists()


def test_reading_stops_at_its_opcode_limit(tmp_path, monkeypatch):
    (tmp_path / "model.pkl").write_bytes(pickle.dumps([Decimal(1), *range(1000), Fraction(1, 3)]))
    assert pickled_modules(tmp_path / "model.pkl") == {"decimal", "fractions"}
    monkeypatch.setattr("scorer_mlflow.preload.OPCODE_LIMIT", 100)
    assert pickled_modules(tmp_path / "model.pkl") == {"decimal"}  # what it named before the limit


def test_modules_of_the_models_own_code_are_left_to_it(tmp_path):
    """mlflow puts the model's code directory first on the path when it loads: a module of the
    same name imported before, from elsewhere, would shadow the model's own."""
    (tmp_path / "MLmodel").write_text(
        "flavors:\n"
        "  python_function: {loader_module: mlflow.sklearn, code: code}\n"
        "  sklearn: {pickled_model: model.pkl, serialization_format: cloudpickle}\n"
    )
    (tmp_path / "model.pkl").write_bytes(pickle.dumps([Fraction(1, 3), Decimal(2)]))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "fractions.py").write_text("")
    assert preload_modules(tmp_path) == ["mlflow.pyfunc", "mlflow.sklearn", "decimal"]


@pytest.mark.parametrize("content", [b"", b"not a pickle at all", pickle.dumps(Fraction(1, 3))[:9]])
def test_a_file_that_is_no_whole_pickle_names_nothing(content, tmp_path):
    (tmp_path / "model.pkl").write_bytes(content)
    assert pickled_modules(tmp_path / "model.pkl") == set()
    assert pickled_modules(tmp_path / "missing.pkl") == set()


def test_a_scikit_learn_pipeline_names_every_module_its_load_needs(mixed_model):
    preload = preload_modules(mixed_model.path)
    assert preload[:2] == ["mlflow.pyfunc", "mlflow.sklearn"]
    steps = [mixed_model.model, *mixed_model.model.named_steps.values()]
    assert {type(step).__module__ for step in steps} <= set(preload), preload
    # In a fresh interpreter that imported them, loading the model imports nothing more of the
    # libraries that cost the time: scikit-learn, SciPy, pandas, NumPy.
    script = (
        "import importlib, json, sys\n"
        f"for name in {preload!r}: importlib.import_module(name)\n"
        "before = set(sys.modules)\n"
        "import mlflow.pyfunc\n"
        f"mlflow.pyfunc.load_model({str(mixed_model.path)!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    more = json.loads(loaded.stdout.strip().splitlines()[-1])
    heavy = [m for m in more if m.split(".")[0] in ("sklearn", "scipy", "pandas", "numpy")]
    assert not heavy, heavy


def test_no_mlflow_model_names_nothing(tmp_path):
    assert preload_modules(tmp_path) == []


def test_workers_are_forked_from_a_process_that_imported_scikit_learn(mixed_model):
    env = {"SCORER_LOAD_PLUGINS": "mlflow", "BATCH_WORKERS": "2"}
    with start_server(mixed_model.path, env=env, record_headers=False) as target:
        assert target.process is not None
        forkservers = [pid for pid in children(target.process.pid) if is_forkserver(pid)]
        assert len(forkservers) == 1, children(target.process.pid)
        workers = children(forkservers[0])
        assert len(workers) == 2
        maps = Path(f"/proc/{forkservers[0]}/maps").read_text()
        assert "/sklearn/" in maps and "/pandas/" in maps  # their native modules: imported there
        rows = mixed_model.frame.astype(str).values.tolist()
        reply = target.post("/model/score", {"fields": list(mixed_model.frame.columns), "rows": rows})
        assert reply.status == 200, reply.text
        expected = mixed_model.model.predict(mixed_model.frame)
        assert reply.json()["score"] == [[str(label)] for label in expected]
