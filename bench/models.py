"""The benchmark set: MLflow models of different shapes, so that no default is tuned to one.

Each is trained here, on data made or shipped with scikit-learn (nothing is downloaded), saved
in MLflow's format, and given with a DataFrame of rows to send and the model's own predictions
of the first ones, which every server must return before it is measured.

- ``breast-cancer``: StandardScaler + LogisticRegression, 30 float inputs (the first benchmark).
- ``hgb``: HistGradientBoostingClassifier, 8 float inputs on generated data: the shape of the
  GradientBoosting model on which the performance issue measured MLServer.
- ``mixed``: one-hot city (a string), an integer age and a float income, into a
  LogisticRegression: string cells, integer cells and a ColumnTransformer.
- ``credit``: four categorical strings (4 to 12 levels), two integers and eight floats, one-hot
  encoded into a HistGradientBoostingClassifier: the shape on which the mixed-model performance
  issue measured MLServer.
- ``churn``: five categorical strings, two integers and four floats; a TargetEncoder on the
  strings and a StandardScaler on the numbers into a LogisticRegression.
- ``lightgbm``: an LGBMClassifier on twelve floats and two integers, saved with LightGBM's own
  MLflow flavor (its pyfunc answers labels, as ``LGBMClassifier.predict`` does).
- ``h2o3-gbm``: the H2O-3 GBM MOJO of the plugin's fixtures (two numbers, two categoricals, one
  integer-valued number, missing cells). Neither peer serves MOJOs, so only ours and the
  ceiling run; "in-process" is the plugin's own batch call, ``H2O3MojoRuntime.score``.
- ``ht-text``: a Hydrogen Torch text classifier (the plugin tests' tiny transformer, 2 encoder
  layers, random weights from a fixed seed), on CPU here; ours and the ceiling only, and large
  requests of 256 rows, since a transformer on 2 cores scores hundreds of rows a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROWS = 10_000


@dataclass
class Built:
    path: Path
    frame: pd.DataFrame  # ROWS rows to send, typed as the model takes them
    model: Any  # the fitted estimator: model.predict(frame) is what servers must answer
    #: Whether MLflow's server and MLServer can serve it (an MLflow model).
    peers: bool = True
    #: Rows per large request (and per in-process call).
    large_rows: tuple[int, ...] = (1_000, 10_000)
    #: Whether the runtime explains predictions (``/model/contribution`` is measured too).
    contributions: bool = False

    def expected(self, rows: int) -> list[str]:
        """The first label column of the first ``rows`` rows, as text."""
        return [str(v) for v in self.model.predict(self.frame.iloc[:rows])]

    def in_process(self, rows: int) -> Callable[[], Any]:
        """One in-process call on ``rows`` rows, for the in-process rate."""
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(str(self.path))
        frame = self.frame.iloc[:rows]
        return lambda: model.predict(frame)


def _save(estimator: Any, train: pd.DataFrame, directory: Path, flavor: str = "sklearn") -> Path:
    """Saved with ``mlflow.<flavor>`` and a signature, which types the servers' string cells."""
    import importlib

    from mlflow.models import infer_signature
    from scorer_mlflow.requirements import pinned_requirements

    path = directory / "model"
    # Named, not inferred: MLflow's inference starts a second Python per save, about 2.5 s each,
    # and these are the packages the set's models need.
    needed = ["mlflow", "scikit-learn", "cloudpickle", "numpy", "pandas"]
    if flavor != "sklearn":
        needed.append(flavor)
    importlib.import_module(f"mlflow.{flavor}").save_model(
        estimator,
        str(path),
        signature=infer_signature(train, estimator.predict(train)),
        serialization_format="cloudpickle",
        pip_requirements=pinned_requirements(needed),
    )
    return path


