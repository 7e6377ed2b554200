"""Our /openapi.json against H2O's published OpenAPI file, read from ../shared/reference at test time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scorer_core.app import ModelHost, create_app
from scorer_core.settings import load_settings

REFERENCE = Path(__file__).parent.parent.parent / "shared" / "reference" / "mojo-rest-scorer-openapi3.yaml"


@pytest.fixture(scope="module")
def ours():
    app = create_app(load_settings(), ModelHost(lambda: None))  # type: ignore[arg-type,return-value]
    return app.openapi()


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"H2O's reference OpenAPI file is not checked out beside the repo at {REFERENCE}")
    return yaml.safe_load(REFERENCE.read_text())


def test_we_serve_every_reference_path_and_method(ours, reference):
    for path, methods in reference["paths"].items():
        assert path in ours["paths"], f"{path} missing"
        for method in methods:
            assert method in ours["paths"][path], f"{method.upper()} {path} missing"


@pytest.mark.parametrize(
    "name",
    [
        "ScoreRequest",
        "ScoreResponse",
        "ContributionRequest",
        "ContributionResponse",
        "ContributionGroup",
        "DataField",
        "ModelSchema",
        "Model",
        "PredictionInterval",
    ],
)
def test_component_properties_match_the_reference(ours, reference, name):
    ours_name = {
        "ContributionGroup": "ContributionGroupWire",
        "DataField": "DataFieldWire",
        "ModelSchema": "ModelSchemaWire",
        "Model": "ModelWire",
        "PredictionInterval": "PredictionIntervalWire",
    }.get(name, name)
    expected = set(reference["components"]["schemas"][name]["properties"])
    actual = set(ours["components"]["schemas"][ours_name]["properties"])
    missing = expected - actual - ({"properties"} if name == "Model" else set())
    assert not missing, f"{name} lacks {missing}"


def test_enums_match_the_reference(ours, reference):
    schemas = reference["components"]["schemas"]
    assert set(ours["components"]["schemas"]["ShapleyType"]["enum"]) == set(schemas["ShapleyType"]["enum"])
    assert set(ours["components"]["schemas"]["DataType"]["enum"]) == set(
        schemas["DataField"]["properties"]["dataType"]["enum"]
    )
