"""The double must keep daimojo's surface: these checks compare it with the installed package's code."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest

from .conftest import DOUBLE


def installed_daimojo_model() -> Path:
    """The real package's model.py, found past the double that shadows it on sys.path."""
    for entry in importlib.metadata.distribution("daimojo").files or []:
        if str(entry).replace("\\", "/") == "daimojo/model.py":
            return Path(entry.locate())
    pytest.fail("daimojo is installed without daimojo/model.py")


def public_surface(source: str) -> dict[str, object]:
    tree = ast.parse(source)
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "model"]
    methods = {
        f.name: [a.arg for a in f.args.args]
        + [d.value for d in f.args.defaults if isinstance(d, ast.Constant)]
        for f in cls.body
        if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")
    }
    init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    attributes = sorted(
        {
            t.attr
            for n in ast.walk(init)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Attribute) and not t.attr.startswith("_") and t.attr != "cppmodel"
        }
    )
    messages = sorted(
        {
            n.value
            for n in ast.walk(cls)
            if isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and n.value
            in ("datatable.Frame expected!", "Driverless AI license error!", "Column(s) missing: ")
        }
    )
    return {"methods": methods, "attributes": attributes, "messages": messages}


def test_the_double_has_the_installed_packages_public_surface():
    real = public_surface(installed_daimojo_model().read_text())
    double = public_surface((DOUBLE / "daimojo" / "model.py").read_text())
    assert double["methods"] == real["methods"]
    assert double["attributes"] == real["attributes"]
    assert set(real["messages"]) <= set(double["messages"])


def test_tests_import_the_double_and_it_reports_supported_ops_like_the_package():
    import daimojo

    module = sys.modules["daimojo.model"]  # the package's `model` attribute is the class, as in daimojo
    assert Path(module.__file__).is_relative_to(DOUBLE), "tests must import the double, not the real package"
    assert module.SupportedOps._fields == (
        "prediction",
        "interval",
        "pred_contribs",
        "pred_contribs_original",
    )
    assert daimojo.model is module.model


def test_the_doubles_pipeline_metadata_is_the_protobuf_the_wheel_reads(pipelines):
    import zipfile

    import daimojo
    from daimojo import Pipeline_pb2

    assert not Path(Pipeline_pb2.__file__).is_relative_to(DOUBLE), "the wheel's own Pipeline_pb2"
    with zipfile.ZipFile(pipelines["multiclass"] / "pipeline.mojo") as archive:
        assert "mojo/pipeline.pb" in archive.namelist()
        pipeline = Pipeline_pb2.Pipeline.FromString(archive.read("mojo/pipeline.pb"))
    model = daimojo.model(str(pipelines["multiclass"] / "pipeline.mojo"))
    assert model.uuid == pipeline.uuid == "5b9a0d77-multiclass"
    assert model.feature_names == [c.name for c in pipeline.features.columns]
    assert model.feature_types == ["float64", "string"]
    assert model.output_names == [c.name for c in pipeline.outputs.columns]
    assert model.transformed_names == [c.name for c in pipeline.transformed.columns]
    assert model.missing_values == list(pipeline.missing_values)
    assert list(pipeline.problem.supervised_detail.target.labels) == ["setosa", "versicolor", "virginica"]
