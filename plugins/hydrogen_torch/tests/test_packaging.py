"""``packaging.save_model``'s requirements: this plugin's own model gets pinned ones (torch among
them), covering what its pickle imports; another ``python_model`` is left to MLflow's inference."""

from __future__ import annotations

from importlib.metadata import version

import ht_networks
import pytest
from scorer_hydrogen_torch.packaging import TORCH_MODEL_REQUIREMENTS, save_model
from scorer_mlflow.requirements import pickled_distributions, pinned_requirements

pytestmark = pytest.mark.slow  # saves torch models; some have MLflow infer in a second Python


def requirement_lines(model):
    return [line for line in (model / "requirements.txt").read_text().splitlines() if line.strip()]


def test_the_plugins_own_model_pins_torch_and_what_it_imports(text_model):
    lines = requirement_lines(text_model.path)
    assert lines == pinned_requirements(TORCH_MODEL_REQUIREMENTS)
    # The CPU wheel's local label (2.13.0+cpu) is no version an index serves.
    assert f"torch=={version('torch').split('+')[0]}" in lines
    # What the pickled TorchPyfuncModel imports; the weights need torch, pinned above.
    needed = pickled_distributions(text_model.path / "python_model.pkl")
    assert {"scorer-hydrogen-torch"} in needed, needed
    unpinned = [names for names in needed if not names & set(TORCH_MODEL_REQUIREMENTS)]
    assert not unpinned, unpinned


def test_requirements_given_are_written_as_given(tmp_path):
    network = ht_networks.seeded(ht_networks.TinyTextClassifier)
    saved = save_model(
        tmp_path / "given",
        network,
        task="text_classification",
        labels=ht_networks.TEXT_LABELS,
        encoder={"kind": "text", "column": "text", "vocab": ht_networks.VOCAB, "max_length": 8},
        pip_requirements=["torch==2.13.0", "scorer-hydrogen-torch"],
    )
    # MLflow adds itself to any list it is given.
    assert requirement_lines(saved) == [
        f"mlflow=={version('mlflow')}",
        "torch==2.13.0",
        "scorer-hydrogen-torch",
    ]


@pytest.mark.parametrize("fixture", ["header_model_inferred", "probe_model_inferred"])
def test_another_python_model_or_a_pickled_network_gets_mlflows_inference(fixture, request):
    # A python_model of the caller's (header_model), or a pickled network's own module
    # (probe_model), imports what this plugin cannot know: given no list, MLflow looks, as before.
    lines = requirement_lines(request.getfixturevalue(fixture).path)
    assert lines != pinned_requirements(TORCH_MODEL_REQUIREMENTS)
    assert any(line.startswith("scorer-hydrogen-torch==") for line in lines)