def breast_cancer(directory: Path) -> Built:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    train = pd.DataFrame(data.data, columns=[f"f{i}" for i in range(data.data.shape[1])])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(train, data.target)
    rng = np.random.default_rng(0)
    frame = train.iloc[rng.integers(0, len(train), ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory), frame, model)


def hgb(directory: Path) -> Built:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = make_classification(n_samples=20_000, n_features=8, n_informative=5, random_state=0)
    train = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(train, y)
    rng = np.random.default_rng(1)
    frame = train.iloc[rng.integers(0, len(train), ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory), frame, model)


def mixed(directory: Path) -> Built:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(2)
    n = 20_000
    cities = np.array(["Prague", "Lisbon", "Oslo", "Quito", "Hanoi", "Accra"])
    train = pd.DataFrame(
        {
            "city": cities[rng.integers(0, len(cities), n)],
            "age": rng.integers(18, 90, n).astype(np.int64),
            "income": rng.normal(50_000, 15_000, n).round(2),
        }
    )
    target = ((train["age"] > 50) ^ (train["city"].isin(["Oslo", "Quito"]))).astype(int)
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), ["city"]), (StandardScaler(), ["age", "income"])
        ),
        LogisticRegression(max_iter=1000),
    ).fit(train, target)
    frame = train.iloc[rng.integers(0, n, ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory), frame, model)


def _categorical(
    rng: np.random.Generator, n: int, levels: dict[str, list[str]]
) -> tuple[pd.DataFrame, np.ndarray]:
    """String columns drawn uniformly from ``levels``, and the sum of a random effect (standard
    normal) of each row's level in each column: a target built on it depends on every column, so a
    server that mangled string cells would answer visibly wrong predictions."""
    columns, effect = {}, np.zeros(n)
    for name, values in levels.items():
        codes = rng.integers(0, len(values), n)
        columns[name] = np.array(values)[codes]
        effect += rng.normal(0.0, 1.0, len(values))[codes]
    return pd.DataFrame(columns), effect


def _labels(rng: np.random.Generator, score: np.ndarray, positive: float) -> np.ndarray:
    """0/1 labels, ``positive`` of them 1: the top of ``score`` plus noise (a third of its spread),
    so that the classes overlap as real ones do but the score still decides most rows."""
    noisy = score + rng.normal(0.0, score.std() / 3, len(score))
    return (noisy > np.quantile(noisy, 1 - positive)).astype(np.int64)


def _standard(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.asarray((values - values.mean()) / values.std())


def credit(directory: Path) -> Built:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(4)
    n = 20_000
    strings, effect = _categorical(
        rng,
        n,
        {
            "employment": ["unemployed", "part-time", "full-time", "self-employed", "retired"],
            "housing": ["own", "rent", "mortgage", "free"],
            "purpose": ["car", "furniture", "education", "business", "repairs", "vacation", "medical",
                        "wedding", "appliances", "other"],
            "region": ["north", "south", "east", "west", "central", "coast", "highlands", "lakes",
                       "capital", "islands", "valley", "plains"],
        },
    )  # fmt: skip
    numbers = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(np.int64),
            "duration_months": rng.integers(6, 73, n).astype(np.int64),
            "amount": rng.lognormal(8.5, 0.8, n).round(2),
            "income": rng.lognormal(10.5, 0.5, n).round(2),
            "debt_ratio": rng.beta(2, 5, n).round(4),
            "savings": rng.exponential(5_000, n).round(2),
            "checking_balance": rng.normal(1_500, 2_000, n).round(2),
            "utilization": rng.uniform(0, 1, n).round(4),
            "years_at_address": rng.exponential(6, n).round(1),
            "interest_rate": rng.uniform(0.02, 0.25, n).round(4),
        }
    )
    train = pd.concat([strings, numbers], axis=1)
    score = (
        2 * effect
        + _standard(np.log(numbers["amount"] / numbers["income"]))
        + 1.5 * _standard(numbers["debt_ratio"].to_numpy()) * _standard(numbers["utilization"].to_numpy())
        - _standard(np.abs(numbers["age"].to_numpy() - 45.0))
        + 0.5 * _standard(numbers["duration_months"].to_numpy())
        - 0.5 * _standard(np.log1p(numbers["savings"].to_numpy()))
    )
    target = _labels(rng, score, positive=0.3)
    model = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), list(strings.columns)), remainder="passthrough"
        ),
        HistGradientBoostingClassifier(max_iter=100, random_state=0),
    ).fit(train, target)
    frame = train.iloc[rng.integers(0, n, ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory), frame, model)


