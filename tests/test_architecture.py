"""The layering rule of docs/architecture.md, read from the source: every import, wherever it is.

Layers, lowest first: the plugin API (the modules at the top of ``scorer_core``), ``config``,
``wire``, ``execution``, ``service`` (the protocol-free scoring path), ``tables`` (files read and
written), ``monitor`` (scored requests exported), ``server`` (HTTP), ``jobs`` (``scorer batch``:
files scored through the service, never the server), and ``cli``. A module may import its own layer and the ones below, never one above;
no module imports the conformance suite or a plugin; and there are no import cycles,
``TYPE_CHECKING`` and function-level imports included. The service and the file jobs import no
web framework, checked in a fresh interpreter; the wire opens no file.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

import scorer_core

CORE = Path(scorer_core.__file__).parent
LAYERS = ["api", "config", "wire", "execution", "service", "tables", "monitor", "server", "jobs", "cli"]
#: Layers that sit beside one above them, not on it: file jobs score through the service alone.
BESIDE = {"jobs": {"server"}}
#: What the top of the package holds: the plugin API, and nothing else but the CLI.
API_MODULES = {
    "__init__",
    "configured",
    "context",
    "contributions",
    "demo",
    "envsettings",
    "errors",
    "frame",
    "headers",
    "hookspecs",
    "runtime",
    "schema",
}
#: The suite, the tests, every installed plugin's package, and any ``scorer_*`` plugin package.
FORBIDDEN_ROOTS = {"conformance", "tests"} | {
    ep.value.split(".")[0].split(":")[0] for ep in importlib.metadata.entry_points(group="scorer_core.plugins")
}


def forbidden(root: str) -> bool:
    return root in FORBIDDEN_ROOTS or (root.startswith("scorer_") and root != "scorer_core")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if parts[1] in LAYERS:
        return parts[1]
    if parts[1] == "cli":
        return "cli"
    return "api"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to full names; ``from a import b`` counts ``a.b``
    too when ``a.b`` is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if candidate in ALL_MODULES:
                    found.add(candidate)
    return found


SOURCES = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}
ALL_MODULES = set(SOURCES)
GRAPH = {name: {i for i in imports_of(path) if i in ALL_MODULES and i != name} for name, path in SOURCES.items()}


def test_the_layers_are_what_the_docs_say():
    top_level = {p.stem for p in CORE.glob("*.py")}
    assert top_level - {"cli"} == API_MODULES, "a new top-level module is plugin API: list it, or move it"
    assert {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS[1:-1])
    docs = (CORE.parent / "docs" / "architecture.md").read_text()
    for layer in LAYERS[1:-1]:
        assert f"scorer_core/{layer}/" in docs, f"docs/architecture.md does not show the {layer} layer"
    assert "scorer_core/cli.py" in docs


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_module_imports_a_layer_above_its_own(module):
    own = LAYERS.index(layer_of(module))
    above = sorted(i for i in GRAPH[module] if LAYERS.index(layer_of(i)) > own)
    assert not above, f"{module} ({layer_of(module)}) imports {above} from a higher layer"


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if layer_of(m) in BESIDE))
def test_file_jobs_import_the_service_never_the_server(module):
    barred = sorted(i for i in GRAPH[module] if layer_of(i) in BESIDE[layer_of(module)])
    assert not barred, f"{module} ({layer_of(module)}) imports {barred}"


WEB_FRAMEWORKS = ["starlette", "fastapi", "uvicorn"]


def test_the_service_and_the_file_jobs_import_no_web_framework():
    # A Spark executor imports jobs.job; a second protocol's front imports the service. Neither
    # may pay for (or depend on) the HTTP stack.
    service = sorted(m for m in SOURCES if layer_of(m) == "service")
    jobs = ["scorer_core.jobs.job", "scorer_core.jobs.spark"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {[*service, *jobs]!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {WEB_FRAMEWORKS!r} if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "scorer_core.service.plane" in service
    assert json.loads(result.stdout) == []


#: What opens a file or reads a descriptor: ``tables``' work, never the wire's.
FILE_MODULES = {"pathlib", "io", "os", "shutil", "tempfile", "pyarrow.csv", "pyarrow.parquet", "pyarrow.json"}


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if layer_of(m) == "wire"))
def test_the_wire_opens_no_files(module):
    # docs/architecture.md calls the wire pure functions of bytes; files are read in tables/.
    tree = ast.parse(SOURCES[module].read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    opens = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"
    ]
    assert not imported & FILE_MODULES, f"{module} imports {sorted(imported & FILE_MODULES)}"
    assert not opens, f"{module} calls open() on lines {opens}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_the_core_imports_neither_the_conformance_suite_nor_a_plugin(module):
    roots = sorted(r for r in {i.split(".")[0] for i in imports_of(SOURCES[module])} if forbidden(r))
    assert not roots, f"{module} imports {roots}"


def test_there_are_no_import_cycles():
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def test_the_checker_sees_type_checking_and_function_level_imports():
    # If the reader missed these, the rules above could pass on code that breaks them.
    assert "scorer_core.runtime" in GRAPH["scorer_core.hookspecs"]  # under TYPE_CHECKING
    assert "scorer_core.execution.workers.pool" in GRAPH["scorer_core.execution.executors"]  # in a function
    assert "scorer_core.server.served" in GRAPH["scorer_core.cli"]  # in a function


def test_every_public_name_of_the_plugin_api_is_exported_from_the_package():
    exported = set(scorer_core.__all__)
    for module in sorted(API_MODULES - {"__init__", "hookspecs"}):
        names = getattr(__import__(f"scorer_core.{module}", fromlist=["__all__"]), "__all__", None)
        assert names, f"scorer_core.{module} declares no __all__"
        missing = sorted(set(names) - exported)
        assert not missing, f"scorer_core.{module} has public names scorer_core does not export: {missing}"
    # hookspecs: plugins import the marker; the hooks are documented in docs/plugin_hooks.md.
    assert "hookimpl" in exported
