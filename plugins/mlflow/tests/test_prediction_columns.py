from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scorer_mlflow.runtime import prediction_columns

from scorer_core import ModelError


def cols(prediction, names):
    return {k: list(v) for k, v in prediction_columns(prediction, names, "mlflow-scorer").items()}


def test_dataframe_columns_are_taken_by_name():
    frame = pd.DataFrame({"b": [1, 2], "a": [3, 4]})
    assert cols(frame, ["a", "b"]) == {"a": [3, 4], "b": [1, 2]}


def test_dataframe_with_other_names_maps_by_position():
    assert cols(pd.DataFrame({0: [1.5]}), ["prediction"]) == {"prediction": [1.5]}


def test_series_ndarray_and_list_map_to_a_single_output():
    assert cols(pd.Series([1, 2]), ["prediction"]) == {"prediction": [1, 2]}
    assert cols(np.array([0.5, 0.25]), ["prediction"]) == {"prediction": [0.5, 0.25]}
    assert cols(["a", "b"], ["prediction"]) == {"prediction": ["a", "b"]}


def test_two_dimensional_output_maps_by_position():
    assert cols(np.array([[0.1, 0.9], [0.8, 0.2]]), ["p.0", "p.1"]) == {"p.0": [0.1, 0.8], "p.1": [0.9, 0.2]}
    assert cols(np.array([[3.0], [4.0]]), ["prediction"]) == {"prediction": [3.0, 4.0]}


def test_dict_maps_by_key():
    assert cols({"label": ["x"], "score": [0.5]}, ["score", "label"]) == {"score": [0.5], "label": ["x"]}


def test_shape_that_does_not_fit_the_signature_is_a_model_error():
    with pytest.raises(ModelError, match=r"shape \(2, 3\), which does not map to the 2 output fields"):
        prediction_columns(np.zeros((2, 3)), ["a", "b"], "mlflow-scorer")
    with pytest.raises(ModelError, match="predict returned columns"):
        prediction_columns(pd.DataFrame({"x": [1], "y": [2], "z": [3]}), ["a", "b"], "mlflow-scorer")
