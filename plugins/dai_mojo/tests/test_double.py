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
