"""The scikit-learn shortcut past MLflow's per-call enforcement (``scorer_mlflow/direct.py``).

Two things make it safe, and each has its test: enforcement returns every frame the shortcut
accepts unchanged (a property test over the accepted dtypes, missing values included), and the
runtime's answers with the shortcut equal its answers through ``PyFuncModel.predict`` on the
benchmark set's models, cell for cell, on rows typed by the server's own code.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scorer_mlflow.direct import ENFORCE_EVERY_CALL_ENV, direct_predict
from scorer_mlflow.runtime import MlflowRuntime

from scorer_core import Frame, InvalidRequest
from scorer_core.wire.cells import build_frame

ROOT = Path(__file__).resolve().parents[3]


def _bench_models():
    spec = importlib.util.spec_from_file_location("bench_models", ROOT / "bench" / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


COLUMN_TYPES = {
    "double": st.floats(allow_nan=True, allow_infinity=True),
    "float": st.floats(width=32, allow_nan=True),
    "long": st.integers(-(2**63), 2**63 - 1),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "boolean": st.booleans(),
    "string": st.one_of(st.none(), st.text(max_size=6)),
}
NUMPY = {
    "double": np.float64,
    "float": np.float32,
    "long": np.int64,
    "integer": np.int32,
    "boolean": np.bool_,
}


@st.composite
def typed_frames(draw):
    """A schema of accepted column types and a frame the server could build for it."""
    names = draw(st.lists(st.sampled_from(sorted(COLUMN_TYPES)), min_size=1, max_size=5))
    rows = draw(st.integers(1, 6))
    columns = {}
    for i, kind in enumerate(names):
        values = draw(st.lists(COLUMN_TYPES[kind], min_size=rows, max_size=rows))
        columns[f"c{i}"] = np.array(values, dtype=NUMPY.get(kind, object))
    return names, Frame(columns).to_pandas()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_frames())
def test_enforcement_returns_every_accepted_frame_unchanged(case):
    from mlflow.models.utils import _enforce_schema
    from mlflow.types import ColSpec, Schema

    kinds, frame = case
    schema = Schema([ColSpec(kind, f"c{i}") for i, kind in enumerate(kinds)])
    shortcut = _shortcut_for(schema)
    if not shortcut.accepts(frame):
        # Only a string column of nothing but None may fall back (pandas cannot tell its type).
        assert any(frame[c].isna().all() and kind == "string" for c, kind in zip(frame, kinds, strict=True))
        return
    enforced = _enforce_schema(frame, schema, "mlflow.sklearn")
    pd.testing.assert_frame_equal(enforced, frame, check_exact=True)


def _shortcut_for(schema):
    """The shortcut for a scikit-learn model saved with ``schema`` (its dtypes are all it needs)."""

    class Pyfunc:  # the few attributes direct_predict reads, as PyFuncModel has them
        loader_module = "mlflow.sklearn"

        def __init__(self):
            from mlflow.models import Model
            from mlflow.models.signature import ModelSignature
            from mlflow.sklearn import _SklearnModelWrapper
            from sklearn.dummy import DummyClassifier

            self._model_impl = _SklearnModelWrapper(DummyClassifier())
            self._predict_fn = self._model_impl.predict
            self.metadata = Model(signature=ModelSignature(inputs=schema))

    found = direct_predict(Pyfunc(), schema)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def bench_models():
    return _bench_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["breast-cancer", "hgb", "mixed"])
def test_the_shortcut_answers_as_pyfunc_on_the_benchmark_set(name, bench_models, tmp_path, monkeypatch):
    built = bench_models.MODELS[name](tmp_path)
    fast = MlflowRuntime()
    fast.load(built.path)
    assert fast._direct is not None, "the benchmark set's models are all plain scikit-learn predict"
    monkeypatch.setenv(ENFORCE_EVERY_CALL_ENV, "1")
    enforced = MlflowRuntime()
    enforced.load(built.path)
    assert enforced._direct is None
    cells = bench_models.cells(built.frame.iloc[:2000])
    if name == "hgb":  # the trees take missing values: some in every column
        for row in range(0, len(cells), 7):
            cells[row][row % len(cells[row])] = ""
    frame = build_frame(list(built.frame.columns), cells, list(fast.schema.inputs))
    assert fast._direct.accepts(fast._model_input(frame))
    got, want = fast.score(frame), enforced.score(frame)
    assert set(got) == set(want)
    for column in want:
        np.testing.assert_array_equal(np.asarray(got[column]), np.asarray(want[column]))


@pytest.mark.slow
def test_a_batch_the_shortcut_does_not_accept_is_not_scored_by_it(bench_models, tmp_path):
    built = bench_models.MODELS["mixed"](tmp_path)
    runtime = MlflowRuntime()
    runtime.load(built.path)
    cells = bench_models.cells(built.frame.iloc[:3])
    age = list(built.frame.columns).index("age")
    cells[1][age] = ""  # a missing integer: float64 with NaN, which MLflow's enforcement refuses
    frame = build_frame(list(built.frame.columns), cells, list(runtime.schema.inputs))
    assert not runtime._direct.accepts(runtime._model_input(frame))
    # Refused before either path, in the runtime's words (MLflow's enforcement would refuse it too).
    with pytest.raises(InvalidRequest, match="Row 1, field 'age': a value is required"):
        runtime.score(frame)


def test_the_mlflow_members_the_shortcut_reads_still_exist(iris_classifier):
    """MLflow's private members that direct.py reads: if a new MLflow renames one, the shortcut
    silently turns off (enforcement on every call); this test says which member went."""
    import mlflow.pyfunc
    import mlflow.sklearn

    assert hasattr(mlflow.sklearn, "_SklearnModelWrapper"), "mlflow.sklearn._SklearnModelWrapper is gone"
    loaded = mlflow.pyfunc.load_model(str(iris_classifier.path))
    for owner, name in [
        (loaded, "_model_impl"), (loaded, "_predict_fn"),
        (loaded.metadata, "_is_signature_from_type_hint"), (loaded.metadata, "_is_type_hint_from_example"),
    ]:  # fmt: skip
        assert hasattr(owner, name), f"MLflow's {type(owner).__name__}.{name} is gone: see scorer_mlflow/direct.py"
    assert direct_predict(loaded, loaded.metadata.get_input_schema()) is not None


@pytest.mark.parametrize("gone", ["_model_impl", "_is_signature_from_type_hint", "_is_type_hint_from_example"])
def test_an_mlflow_without_those_members_gets_no_shortcut_rather_than_an_error(iris_classifier, gone):
    import types

    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(iris_classifier.path))

    class Without:
        """``inner`` as a future MLflow that renamed ``gone`` would show it."""

        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name == gone:
                raise AttributeError(name)
            return getattr(self._inner, name)

    pyfunc = types.SimpleNamespace(
        loader_module=loaded.loader_module, metadata=Without(loaded.metadata), _predict_fn=loaded._predict_fn
    )
    if gone == "_model_impl":
        pyfunc.metadata = loaded.metadata
    else:
        pyfunc._model_impl = loaded._model_impl
    assert direct_predict(loaded, loaded.metadata.get_input_schema()) is not None  # as shipped
    assert direct_predict(pyfunc, loaded.metadata.get_input_schema()) is None


@pytest.mark.slow
def test_models_whose_pyfunc_does_more_than_predict_keep_pyfunc(tmp_path, sklearn_requirements):
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    y = [0, 1, 0, 1]
    model = LogisticRegression().fit(X, y)
    proba = tmp_path / "proba"
    mlflow.sklearn.save_model(
        model,
        str(proba),
        signature=infer_signature(X, model.predict_proba(X)),
        pyfunc_predict_fn="predict_proba",
        serialization_format="cloudpickle",
        pip_requirements=sklearn_requirements,
    )
    loaded = mlflow.pyfunc.load_model(str(proba))
    assert direct_predict(loaded, loaded.metadata.get_input_schema()) is None

    class Custom(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input["a"] * 2

    custom = tmp_path / "custom"
    mlflow.pyfunc.save_model(
        str(custom),
        python_model=Custom(),
        signature=infer_signature(X, X["a"]),
        pip_requirements=sklearn_requirements[:1],  # mlflow, for a class defined here
    )
    loaded = mlflow.pyfunc.load_model(str(custom))
    assert direct_predict(loaded, loaded.metadata.get_input_schema()) is None
