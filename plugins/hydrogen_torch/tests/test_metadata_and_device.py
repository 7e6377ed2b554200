from __future__ import annotations

import pytest
from scorer_hydrogen_torch.device import select_backend, select_device
from scorer_hydrogen_torch.metadata import HydrogenTorchMetadata, read_mlmodel_metadata

from scorer_core import ConfigurationError


def test_the_task_decides_the_per_row_keys():
    metadata = HydrogenTorchMetadata.from_mapping({"task": "text_classification"}, "m")
    assert metadata == HydrogenTorchMetadata("text_classification", "legacy_blob", ("predictions",))


def test_declared_row_keys_override_the_task():
    metadata = HydrogenTorchMetadata.from_mapping({"task": "custom", "row_keys": ["a", "b"]}, "m")
    assert metadata.row_keys == ("a", "b")


def test_an_unknown_task_without_row_keys_is_refused():
    with pytest.raises(
        ConfigurationError, match=r"m: hydrogen_torch\.task 'speech' is not one this runtime knows"
    ):
        HydrogenTorchMetadata.from_mapping({"task": "speech"}, "m")


def test_an_unknown_output_format_is_refused():
    with pytest.raises(
        ConfigurationError, match="output_format is 'csv'; expected one of legacy_blob, per_row"
    ):
        HydrogenTorchMetadata.from_mapping({"task": "text_classification", "output_format": "csv"}, "m")


def test_metadata_is_read_from_mlmodel_without_mlflow(tmp_path):
    assert read_mlmodel_metadata(tmp_path) is None
    (tmp_path / "MLmodel").write_text(
        "flavors: {}\nmetadata:\n  hydrogen_torch:\n    task: text_classification\n"
    )
    assert read_mlmodel_metadata(tmp_path) == {"task": "text_classification"}
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert read_mlmodel_metadata(tmp_path) is None


def test_auto_picks_cuda_only_when_torch_sees_it():
    import torch

    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu").type == "cpu"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_start_up_error():
    with pytest.raises(ConfigurationError, match="SCORER_TORCH_DEVICE='cuda' but torch sees no CUDA device"):
        select_device("cuda")


@pytest.mark.parametrize("value", ["tpu", "gpu0"])
def test_other_devices_are_refused(value):
    with pytest.raises(ConfigurationError, match=f"SCORER_TORCH_DEVICE='{value}'"):
        select_device(value)


def test_backends():
    assert select_backend("torch") == "torch"
    assert select_backend("ONNX") == "onnx"
    with pytest.raises(ConfigurationError, match="SCORER_TORCH_BACKEND='tvm': not one of torch, onnx"):
        select_backend("tvm")