def churn(directory: Path) -> Built:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler, TargetEncoder

    rng = np.random.default_rng(5)
    n = 20_000
    strings, effect = _categorical(
        rng,
        n,
        {
            "plan": ["basic", "standard", "premium", "family", "student"],
            "contract": ["monthly", "quarterly", "annual", "two-year"],
            "payment": ["card", "debit", "transfer", "paypal", "voucher", "invoice"],
            "channel": ["web", "store", "phone", "partner"],
            "region": ["north", "south", "east", "west", "central", "coast", "capital", "islands"],
        },
    )
    numbers = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 73, n).astype(np.int64),
            "support_calls": rng.poisson(2, n).astype(np.int64),
            "monthly_charges": rng.uniform(10, 120, n).round(2),
            "usage_gb": rng.gamma(2, 20, n).round(3),
            "discount": rng.uniform(0, 0.3, n).round(3),
            "satisfaction": rng.normal(7, 1.5, n).round(1),
        }
    )
    train = pd.concat([strings, numbers], axis=1)
    # Linear in the target-encoded strings and the scaled numbers: the model's own shape.
    score = effect + _standard(numbers.to_numpy(dtype=float)) @ np.array([-1.0, 0.8, 0.6, -0.4, -0.3, -0.7])
    target = _labels(rng, score, positive=0.35)
    model = make_pipeline(
        make_column_transformer(
            (TargetEncoder(cv=KFold(5, shuffle=True, random_state=0)), list(strings.columns)),
            (StandardScaler(), list(numbers.columns)),
        ),
        LogisticRegression(max_iter=1000),
    ).fit(train, target)
    frame = train.iloc[rng.integers(0, n, ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory), frame, model)


def lightgbm(directory: Path) -> Built:
    """LightGBM's flavor loads the classifier itself, whose pyfunc ``predict`` is the classifier's:
    labels, so ``Built.expected`` (``model.predict``) is what every server must answer."""
    from lightgbm import LGBMClassifier

    rng = np.random.default_rng(6)
    n = 20_000
    floats = rng.normal(0.0, 1.0, (n, 12)).round(5)
    train = pd.DataFrame(floats, columns=[f"x{i}" for i in range(12)])
    train["accounts"] = rng.integers(0, 11, n).astype(np.int64)
    train["days_since_last"] = rng.integers(0, 366, n).astype(np.int64)
    score = (
        floats[:, :6] @ np.array([1.0, -0.8, 0.6, 0.5, -0.4, 0.3])
        + np.sin(2 * floats[:, 6]) + floats[:, 7] * floats[:, 8]
        + 0.3 * (train["accounts"].to_numpy() - 5) - _standard(np.sqrt(train["days_since_last"].to_numpy()))
    )  # fmt: skip
    target = _labels(rng, score, positive=0.4)
    model = LGBMClassifier(n_estimators=100, random_state=0, verbose=-1).fit(train, target)
    frame = train.iloc[rng.integers(0, n, ROWS)].reset_index(drop=True)
    return Built(_save(model, train, directory, flavor="lightgbm"), frame, model)


