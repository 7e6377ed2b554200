"""Real HT-style models built in fixtures: small torch networks saved as MLflow pyfunc models."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scorer_hydrogen_torch.packaging import TORCH_MODEL_REQUIREMENTS
from scorer_mlflow.requirements import pinned_requirements

MODELS = Path(__file__).parent / "models"
TESTDATA = Path(__file__).parent / "testdata"
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))  # the networks' classes pickle as `ht_networks.<Class>`

import ht_networks  # noqa: E402

#: Servers started by these tests load both MLflow-based runtimes, so that detection is exercised.
SERVER_ENV = {"SCORER_LOAD_PLUGINS": "mlflow,hydrogen_torch"}
#: What the plain pyfunc models here import (their modules import mlflow.pyfunc), written down:
#: MLflow would otherwise start a second Python per save to infer it.
PLAIN_REQUIREMENTS = pinned_requirements(["mlflow", "cloudpickle"])
#: The same for the torch models whose pickle names a module of this directory (a pickled network,
#: a python_model of the tests'): the plugin's own list. test_packaging.py saves its own copies of
#: two of them without a list, to see MLflow's inference.
TORCH_REQUIREMENTS = pinned_requirements(TORCH_MODEL_REQUIREMENTS)
TEXT_ENCODER = {"kind": "text", "column": "text", "vocab": ht_networks.VOCAB, "max_length": 8}


def image_cell(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, size=ht_networks.IMAGE_SHAPE, dtype=np.uint8)
    return base64.b64encode(pixels.tobytes()).decode()


def save(path, network, **kwargs):
    from scorer_hydrogen_torch.packaging import save_model

    return SimpleNamespace(path=save_model(path, network, **kwargs), network=network)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ht-models")


@pytest.fixture(scope="session")
def text_model(models_dir):
    network = ht_networks.seeded(ht_networks.TinyTextClassifier)
    return save(
        models_dir / "text",
        network,
        task="text_classification",
        labels=ht_networks.TEXT_LABELS,
        encoder=TEXT_ENCODER,
    )


@pytest.fixture(scope="session")
def image_model(models_dir):
    network = ht_networks.seeded(ht_networks.TinyImageClassifier)
    return save(
        models_dir / "image",
        network,
        task="image_classification",
        labels=ht_networks.IMAGE_LABELS,
        encoder={"kind": "image", "column": "image", "shape": list(ht_networks.IMAGE_SHAPE)},
        torchscript=False,
        pip_requirements=TORCH_REQUIREMENTS,
    )


@pytest.fixture(scope="session")
def regression_model(models_dir):
    network = ht_networks.seeded(ht_networks.RegressionHead)
    return save(
        models_dir / "regression",
        network,
        task="tabular_regression",
        encoder={"kind": "tabular", "columns": ht_networks.TABULAR_COLUMNS},
        output_format="per_row",
        torchscript="trace",
    )


def save_header_model(path, **kwargs):
    """A text model whose python_model (the tests') hands the request's headers to the network."""
    from ht_header_model import HeaderAwareTextModel

    network = ht_networks.seeded(ht_networks.TinyTextClassifier)
    return save(
        path,
        network,
        task="text_classification",
        labels=ht_networks.TEXT_LABELS,
        encoder=TEXT_ENCODER,
        python_model=HeaderAwareTextModel(),
        **kwargs,
    )


def save_probe_model(path, **kwargs):
    """A pickled (not TorchScript) network that reports how it was called."""
    network = ht_networks.seeded(ht_networks.InferenceProbe)
    return save(
        path,
        network,
        task="text_classification",
        labels=ht_networks.TEXT_LABELS,
        encoder=TEXT_ENCODER,
        torchscript=False,
        **kwargs,
    )


@pytest.fixture(scope="session")
def header_model(models_dir):
    return save_header_model(models_dir / "header", pip_requirements=TORCH_REQUIREMENTS)


@pytest.fixture(scope="session")
def probe_model(models_dir):
    return save_probe_model(models_dir / "probe", pip_requirements=TORCH_REQUIREMENTS)


@pytest.fixture(scope="session")
def header_model_inferred(models_dir):
    """``header_model`` saved with no requirements: MLflow infers them."""
    return save_header_model(models_dir / "header-inferred")


@pytest.fixture(scope="session")
def probe_model_inferred(models_dir):
    """``probe_model`` saved with no requirements: MLflow infers them."""
    return save_probe_model(models_dir / "probe-inferred")


@pytest.fixture(scope="session")
def seed_model(models_dir):
    """A pyfunc answering with the migration guide's legacy blobs, marked as an HT model."""
    import mlflow.pyfunc
    from ht_seed_model import SeedBlobModel
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    path = models_dir / "seed"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=SeedBlobModel(),
        artifacts={"vectors": str(TESTDATA / "seed_vectors.json")},
        code_paths=[str(MODELS / "ht_seed_model.py")],
        signature=ModelSignature(
            inputs=Schema([ColSpec("string", "text")]), outputs=Schema([ColSpec("string", "output")])
        ),
        metadata={"hydrogen_torch": {"task": "text_classification", "output_format": "legacy_blob"}},
        pip_requirements=PLAIN_REQUIREMENTS,
    )
    return SimpleNamespace(path=path)


def save_plain(path, python_model, module, **kwargs):
    """Save a text-input pyfunc the way Hydrogen Torch releases them: plain MLflow, no metadata."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    mlflow.pyfunc.save_model(
        str(path),
        python_model=python_model,
        code_paths=[str(MODELS / module)],
        signature=ModelSignature(
            inputs=Schema([ColSpec("string", "text")]), outputs=Schema([ColSpec("string", "output")])
        ),
        **{"pip_requirements": PLAIN_REQUIREMENTS, **kwargs},
    )
    return SimpleNamespace(path=path)


@pytest.fixture(scope="session")
def plain_seed_model(models_dir):
    """The guide's legacy blobs from a model saved by plain MLflow, as every released HT model is."""
    from ht_seed_model import SeedBlobModel

    return save_plain(
        models_dir / "plain-seed",
        SeedBlobModel(),
        "ht_seed_model.py",
        artifacts={"vectors": str(TESTDATA / "seed_vectors.json")},
    )


@pytest.fixture(scope="session")
def plain_models(models_dir):
    """Newer per-row, broken short-blob and token-classification models, all without metadata."""
    from ht_plain_models import PerRowModel, ShortBlobModel, TokenBlobModel

    return SimpleNamespace(
        per_row=save_plain(models_dir / "plain-per-row", PerRowModel(), "ht_plain_models.py").path,
        short_blob=save_plain(models_dir / "plain-short", ShortBlobModel(), "ht_plain_models.py").path,
        tokens=save_plain(models_dir / "plain-tokens", TokenBlobModel(), "ht_plain_models.py").path,
    )
