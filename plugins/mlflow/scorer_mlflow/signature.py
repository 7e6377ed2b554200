"""Mapping an MLflow model signature to the H2O contract's typed fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scorer_core import ConfigurationError, DataType, Field

if TYPE_CHECKING:
    from mlflow.types import Schema

__all__ = ["INPUT_TENSOR_PREFIX", "PREDICTION_FIELD", "input_fields", "output_fields"]

#: Output name used when the signature's single output column has no name.
PREDICTION_FIELD = "prediction"
#: Input fields of a tensor signature ``(-1, k)`` are named ``x0 .. x{k-1}`` (or ``<name>0 ..``).
INPUT_TENSOR_PREFIX = "x"

_MLFLOW_TYPES = {
    "boolean": DataType.BOOL,
    "integer": DataType.INT32,
    "long": DataType.INT64,
    "float": DataType.FLOAT32,
    "double": DataType.FLOAT64,
    "string": DataType.STR,
    "binary": DataType.STR,
    "datetime": DataType.TIME64,
}
_NUMPY_KINDS = {"b": DataType.BOOL, "i": DataType.INT64, "u": DataType.INT64, "f": DataType.FLOAT64}


def _col_type(spec: Any, where: str) -> DataType:
    name = getattr(getattr(spec, "type", None), "name", None)
    if name not in _MLFLOW_TYPES:
        raise ConfigurationError(
            f"{where} has MLflow type {spec.type!r}, which the H2O contract cannot carry; supported: "
            f"{', '.join(_MLFLOW_TYPES)}"
        )
    return _MLFLOW_TYPES[name]


def _tensor_type(dtype: np.dtype[Any]) -> DataType:
    if dtype == np.float32:
        return DataType.FLOAT32
    if dtype == np.int32:
        return DataType.INT32
    return _NUMPY_KINDS.get(dtype.kind, DataType.STR)


def input_fields(schema: Schema, model_dir: str) -> list[Field]:
    """Input fields from the signature: named columns, or one 2-D tensor ``(-1, k)``."""
    if schema.is_tensor_spec():
        from mlflow.types import TensorSpec

        specs = [spec for spec in schema.inputs if isinstance(spec, TensorSpec)]
        shape = tuple(specs[0].shape) if len(specs) == 1 else ()
        if len(shape) != 2 or shape[1] is None or shape[1] < 0:
            raise ConfigurationError(
                f"MLflow model at '{model_dir}' has a tensor input signature {schema}; only a single "
                "2-D tensor of shape (-1, k) can be served from tabular requests. Save the model with "
                "a column-based signature (infer_signature on a pandas DataFrame)"
            )
        prefix = specs[0].name or INPUT_TENSOR_PREFIX
        data_type = _tensor_type(specs[0].type)
        return [Field(f"{prefix}{i}", data_type) for i in range(int(shape[1]))]
    fields = []
    for index, spec in enumerate(schema.inputs):
        if spec.name is None:
            raise ConfigurationError(
                f"MLflow model at '{model_dir}' has an unnamed input column (position {index}); "
                "the H2O contract addresses inputs by name. Save the model with named columns"
            )
        fields.append(Field(spec.name, _col_type(spec, f"Input column '{spec.name}'")))
    return fields


def output_fields(schema: Schema) -> list[Field]:
    """Output fields from the signature; unnamed single outputs are called ``prediction``."""
    if schema.is_tensor_spec():
        from mlflow.types import TensorSpec

        spec = schema.inputs[0]
        assert isinstance(spec, TensorSpec)
        shape = tuple(spec.shape)
        data_type = _tensor_type(spec.type)
        name = spec.name or PREDICTION_FIELD
        if len(shape) == 2 and shape[1] is not None and shape[1] > 1:
            return [Field(f"{name}.{i}", data_type) for i in range(shape[1])]
        return [Field(name, data_type)]
    specs = list(schema.inputs)
    if len(specs) == 1 and specs[0].name is None:
        return [Field(PREDICTION_FIELD, _col_type(specs[0], "The output column"))]
    return [
        Field(
            spec.name if spec.name is not None else f"{PREDICTION_FIELD}.{i}",
            _col_type(spec, "An output column"),
        )
        for i, spec in enumerate(specs)
    ]
