"""MlflowRuntime: serves any MLflow pyfunc model directory through the H2O contract."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scorer_core import (
    ConfigurationError,
    DataType,
    Field,
    Frame,
    InvalidRequest,
    ModelError,
    ModelSchema,
    Outputs,
    Runtime,
)
from scorer_mlflow.classes import estimator_classes, named_by_class
from scorer_mlflow.direct import direct_predict
from scorer_mlflow.environment import warn_of_mismatches
from scorer_mlflow.examples import example_cells
from scorer_mlflow.mlmodel import NO_SIGNATURE_FIX, check_mlmodel, mlmodel_file
from scorer_mlflow.preload import preload_modules
from scorer_mlflow.signature import input_fields, output_fields

__all__ = ["MlflowRuntime", "prediction_columns"]

log = logging.getLogger(__name__)

#: Phrases of MLflow's schema-enforcement errors: the input, not the model, is at fault.
_ENFORCEMENT_MESSAGES = (
    "Failed to enforce schema",
    "Incompatible input types",
    "Model is missing inputs",
)


class MlflowRuntime(Runtime):
    """Any MLflow model with a ``python_function`` flavor, loaded with ``mlflow.pyfunc.load_model``.

    The input schema comes from the model's signature, which is required: it is how request cells
    are typed. The output schema comes from the signature too, or, when it declares no outputs,
    from scoring the model's saved input example once at load time.
    """

    name = "mlflow-scorer"
    #: bench/README.md, on the benchmark set of three models (2 cores): in-process scoring is ahead
    #: at 1 client on all three and at 16 clients on two, within 12% either way at 64, and needs no
    #: second copy of the model.
    preferred_batch_workers = 0

    @classmethod
    def can_load(cls, path: Path) -> bool:
        # Every MLflow model is ours to judge, even one that cannot be served: check_model then
        # says what is wrong with it, where "no runtime can load" would not.
        return mlmodel_file(path) is not None

    @classmethod
    def check_model(cls, path: Path) -> None:
        check_mlmodel(path)

    @classmethod
    def preload_modules(cls, path: Path) -> list[str]:
        return preload_modules(path)

    def load(self, path: Path) -> None:
        import mlflow.pyfunc

        document = check_mlmodel(path)
        mlmodel = mlmodel_file(path)
        assert mlmodel is not None
        model_dir = str(mlmodel.parent)
        # MLflow's own warnings cost 0.3 s of CPU a process; the same two, warned here for less.
        self._pyfunc = mlflow.pyfunc.load_model(model_dir, suppress_warnings=True)
        warn_of_mismatches(mlmodel.parent, document)
        metadata = self._pyfunc.metadata
        input_schema = metadata.get_input_schema()
        if input_schema is None:
            raise ConfigurationError(
                f"MLflow model at '{model_dir}' has no input signature, so request cells cannot be "
                f"typed; {NO_SIGNATURE_FIX}"
            )
        inputs = input_fields(input_schema, model_dir)
        self._tensor_input = input_schema.is_tensor_spec()
        self._direct = direct_predict(self._pyfunc, input_schema)
        self._input_names = [f.name for f in inputs]
        # Column-based signatures only: a tensor spec's integers are the model's own business.
        integers = (DataType.INT32, DataType.INT64)
        columns = [] if self._tensor_input else inputs
        self._integer_inputs = [f.name for f in columns if f.data_type in integers]
        self._example = _saved_example(metadata, model_dir)
        outputs = self.declared_outputs(model_dir)
        self.schema = ModelSchema(inputs, outputs)
        self._output_names = [f.name for f in outputs]
        self.model_id = getattr(metadata, "model_uuid", None) or mlmodel.parent.name
        if self._example is not None:
            self.sample_row = example_cells(self._example, inputs)

    def declared_outputs(self, model_dir: str) -> list[Field]:
        """The output fields: from the signature, else learnt from the saved input example; a
        classifier's per-class columns named after its classes.

        Subclasses for model kinds with a fixed output layout override it.
        """
        output_schema = self._pyfunc.metadata.get_output_schema()
        if output_schema is not None:
            outputs = output_fields(output_schema)
        else:
            outputs = self._outputs_from_example(model_dir)
        return named_by_class(outputs, estimator_classes(self._pyfunc))

    def _outputs_from_example(self, model_dir: str) -> list[Field]:
        from mlflow.models.signature import infer_signature

        if self._example is None:
            raise ConfigurationError(
                f"MLflow model at '{model_dir}' declares no outputs and has no readable input example "
                "to learn them from. Save it with an output signature: "
                "signature=mlflow.models.infer_signature(X, model.predict(X))"
            )
        return output_fields(infer_signature(self._example, self._pyfunc.predict(self._example)).outputs)

    def _model_input(self, batch: Frame) -> Any:
        if self._tensor_input:
            return np.column_stack([batch[name] for name in self._input_names])
        return batch.select(self._input_names).to_pandas()

    def predict(self, batch: Frame) -> Any:
        """Whatever the pyfunc's ``predict`` returns for ``batch``; signature rejections are 400s."""
        from mlflow.exceptions import MlflowException

        self._refuse_missing_integers(batch)
        model_input = self._model_input(batch)
        if self._direct is not None and self._direct.accepts(model_input):
            return self._direct.predict(model_input)
        try:
            return self._pyfunc.predict(model_input)
        except MlflowException as exc:
            message = str(exc)
            if any(phrase in message for phrase in _ENFORCEMENT_MESSAGES):
                raise InvalidRequest(f"the model's MLflow signature rejected the input: {message}") from exc
            raise

    def _refuse_missing_integers(self, batch: Frame) -> None:
        """A missing cell in an integer column is refused in our words, naming its row and field.

        The core types such a column as floats with NaN, as pandas does, and MLflow's enforcement
        then refuses the whole batch with some 900 characters that quote every row of it.
        """
        for name in self._integer_inputs:
            column = batch[name]
            if column.dtype.kind != "f":
                continue
            missing = np.flatnonzero(np.isnan(column))
            if missing.size:
                raise InvalidRequest(
                    f"Row {int(missing[0])}, field '{name}': a value is required; the model's MLflow "
                    f"signature types '{name}' as an integer, which cannot be missing"
                )

    def score(self, batch: Frame) -> Outputs:
        return prediction_columns(self.predict(batch), self._output_names, self.name)


