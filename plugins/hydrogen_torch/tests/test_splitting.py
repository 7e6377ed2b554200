"""Output splitting against the migration guide's JSON examples (test vectors) and every error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scorer_hydrogen_torch.metadata import HydrogenTorchMetadata
from scorer_hydrogen_torch.splitting import split_rows

from scorer_core import ModelError, RowCountMismatch

from .conftest import TESTDATA

VECTORS = json.loads((TESTDATA / "seed_vectors.json").read_text())
SEED = Path(__file__).resolve().parents[3].parent / "shared" / "seeds"
LEGACY = HydrogenTorchMetadata("text_classification", "legacy_blob", ("predictions",))
PER_ROW = HydrogenTorchMetadata("text_classification", "per_row", ("predictions",))


def test_vectors_are_the_guides_examples_verbatim():
    assert SEED.is_dir(), f"the migration guide is read from {SEED}, beside the repository"
    guide = "".join(p.read_text() for p in sorted(SEED.glob("*.txt")))
    for vector in VECTORS:
        for response in (vector["legacy"], vector["runtime_2_0"]):
            for [cell] in response["rows"]:
                assert json.dumps([cell]) in guide, cell


@pytest.mark.parametrize("vector", VECTORS, ids=[v["section"] for v in VECTORS])
def test_each_guide_example_splits_exactly_as_printed(vector):
    [[blob]] = vector["legacy"]["rows"]
    wanted = [cell for [cell] in vector["runtime_2_0"]["rows"]]
    rows = split_rows([blob], len(wanted), LEGACY)
    assert [json.loads(r) for r in rows] == [json.loads(w) for w in wanted]
    assert rows == wanted  # byte for byte, too


def test_three_rows_with_three_labels_copy_the_labels_to_every_row():
    [[blob]] = VECTORS[0]["legacy"]["rows"]
    rows = [json.loads(r) for r in split_rows(blob, 3, LEGACY)]
    assert [r["labels"] for r in rows] == [["neg", "neu", "pos"]] * 3
    assert [r["predictions"] for r in rows] == [[0.3, 0.3, 0.4], [0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]


@pytest.mark.parametrize(
    "prediction",
    [
        pd.DataFrame({"output": ['{"predictions": [[1]]}']}),
        pd.Series(['{"predictions": [[1]]}']),
        np.array(['{"predictions": [[1]]}'], dtype=object),
        '{"predictions": [[1]]}',
        [{"predictions": [[1]]}],
    ],
    ids=["DataFrame", "Series", "ndarray", "str", "dict"],
)
def test_every_shape_pyfunc_returns_is_read(prediction):
    assert split_rows(prediction, 1, LEGACY) == ['{"predictions": [1]}']


def test_per_row_strings_pass_through_untouched():
    cells = ['{"predictions": [0.1]}', '{"predictions":[0.2],"x":1}']
    assert split_rows(cells, 2, LEGACY) == cells
    assert split_rows(cells[:1], 1, PER_ROW) == cells[:1]


def test_declared_per_row_output_is_never_unwrapped():
    assert split_rows(['{"predictions": [[0.9, 0.1]]}'], 1, PER_ROW) == ['{"predictions": [[0.9, 0.1]]}']


def test_several_per_row_keys_are_split_together():
    metadata = HydrogenTorchMetadata(
        "image_object_detection", "legacy_blob", ("predictions", "boxes", "scores")
    )
    blob = {
        "predictions": [["cat"], ["dog"]],
        "boxes": [[[0, 0, 1, 1]], [[1, 1, 2, 2]]],
        "scores": [[0.9], [0.8]],
        "labels": ["cat", "dog"],
    }
    rows = [json.loads(r) for r in split_rows([json.dumps(blob)], 2, metadata)]
    assert rows[1] == {
        "predictions": ["dog"],
        "boxes": [[1, 1, 2, 2]],
        "scores": [0.8],
        "labels": ["cat", "dog"],
    }


def test_a_per_row_key_of_another_length_is_a_row_count_error():
    with pytest.raises(RowCountMismatch, match="returned 2 rows for a request of 3 rows"):
        split_rows(['{"predictions": [[1], [2]], "labels": ["a", "b", "c"]}'], 3, LEGACY)


def test_another_number_of_strings_is_a_row_count_error():
    with pytest.raises(RowCountMismatch, match="returned 2 rows for a request of 3 rows"):
        split_rows(['{"predictions": [[1]]}', '{"predictions": [[2]]}'], 3, LEGACY)
    with pytest.raises(RowCountMismatch, match="returned 1 rows for a request of 2 rows"):
        split_rows(['{"predictions": [1]}'], 2, PER_ROW)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        ("not json", "the model's output is not a JSON blob"),
        ("[1, 2]", "the model's JSON blob is a list, not an object with per-row keys"),
        ('{"labels": ["a"]}', "has none of the per-row keys ['predictions'] (it has ['labels'])"),
        ('{"predictions": 0.5}', "holds a float under per-row key 'predictions', not a list of 1 rows"),
    ],
)
def test_blobs_that_cannot_be_split_are_model_errors(blob, message):
    with pytest.raises(ModelError) as error:
        split_rows([blob], 1, LEGACY)
    assert message in str(error.value)