def h2o3_gbm(directory: Path) -> Built:
    import json

    fixtures = Path(__file__).resolve().parents[1] / "plugins" / "h2o3_mojo" / "tests" / "fixtures"
    table = json.loads((fixtures / "test_frame.json").read_text())
    rows = (table["rows"] * (ROWS // len(table["rows"]) + 1))[:ROWS]
    frame = pd.DataFrame(rows, columns=table["fields"], dtype=object)
    from scorer_h2o3_mojo.runtime import H2O3MojoRuntime

    built = RuntimeBuilt(
        fixtures / "mojos" / "gbm_binomial.zip", frame, None, peers=False, contributions=True
    )
    built.runtime_class = H2O3MojoRuntime
    return built


class RuntimeBuilt(Built):
    """A model served by one of our plugins' runtimes: predictions and in-process calls
    through that runtime, on the cells as the server types them."""

    runtime_class: Any = None

    def _runtime(self) -> Any:
        runtime = self.runtime_class()
        runtime.load(self.path)
        return runtime

    def _frame(self, runtime: Any, rows: int) -> Any:
        from scorer_core.wire.cells import build_frame

        return build_frame(list(self.frame.columns), cells(self.frame.iloc[:rows]), runtime.schema.inputs)

    def expected(self, rows: int) -> list[str]:
        runtime = self._runtime()
        first = runtime.schema.outputs[0].name
        return [str(v) for v in runtime.score(self._frame(runtime, rows))[first]]

    def in_process(self, rows: int) -> Callable[[], Any]:
        runtime = self._runtime()
        frame = self._frame(runtime, rows)
        return lambda: runtime.score(frame)


def ht_text(directory: Path) -> Built:
    import sys

    from scorer_hydrogen_torch.packaging import save_model
    from scorer_hydrogen_torch.runtime import HydrogenTorchRuntime

    networks = Path(__file__).resolve().parents[1] / "plugins" / "hydrogen_torch" / "tests" / "models"
    sys.path.insert(0, str(networks))
    import ht_networks

    path = save_model(
        directory / "transformer",
        ht_networks.seeded(ht_networks.TinyTransformerClassifier),
        task="text_classification",
        labels=ht_networks.TEXT_LABELS,
        encoder={"kind": "text", "column": "text", "vocab": ht_networks.VOCAB, "max_length": 32},
    )
    words = ["the", "movie", "was", "good", "but", "plot", "awful", "and", "actor", "okay"]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, size=12)) for _ in range(1_000)]
    built = RuntimeBuilt(path, pd.DataFrame({"text": texts}), None, peers=False, large_rows=(256,))
    built.runtime_class = HydrogenTorchRuntime
    return built


MODELS: dict[str, Callable[[Path], Built]] = {
    "breast-cancer": breast_cancer,
    "hgb": hgb,
    "mixed": mixed,
    "credit": credit,
    "churn": churn,
    "lightgbm": lightgbm,
    "h2o3-gbm": h2o3_gbm,
    "ht-text": ht_text,
}


def cells(frame: pd.DataFrame) -> list[list[str]]:
    """Rows as H2O's contract sends them: every cell a string."""
    out = []
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f":
            out.append([repr(float(v)) for v in values])
        else:
            out.append([str(v) for v in values])
    return [list(row) for row in zip(*out, strict=True)]


def typed_rows(frame: pd.DataFrame) -> list[list[Any]]:
    """Rows with JSON numbers and strings, as MLflow's ``dataframe_split`` sends them."""
    return [[v.item() if hasattr(v, "item") else v for v in row] for row in frame.itertuples(index=False)]


def v2_inputs(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Columns as the V2 inference protocol sends them (MLServer), each typed."""
    inputs = []
    for column in frame.columns:
        values = frame[column]
        kind = values.dtype.kind
        entry: dict[str, Any] = {"name": column, "shape": [len(values)], "data": values.tolist()}
        if kind == "f":
            entry["datatype"] = "FP64"
        elif kind in "iu":
            entry["datatype"] = "INT64"
        else:
            entry["datatype"] = "BYTES"
            entry["parameters"] = {"content_type": "str"}
        inputs.append(entry)
    return inputs