def _saved_example(metadata: Any, model_dir: str) -> Any:
    """The model's saved input example, or None when it has none or it cannot be read (it only
    improves the sample request, unless the outputs must be learnt from it)."""
    try:
        return metadata.load_input_example(model_dir)
    except Exception as exc:
        log.warning("The model's saved input example cannot be read (%s: %s)", type(exc).__name__, exc)
        return None


def prediction_columns(prediction: Any, names: list[str], runtime: str) -> dict[str, Any]:
    """Name the columns of whatever ``predict`` returned: DataFrame, Series, ndarray, list or dict.

    Columns are matched by name when the prediction has names, else by position. The row count
    is checked by the core afterwards.
    """
    import pandas as pd

    if isinstance(prediction, pd.DataFrame):
        columns = [str(c) for c in prediction.columns]
        if all(name in columns for name in names):
            return {name: prediction[name].to_numpy() for name in names}
        if len(columns) == len(names):
            return {name: prediction.iloc[:, i].to_numpy() for i, name in enumerate(names)}
        raise ModelError(
            f"predict returned columns {columns} but the model's signature declares {names}",
            runtime=runtime,
        )
    if isinstance(prediction, Mapping):
        if all(name in prediction for name in names):
            return {name: prediction[name] for name in names}
        if len(prediction) == len(names):
            return dict(zip(names, prediction.values(), strict=True))
        raise ModelError(
            f"predict returned keys {sorted(map(str, prediction))} but the model's signature "
            f"declares {names}",
            runtime=runtime,
        )
    if isinstance(prediction, pd.Series):
        prediction = prediction.to_numpy()
    array = np.asarray(prediction) if not isinstance(prediction, np.ndarray) else prediction
    if array.ndim == 2 and array.shape[1] == len(names):
        return {name: array[:, i] for i, name in enumerate(names)}
    if array.ndim == 1 and len(names) == 1:
        return {names[0]: array}
    raise ModelError(
        f"predict returned an array of shape {array.shape}, which does not map to the "
        f"{len(names)} output fields {names}",
        runtime=runtime,
    )
