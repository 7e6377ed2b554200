"""Docs cannot go stale: every hook is documented and tested; the hello-world plugin is the real file."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from scorer_core import hookspecs

ROOT = Path(__file__).parent.parent
HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("scorer_"))


def test_every_hook_is_documented_with_its_signature():
    text = (ROOT / "docs" / "plugin_hooks.md").read_text()
    for name in HOOKS:
        signature = str(inspect.signature(getattr(hookspecs, name)))
        assert f"## `{name}{signature}`" in text, (
            f"docs/plugin_hooks.md lacks a heading for {name}{signature}"
        )


def test_every_hook_has_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for name in HOOKS:
        assert re.search(rf"def test_hook_{name}\b", tests), f"no test_hook_{name}"


def test_writing_plugins_includes_the_echo_plugin_verbatim():
    guide = (ROOT / "docs" / "writing_plugins.md").read_text()
    readme = (ROOT / "README.md").read_text()
    plugin = (ROOT / "tests" / "plugins" / "echo_plugin.py").read_text()
    assert plugin.strip() in guide, (
        "docs/writing_plugins.md must include tests/plugins/echo_plugin.py verbatim"
    )
    assert plugin.strip() in readme, "README.md must include tests/plugins/echo_plugin.py verbatim"
    assert len(plugin.strip().splitlines()) <= 30
