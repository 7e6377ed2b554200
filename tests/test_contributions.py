from __future__ import annotations

import numpy as np
import pytest

from scorer_core.contributions import group_by_class
from scorer_core.errors import ConfigurationError


def test_multiclass_columns_become_one_group_per_class():
    names = ["contrib_a.setosa", "contrib_bias.setosa", "contrib_a.virginica", "contrib_bias.virginica"]
    values = np.arange(8.0).reshape(2, 4)
    result = group_by_class(names, values, ["species.setosa", "species.virginica"])
    assert list(result.features) == ["contrib_a", "contrib_bias"]
    assert [g.output_group for g in result.groups] == ["setosa", "virginica"]
    np.testing.assert_array_equal(result.groups[1].values, [[2.0, 3.0], [6.0, 7.0]])


def test_the_group_is_the_part_after_the_last_dot():
    names = ["contrib_x.y.class.1", "contrib_x.y.class.2"]
    result = group_by_class(names, np.zeros((1, 2)), ["target.class.1", "target.class.2"])
    assert list(result.features) == ["contrib_x.y.class"]
    assert [g.output_group for g in result.groups] == ["1", "2"]


def test_a_single_output_is_one_unnamed_group():
    result = group_by_class(["contrib_a", "contrib_bias"], np.zeros((3, 2)), ["price"])
    assert list(result.features) == ["contrib_a", "contrib_bias"]
    assert [g.output_group for g in result.groups] == [None]


def test_classes_explaining_different_features_are_refused():
    with pytest.raises(ConfigurationError, match="for class 'b' are \\['y'\\], but for the first class \\['x'\\]"):
        group_by_class(["x.a", "y.b"], np.zeros((1, 2)), ["t.a", "t.b"])


def test_columns_left_over_are_refused():
    with pytest.raises(ConfigurationError, match="do not split into one group per class"):
        group_by_class(["x.a", "x.b", "stray"], np.zeros((1, 3)), ["t.a", "t.b"])
