"""A configurable test runtime: a `.probe` JSON file says its schema and how it misbehaves.

Used to drive every branch of the core over real HTTP: row-count mismatches, model errors,
contributions, prediction intervals, slow loads, header echoes, hangs and segfaults.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from scorer_core import (
    Capabilities,
    ConfigurationError,
    ConfiguredModel,
    ContributionGroup,
    Contributions,
    DataType,
    DemoModel,
    Field,
    Frame,
    ModelSchema,
    Runtime,
    ShapleyType,
    hookimpl,
    request_headers,
)


class ProbeRuntime(Runtime):
    """y = 2 * x (or ``factor`` * x), plus whatever the spec file asks for."""

    name = "probe-scorer"

    @classmethod
    def can_load(cls, path: Path) -> bool:
        return path.suffix == ".probe"

    def load(self, path: Path) -> None:
        spec: dict[str, Any] = json.loads(path.read_text())
        time.sleep(spec.get("load_delay", 0))
        if "load_error" in spec:
            raise RuntimeError(spec["load_error"])
        if "configuration_error" in spec:
            raise ConfigurationError(spec["configuration_error"])
        self.spec = spec
        if spec.get("load_openmp"):  # a native OpenMP pool, as gradient-boosting models load one
            import sklearn.ensemble  # noqa: F401
        if "load_log" in spec:  # one line per load, naming the process: who loaded it, how often
            with open(spec["load_log"], "a") as log:
                log.write(f"{os.getpid()}\n")
        inputs = [Field(n, DataType(t)) for n, t in spec.get("inputs", [["x", "Float64"]])]
        outputs = [Field(n, DataType(t)) for n, t in spec.get("outputs", [["y", "Float64"]])]
        self.schema = ModelSchema(inputs, outputs)
        self.capabilities = Capabilities(
            prediction_intervals=bool(spec.get("intervals")),
            contributions=frozenset(ShapleyType(t) for t in spec.get("contributions", [])),
        )
        self.model_id = spec.get("model_id")
        # Memory the model holds (touched, so that it counts in RSS): a leaked model shows.
        self.ballast = np.ones(int(spec.get("ballast_mb", 0) * 131_072))
        if "sample_row" in spec:
            self.sample_row = tuple(spec["sample_row"])

    def score(self, batch: Frame) -> dict[str, Any]:
        if not batch.num_rows:
            raise AssertionError("the core never calls a runtime with zero rows")
        behaviour = self.spec.get("behaviour", "double")
        time.sleep(self.spec.get("score_delay", 0))
        first = self.schema.inputs[0].name  # x, or whatever a spec named its first input
        x = np.asarray(batch["x" if "x" in batch.columns else first], dtype=float)
        if "hang_on" in self.spec and np.any(x == self.spec["hang_on"]):
            time.sleep(600)  # a model that never answers this input
        if "crash_on" in self.spec and np.any(x == self.spec["crash_on"]):
            ctypes.string_at(0)  # a native library that segfaults on this input
        if behaviour == "raise" or np.any(x == 13):
            raise ValueError("the probe model exploded")
        if behaviour == "drop_row" or (behaviour == "drop_row_when_merged" and len(x) > 1):
            x = x[:-1]
        if behaviour == "not_a_mapping":
            return [1, 2, 3]  # type: ignore[return-value]
        outputs: dict[str, Any] = {"y": self.spec.get("factor", 2) * x}
        for field in self.schema.outputs:
            if field.name == "auth":
                outputs["auth"] = [request_headers.get({}).get("Authorization", "")] * len(x)
            elif field.name == "batch_rows":  # reveals how many rows the model call held
                outputs["batch_rows"] = [batch.num_rows] * len(x)
            elif field.name == "pid":  # which process (worker, executor, replica) answered
                outputs["pid"] = [str(os.getpid())] * len(x)
            elif field.name == "library_threads":  # the native pools as the model call sees them
                from threadpoolctl import threadpool_info

                pools = sorted(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
                outputs["library_threads"] = [" ".join(pools)] * len(x)
            elif field.name == "label":
                outputs["label"] = np.where(x > 1, "big", "small")
            elif field.name.startswith("as_"):  # x as a model declaring this type answers it
                outputs[field.name] = _as_type(x, field.data_type)
            elif field.name.startswith("raw_"):  # x whatever the declared type: a schema that lies
                outputs[field.name] = x
            elif field.name.startswith("echo_"):  # an input as the model got it: dtype and values
                column = batch[field.name[len("echo_") :]]
                outputs[field.name] = [f"{column.dtype}:{value!r}" for value in column]
        return outputs

    def score_with_intervals(self, batch: Frame) -> tuple[dict[str, Any], dict[str, Any]]:
        outputs = self.score(batch)
        y = outputs["y"]
        return outputs, {"y.lower": y - 1, "y.upper": y + 1}

    def contributions(self, batch: Frame, shapley_type: ShapleyType) -> Contributions:
        if not batch.num_rows or shapley_type not in self.capabilities.contributions:
            raise AssertionError("the core never calls a runtime with zero rows or an unsupported type")
        names = [f.name for f in self.schema.inputs]
        suffix = "" if shapley_type is ShapleyType.ORIGINAL else "_t"
        values = (
            np.column_stack([np.asarray(batch[n], dtype=float) for n in names])
            if batch.num_rows
            else np.empty((0, len(names)))
        )
        classes = self.spec.get("classes")
        if classes:
            groups = [ContributionGroup(c, values * (i + 1)) for i, c in enumerate(classes)]
        else:
            groups = [ContributionGroup(None, values)]
        return Contributions([n + suffix for n in names], groups)


def _as_type(x: np.ndarray, data_type: DataType) -> np.ndarray:
    """``x`` in ``data_type`` as models answer it, a missing (NaN) x missing: an integer column
    as integers, or as floats with NaN once a value is missing (as pandas holds a gap); a
    boolean or string column as objects with None; times (x seconds after 2020) with NaT."""
    missing = np.isnan(x)
    if data_type in (DataType.INT32, DataType.INT64):
        return np.floor(x) if missing.any() else np.floor(x).astype(np.int64)
    if data_type is DataType.FLOAT32:
        return x.astype(np.float32)
    if data_type is DataType.BOOL:
        return np.array([None if m else bool(v > 0) for v, m in zip(x, missing, strict=True)], dtype=object)
    if data_type is DataType.STR:
        return np.array([None if m else f"x={v:g}" for v, m in zip(x, missing, strict=True)], dtype=object)
    if data_type is DataType.TIME64:
        micros = np.where(missing, 0, x * 1e6).astype(np.int64).astype("timedelta64[us]")
        return np.where(missing, np.datetime64("NaT"), np.datetime64("2020-01-01T00:00:00", "us") + micros)
    return x


def _build_probe_demo(directory: Path) -> Path:
    target = directory / "demo.probe"
    target.write_text(json.dumps({"model_id": "probe-demo"}))
    return target


@hookimpl
def scorer_register_runtimes() -> list[type[Runtime]]:
    return [ProbeRuntime]


@hookimpl
def scorer_register_demo_models() -> list[DemoModel]:
    return [DemoModel("probe", "probe-scorer", "a probe model for tests", _build_probe_demo)]


@hookimpl
def scorer_configured_models() -> list[ConfiguredModel]:
    # Stands in for a family variable such as SCORER_MOJO_PATH.
    path = os.environ.get("PROBE_MODEL_PATH")
    return [ConfiguredModel(Path(path), "probe-scorer", "PROBE_MODEL_PATH")] if path else []
