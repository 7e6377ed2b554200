from __future__ import annotations

import numpy as np
import pytest

from scorer_core.frame import Frame


def test_columns_must_have_equal_length():
    with pytest.raises(ValueError, match="column 'b' has 1 rows, expected 2"):
        Frame({"a": np.array([1, 2]), "b": np.array([1])})


def test_concat_then_slice_round_trips():
    a = Frame({"x": np.array([1.0, 2.0]), "s": np.array(["a", None], dtype=object)})
    b = Frame({"x": np.array([3.0]), "s": np.array(["c"], dtype=object)})
    merged = Frame.concat([a, b])
    assert merged.num_rows == 3 and merged["x"].tolist() == [1.0, 2.0, 3.0]
    assert merged.slice(2, 3)["s"].tolist() == ["c"]


def test_concat_promotes_int_and_float():
    merged = Frame.concat([Frame({"n": np.array([1])}), Frame({"n": np.array([np.nan])})])
    assert merged["n"].dtype == np.float64


def test_concat_rejects_different_columns():
    with pytest.raises(ValueError, match="different columns"):
        Frame.concat([Frame({"a": np.array([1])}), Frame({"b": np.array([1])})])


def test_to_pandas_keeps_names_and_order():
    frame = Frame({"b": np.array([1]), "a": np.array(["x"], dtype=object)})
    assert list(frame.to_pandas().columns) == ["b", "a"]
