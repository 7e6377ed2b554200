"""KServe's custom resources checked offline against KServe's own API types: the ``kserve`` SDK's
models (generated from KServe's OpenAPI description of its CRDs) and the Kubernetes client's they
refer to. KServe's CRD schemas themselves are not on the package index; these are the closest
description that is. Run in KServe's venv (``tests/kserve_client.py``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.kserve_client import ensure_kserve

#: argv[1]: a JSON list of [class name, document]. Prints one problem per line; nothing when all
#: documents fit their types. A key the type does not define, or a value of the wrong kind, is a
#: problem (KServe's API server would drop or refuse it).
CHECKER = r"""
import json, re, sys
import kserve.models as kmodels
import kubernetes.client.models as k8s

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
problems = []

def model(name):
    return getattr(kmodels, name, None) or getattr(k8s, name)

def check(value, kind, where):
    if kind in PRIMITIVES:
        if kind == "int" and isinstance(value, bool) or not isinstance(value, PRIMITIVES[kind]):
            problems.append(f"{where}: {value!r} is not {kind}")
        return
    listed = re.fullmatch(r"[lL]ist\[(.+)\]", kind)  # the Kubernetes client spells it List[...]
    if listed:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list")
            return
        for i, item in enumerate(value):
            check(item, listed.group(1), f"{where}[{i}]")
        return
    mapping = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", kind)
    if mapping:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping")
            return
        for key, item in value.items():
            check(item, mapping.group(1) or mapping.group(2), f"{where}.{key}")
        return
    cls = model(kind)
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a {kind} object")
        return
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in by_key:
            problems.append(f"{where}: {kind} has no field {key!r}")
        else:
            check(item, cls.openapi_types[by_key[key]], f"{where}.{key}")

for kind, document in json.loads(open(sys.argv[1]).read()):
    check(document, kind, document.get("metadata", {}).get("name", kind))
print("\n".join(problems))
"""


def problems_of(documents: list[tuple[str, dict[str, Any]]], work: Path) -> list[str]:
    """What KServe's API types say is wrong with each ``(class name, document)``."""
    source = work / "kserve-documents.json"
    source.write_text(json.dumps(documents))
    run = subprocess.run(
        [str(ensure_kserve()), "-c", CHECKER, str(source)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return [line for line in run.stdout.splitlines() if line.strip()]
