"""What a runtime returned, checked: a wrong shape is named as what it is, not as a row count."""

from __future__ import annotations

import numpy as np
import pytest

from scorer_core.errors import ModelError, RowCountMismatch
from scorer_core.execution.checks import check_columns, check_contributions
from scorer_core.runtime import ContributionGroup, Contributions


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"nested": [1, 2]}, "returned a dict as column 'y' for scoring; expected a sequence of 2 values"),
        (3.5, "returned a float as column 'y' for scoring; expected a sequence of 2 values"),
        ([[0.1, 0.9], [0.8, 0.2]], "returned values of shape (2, 2) as column 'y' for scoring; expected one"),
    ],
)
def test_a_column_of_the_wrong_shape_is_named(column, message):
    with pytest.raises(ModelError) as excinfo:
        check_columns("m", "scoring", {"y": column}, ["y"], 2)
    assert not isinstance(excinfo.value, RowCountMismatch)
    assert message in str(excinfo.value)


def test_a_wrong_row_count_is_still_a_row_count_mismatch():
    with pytest.raises(RowCountMismatch, match="returned 3 rows for a request of 2 rows"):
        check_columns("m", "scoring", {"y": np.zeros((3, 2))}, ["y"], 2)


def test_contributions_of_the_wrong_shape_are_named():
    flat = Contributions(["a", "b"], [ContributionGroup(None, np.zeros(2))])
    with pytest.raises(ModelError) as excinfo:
        check_contributions("m", flat, 2)
    assert not isinstance(excinfo.value, RowCountMismatch)
    assert "returned contributions of shape (2,); expected one row of 2 values" in str(excinfo.value)
    with pytest.raises(RowCountMismatch, match="returned 1 rows for a request of 2 rows"):
        check_contributions("m", Contributions(["a", "b"], [ContributionGroup(None, np.zeros((1, 2)))]), 2)
