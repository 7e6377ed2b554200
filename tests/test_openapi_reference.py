"""Our /openapi.json against what H2O's published OpenAPI file declares (paths, properties, enums)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scorer_core.config.settings import load_settings
from scorer_core.server.app import create_app
from scorer_core.service.host import ModelHost

REFERENCE = Path(__file__).parent.parent.parent / "shared" / "reference" / "mojo-rest-scorer-openapi3.yaml"


@pytest.fixture(scope="module")
def ours():
    app = create_app(load_settings(), ModelHost(lambda: None))  # type: ignore[arg-type,return-value]
    return app.openapi()


#: What H2O's published OpenAPI file (v1.2.0) declares, written down here so that this test needs
#: nothing outside the repository: each path with its methods, each component's properties, and
#: the enums. ``test_the_expectations_match_the_reference_file`` checks them against that file
#: whenever it is checked out beside the repository (as in CI).
PATHS = {
    "/model/id": {"get"},
    "/model/schema": {"get"},
    "/readyz": {"get"},
    "/model/sample_request": {"get"},
    "/model/capabilities": {"get"},
    "/model/score": {"get", "post"},
    "/model/contribution": {"post"},
    "/model/media-score": {"post"},
}
PROPERTIES = {
    "ScoreRequest": {
        "fields", "idField", "includeFieldsInOutput", "noFieldNamesInOutput",
        "requestPredictionIntervals", "requestShapleyValueType", "rows",
    },
    "ScoreResponse": {"featureShapleyContributions", "fields", "id", "predictionIntervals", "score"},
    "ContributionRequest": {"fields", "requestShapleyValueType", "rows"},
    "ContributionResponse": {"contributionGroups", "features"},
    "ContributionGroup": {"contributions", "outputGroup"},
    "DataField": {"dataType", "example", "name"},
    "ModelSchema": {"inputFields", "outputFields", "targetFields"},
    "Model": {"description", "id", "name", "properties", "schema"},
    "PredictionInterval": {"fields", "rows"},
}  # fmt: skip
SHAPLEY_TYPES = {"ORIGINAL", "TRANSFORMED", "NONE"}
DATA_TYPES = {"Bool", "Int32", "Int64", "Float32", "Float64", "Str", "Time64"}


def test_the_expectations_match_the_reference_file():
    if not REFERENCE.is_file():
        pytest.skip(f"the other tests here stand alone; this cross-check needs {REFERENCE}")
    reference = yaml.safe_load(REFERENCE.read_text())
    assert {path: set(methods) for path, methods in reference["paths"].items()} == PATHS
    schemas = reference["components"]["schemas"]
    assert {name: set(schemas[name]["properties"]) for name in PROPERTIES} == PROPERTIES
    assert set(schemas["ShapleyType"]["enum"]) == SHAPLEY_TYPES
    assert set(schemas["DataField"]["properties"]["dataType"]["enum"]) == DATA_TYPES


def test_we_serve_every_reference_path_and_method(ours):
    for path, methods in PATHS.items():
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
def test_component_properties_match_the_reference(ours, name):
    ours_name = {
        "ContributionGroup": "ContributionGroupWire",
        "DataField": "DataFieldWire",
        "ModelSchema": "ModelSchemaWire",
        "Model": "ModelWire",
        "PredictionInterval": "PredictionIntervalWire",
    }.get(name, name)
    expected = PROPERTIES[name]
    actual = set(ours["components"]["schemas"][ours_name]["properties"])
    missing = expected - actual - ({"properties"} if name == "Model" else set())
    assert not missing, f"{name} lacks {missing}"


def test_enums_match_the_reference(ours):
    assert set(ours["components"]["schemas"]["ShapleyType"]["enum"]) == SHAPLEY_TYPES
    assert set(ours["components"]["schemas"]["DataType"]["enum"]) == DATA_TYPES
