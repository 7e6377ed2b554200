"""``daimojo.model`` as installed (2.9.2), over a JSON pipeline spec instead of ``cppmojo``.

Copied from the real package, attribute by attribute:

- ``model(filename)``: ``FileNotFoundError(filename)`` when it is not a file; the C++ constructor
  raises ``RuntimeError("Unable to create a mojo model")`` for an unreadable pipeline; an invalid
  licence prints and raises ``RuntimeError("Driverless AI license error!")``. The licence is read,
  as ``cppmojo`` reads it, from ``DRIVERLESS_AI_LICENSE_KEY`` (the key) or
  ``DRIVERLESS_AI_LICENSE_FILE`` (a file holding it); here it must equal the spec's ``licence``.
- attributes ``uuid``, ``mojo_version``, ``created_time``, ``missing_values``, ``feature_names``,
  ``feature_types`` and ``output_types`` (``bool``, ``int32``, ``int64``, ``float32``, ``float64``,
  ``string``), ``output_names``, ``has_treeshap``, ``dai_version``, ``transformed_names``, and
  ``supported_ops``, the namedtuple ``SupportedOps(prediction, interval, pred_contribs,
  pred_contribs_original)``.
- ``predict(pydt, pred_contribs=False, pred_contribs_original=False, interval=False, debug=False)``:
  a ``datatable.Frame`` in (else ``RuntimeError("datatable.Frame expected!")``), missing columns
  refused with ``Column(s) missing: name(type); ``, columns cast by feature type, a
  ``datatable.Frame`` out. Contributions need ``pred_contribs=True``; ``pred_contribs_original=True``
  with it asks for them per original column; the frame's names come from the pipeline
  (``pred_contrib_names``).

Not taken from the package, because only a real pipeline shows them (see the plugin README):
the contribution column names (``contrib_<feature>``, ``contrib_bias``, and ``.<class>`` appended
for multiclass models), interval columns ``<target>.lower`` and ``<target>.upper`` after the
prediction, and classifier outputs ``<target>.<class>``.

The pipeline: ``margin = bias + sum(weight * value)`` over numeric features, plus a per-level
weight for string features (an unknown level or a missing value adds nothing), plus
``weight * year`` for date features (``YYYY-MM-DD`` strings, as DAI pipelines receive dates; one
that does not parse is missing).
Regression predicts the margin; binomial the logistic of it; multiclass a softmax over
``scale[k] * margin + shift[k]``. Contributions add up to each margin exactly.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import namedtuple
from pathlib import Path

import datatable

SupportedOps = namedtuple(
    "SupportedOps", ["prediction", "interval", "pred_contribs", "pred_contribs_original"]
)
_CASTS = {
    "bool": datatable.bool8,
    "int32": datatable.int32,
    "int64": datatable.int64,
    "float32": datatable.float32,
    "float64": datatable.float64,
    "string": datatable.str32,
}


def _fail(msg):
    print(msg, file=sys.stderr)
    sys.stderr.flush()
    raise RuntimeError(msg)


def _licence():
    key = os.environ.get("DRIVERLESS_AI_LICENSE_KEY")
    if key:
        return key.strip()
    path = os.environ.get("DRIVERLESS_AI_LICENSE_FILE")
    if path and os.path.isfile(path):
        return Path(path).read_text().strip()
    return None


class model:
    def __init__(self, filename):
        if not os.path.isfile(filename):
            raise FileNotFoundError(filename)
        self.modelfile = os.path.abspath(filename)
        try:
            spec = json.loads(Path(filename).read_text())
        except (UnicodeDecodeError, ValueError):
            raise RuntimeError("Unable to create a mojo model") from None
        if _licence() != spec["licence"]:
            _fail("Driverless AI license error!")
        self._spec = spec
        self._features = spec["features"]
        self.uuid = spec["uuid"]
        self.mojo_version = 2
        self.created_time = time.ctime(0)
        self.missing_values = spec.get(
            "missing_values", ["", "?", "None", "nan", "NA", "N/A", "unknown", "inf", "-inf"]
        )
        self.feature_names = [f["name"] for f in self._features]
        self.feature_types = [f["type"] for f in self._features]
        target, classes = spec["target"], spec.get("classes")
        self.output_names = [f"{target}.{c}" for c in classes] if classes else [target]
        self.output_types = ["float64"] * len(self.output_names)
        ops = spec.get("ops", {})
        self.has_treeshap = bool(ops.get("pred_contribs"))
        self.dai_version = spec.get("dai_version", "1.11.1")
        self.transformed_names = self._transformed()
        self.supported_ops = SupportedOps(
            True,
            bool(ops.get("interval")),
            bool(ops.get("pred_contribs")),
            bool(ops.get("pred_contribs_original")),
        )

    def _transformed(self):
        names = []
        for i, f in enumerate(self._features):
            if "levels" in f:
                names += [f"{i}_OneHot_{f['name']}_{level}" for level in f["levels"]]
            else:
                names.append(f"{i}_{f['name']}")
        return names

    def schema(self, pred_contribs=False, pred_contribs_original=False, interval=False):
        raise NotImplementedError("the double does not model cppmojo's schema()")

    def predict(self, pydt, pred_contribs=False, pred_contribs_original=False, interval=False, debug=False):
        if not isinstance(pydt, datatable.Frame):
            _fail("datatable.Frame expected!")
        missing_cols = [c for c in self.feature_names if c not in pydt.names]
        if missing_cols:
            _fail(
                "Column(s) missing: "
                + "".join(f"{c}({self.feature_types[self.feature_names.index(c)]}); " for c in missing_cols)
            )
        pydt = pydt[:, self.feature_names]
        for i, kind in enumerate(self.feature_types):
            pydt[:, i] = _CASTS[kind](datatable.f[i])
        columns = pydt.to_list()
        nrow = pydt.nrows
        original, transformed = self._explain(columns, nrow)
        bias = float(self._spec["bias"])
        margins = [bias + sum(parts) for parts in zip(*original, strict=True)] if original else [bias] * nrow
        if pred_contribs:
            if pred_contribs_original and not self.supported_ops.pred_contribs_original:
                _fail("original Shapley contributions are not supported by this pipeline")
            if not pred_contribs_original and not self.supported_ops.pred_contribs:
                _fail("Shapley contributions are not supported by this pipeline")
            parts = original if pred_contribs_original else transformed
            names = [
                f"contrib_{n}"
                for n in (self.feature_names if pred_contribs_original else self.transformed_names)
            ]
            return self._per_class([*names, "contrib_bias"], [*parts, [bias] * nrow])
        classes = self._spec.get("classes")
        if classes and len(classes) == 2:
            p1 = [1 / (1 + math.exp(-m)) for m in margins]
            out = {self.output_names[0]: [1 - p for p in p1], self.output_names[1]: p1}
        elif classes:
            scaled = [self._class_margins(m) for m in margins]
            totals = [sum(math.exp(v) for v in row) for row in scaled]
            out = {
                name: [math.exp(row[k]) / t for row, t in zip(scaled, totals, strict=True)]
                for k, name in enumerate(self.output_names)
            }
        else:
            out = {self.output_names[0]: margins}
            if interval:
                if not self.supported_ops.interval:
                    _fail("prediction intervals are not supported by this pipeline")
                width = float(self._spec.get("interval_width", 1.0))
                out[f"{self._spec['target']}.lower"] = [m - width for m in margins]
                out[f"{self._spec['target']}.upper"] = [m + width for m in margins]
        return datatable.Frame(out, stypes={n: datatable.float64 for n in out})

    def _class_margins(self, margin):
        return [
            s * margin + b for s, b in zip(self._spec["class_scale"], self._spec["class_shift"], strict=True)
        ]

    def _per_class(self, names, columns):
        classes = self._spec.get("classes")
        if not classes or len(classes) == 2:
            return datatable.Frame(
                dict(zip(names, columns, strict=True)), stypes={n: datatable.float64 for n in names}
            )
        out = {}
        for k, label in enumerate(classes):
            scale, shift = self._spec["class_scale"][k], self._spec["class_shift"][k]
            for name, column in zip(names, columns, strict=True):
                extra = shift if name == "contrib_bias" else 0.0
                out[f"{name}.{label}"] = [scale * v + extra for v in column]
        return datatable.Frame(out, stypes={n: datatable.float64 for n in out})

    def _explain(self, columns, nrow):
        """Per original feature and per transformed feature: each row's share of the margin."""
        original, transformed = [], []
        for feature, values in zip(self._features, columns, strict=True):
            if "levels" in feature:
                levels = feature["levels"]
                original.append([float(levels.get(v, 0.0)) if v is not None else 0.0 for v in values])
                for level, weight in levels.items():
                    transformed.append([float(weight) if v == level else 0.0 for v in values])
            elif feature.get("date"):
                # An unparsable date is missing, as in a DAI pipeline's date transformers.
                shares = [feature["weight"] * int(v[:4]) if v and v[:4].isdigit() else 0.0 for v in values]
                original.append(shares)
                transformed.append(shares)
            else:
                shares = [feature["weight"] * float(v) if v is not None else 0.0 for v in values]
                original.append(shares)
                transformed.append(shares)
        return original, transformed
