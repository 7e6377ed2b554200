"""``daimojo.model`` as installed (2.9.2), over a pipeline's protobuf instead of ``cppmojo``.

Copied from the real package, attribute by attribute:

- ``model(filename)``: ``FileNotFoundError(filename)`` when it is not a file; the C++ constructor
  raises ``RuntimeError("Unable to create a mojo model")`` for an unreadable pipeline; an invalid
  licence prints and raises ``RuntimeError("Driverless AI license error!")``. The licence is read,
  as ``cppmojo`` reads it, from ``DRIVERLESS_AI_LICENSE_KEY`` (the key) or
  ``DRIVERLESS_AI_LICENSE_FILE`` (a file holding it); here it must equal the double's ``licence``.
- attributes ``uuid``, ``mojo_version``, ``created_time``, ``missing_values``, ``feature_names``,
  ``feature_types`` and ``output_types`` (``bool``, ``int32``, ``int64``, ``float32``, ``float64``,
  ``string``), ``output_names``, ``has_treeshap``, ``dai_version``, ``transformed_names``, and
  ``supported_ops``, the namedtuple ``SupportedOps(prediction, interval, pred_contribs,
  pred_contribs_original)``.
- ``predict(pydt, pred_contribs=False, pred_contribs_original=False, interval=False, debug=False)``:
  a ``datatable.Frame`` in (else ``RuntimeError("datatable.Frame expected!")``); ``pred_contribs``
  on a pipeline from before DAI 1.9 raises the package's own message; missing columns refused
  with ``Column(s) missing: name(type); ``; columns cast by feature type; a ``datatable.Frame``
  out, named by the pipeline.

Read from the pipeline's protobuf (``mojo/pipeline.pb``, parsed with the wheel's ``Pipeline_pb2``,
the file DAI exports): the uuid, DAI version, creation time, missing values, features and outputs
with their types, transformed feature names, the map from transformed to original contribution
names (``orig_matrix``), the target and its labels, and whether the problem has prediction
intervals (``regression_problem_detail.prediction_interval``). ``supported_ops`` is computed by the
real C++ runtime; here: intervals when the protobuf declares them, contributions when the double's
``treeshap`` says the model is trees, original ones when ``orig_matrix`` maps them.

Not taken from the package, because only a licensed pipeline shows them (see the plugin README):
``schema()``'s return value (the double raises unless its ``schema`` option names a form), the
``.lower`` / ``.upper`` interval columns after the prediction, and that contributions and
intervals cannot be asked for in one call (a string in the C++ library says so).

The model (``mojo/double.json``): each transformed column contributes ``weight * value`` (a
numeric column), ``weight`` when a string column holds its ``level`` (else nothing), or
``weight * year`` for a date (``YYYY-MM-DD`` strings, as DAI pipelines receive dates; one that does
not parse is missing). ``margin = bias + sum``. Regression predicts the margin; binomial the
logistic of it; multiclass a softmax over ``scale[k] * margin + shift[k]``. Contributions add up
to each margin exactly; original ones sum the transformed ones that ``orig_matrix`` maps to them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile
from collections import namedtuple
from pathlib import Path

import datatable
from google.protobuf.message import DecodeError

from daimojo import Pipeline_pb2

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
#: The protobuf's column type (``Column.Type`` oneof) and daimojo's type name for it.
_TYPE_NAMES = {
    "bool_type": "bool",
    "int32_type": "int32",
    "int64_type": "int64",
    "float32_type": "float32",
    "float64_type": "float64",
    "str_type": "string",
}
_PRED_CONTRIBS_VERSION = "'pred_contribs' is only support with mojo file generated from DAI 1.9.0 or later."


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


def _read(filename):
    try:
        with zipfile.ZipFile(filename) as archive:
            pipeline = Pipeline_pb2.Pipeline()
            pipeline.ParseFromString(archive.read("mojo/pipeline.pb"))
            spec = json.loads(archive.read("mojo/double.json"))
    except (OSError, KeyError, zipfile.BadZipFile, DecodeError, ValueError):
        raise RuntimeError("Unable to create a mojo model") from None
    return pipeline, spec


class model:
    def __init__(self, filename):
        if not os.path.isfile(filename):
            raise FileNotFoundError(filename)
        self.modelfile = os.path.abspath(filename)
        pipeline, spec = _read(filename)
        if _licence() != spec["licence"]:
            _fail("Driverless AI license error!")
        self._spec = spec
        self.uuid = pipeline.uuid
        self.mojo_version = pipeline.mojo_version
        self.created_time = time.ctime(pipeline.time_created.seconds)
        self.missing_values = list(pipeline.missing_values)
        self.feature_names = [c.name for c in pipeline.features.columns]
        self.feature_types = [_TYPE_NAMES[c.WhichOneof("Type")] for c in pipeline.features.columns]
        self.output_names = [c.name for c in pipeline.outputs.columns]
        self.output_types = [_TYPE_NAMES[c.WhichOneof("Type")] for c in pipeline.outputs.columns]
        self.has_treeshap = bool(spec.get("treeshap"))
        self.dai_version = pipeline.dai_version
        self.transformed_names = [c.name for c in pipeline.transformed.columns]
        detail = pipeline.problem.supervised_detail
        self._target = detail.target.name
        self._labels = list(detail.target.labels)
        self._multinomial = detail.HasField("multinomial_problem_detail")
        self._binomial = detail.HasField("binomial_problem_detail")
        interval = detail.HasField("regression_problem_detail") and detail.regression_problem_detail.HasField(
            "prediction_interval"
        )
        # contrib_<transformed> -> contrib_<original>, in the protobuf's order.
        self._original_of = {row.raw_feature_name: row.row[0].orig_feature_name for row in pipeline.orig_matrix}
        self.supported_ops = SupportedOps(
            True, interval, self.has_treeshap, self.has_treeshap and bool(self._original_of)
        )
        if len(spec["transformed"]) != len(self.transformed_names):
            raise RuntimeError("Unable to create a mojo model")

    def schema(self, pred_contribs=False, pred_contribs_original=False, interval=False):
        form = self._spec.get("schema")
        if form != "names_and_types":
            raise RuntimeError("the double does not model cppmojo's schema() for this pipeline")
        names = self._names(pred_contribs, pred_contribs_original, interval)
        return names, ["float64"] * len(names)

    def predict(self, pydt, pred_contribs=False, pred_contribs_original=False, interval=False, debug=False):
        if not isinstance(pydt, datatable.Frame):
            _fail("datatable.Frame expected!")
        if pred_contribs:
            parts = self.dai_version.split(".")
            if self.dai_version == "" or int(parts[0]) < 1 or (int(parts[0]) == 1 and int(parts[1]) < 9):
                _fail(_PRED_CONTRIBS_VERSION)
        missing_cols = [c for c in self.feature_names if c not in pydt.names]
        if missing_cols:
            _fail(
                "Column(s) missing: "
                + "".join(f"{c}({self.feature_types[self.feature_names.index(c)]}); " for c in missing_cols)
            )
        pydt = pydt[:, self.feature_names]
        for i, kind in enumerate(self.feature_types):
            if kind not in _CASTS:
                _fail("unknown feature type: " + kind)
            pydt[:, i] = _CASTS[kind](datatable.f[i])
        columns = dict(zip(self.feature_names, pydt.to_list(), strict=True))
        nrow = pydt.nrows
        if pred_contribs and interval:
            _fail("Interval prediction can't be used alongside contribution prediction")
        transformed = self._transformed_shares(columns, nrow)
        bias = float(self._spec["bias"])
        margins = [bias + sum(row) for row in zip(*transformed, strict=True)] if transformed else [bias] * nrow
        names = self._names(pred_contribs, pred_contribs_original, interval)
        if pred_contribs:
            if not self.supported_ops.pred_contribs or (
                pred_contribs_original and not self.supported_ops.pred_contribs_original
            ):
                _fail("Shapley contributions are not supported by this pipeline")
            shares = self._original_shares(transformed, nrow) if pred_contribs_original else transformed
            values = self._per_class([*shares, [bias] * nrow])
        else:
            values = self._outputs(margins, interval)
        return datatable.Frame(
            dict(zip(names, values, strict=True)), stypes={n: datatable.float64 for n in names}
        )

    # --- what cppmojo would compute ---------------------------------------------------------

    def _classes(self):
        return self._labels if self._multinomial else []

    def _names(self, pred_contribs, pred_contribs_original, interval):
        if pred_contribs:
            if pred_contribs_original:
                base = list(dict.fromkeys(self._original_of[f"contrib_{t}"] for t in self.transformed_names))
            else:
                base = [f"contrib_{t}" for t in self.transformed_names]
            base.append("contrib_bias")
            classes = self._classes()
            return [f"{n}.{c}" for c in classes for n in base] if classes else base
        names = list(self.output_names)
        if interval:
            if not self.supported_ops.interval:
                _fail("prediction intervals are not supported by this pipeline")
            names += [f"{self._target}.lower", f"{self._target}.upper"]
        return names

    def _transformed_shares(self, columns, nrow):
        shares = []
        for column in self._spec["transformed"]:
            values = columns[column["feature"]]
            weight = float(column["weight"])
            if "level" in column:
                shares.append([weight if v == column["level"] else 0.0 for v in values])
            elif column.get("date"):
                # An unparsable date is missing, as in a DAI pipeline's date transformers.
                shares.append([weight * int(v[:4]) if v and v[:4].isdigit() else 0.0 for v in values])
            else:
                shares.append([weight * float(v) if v is not None else 0.0 for v in values])
        return shares

    def _original_shares(self, transformed, nrow):
        totals = {}
        for name, share in zip(self.transformed_names, transformed, strict=True):
            original = self._original_of[f"contrib_{name}"]
            running = totals.setdefault(original, [0.0] * nrow)
            totals[original] = [a + b for a, b in zip(running, share, strict=True)]
        return list(totals.values())

    def _per_class(self, columns):
        classes = self._classes()
        if not classes:
            return columns
        out = []
        for k in range(len(classes)):
            scale, shift = self._spec["class_scale"][k], self._spec["class_shift"][k]
            last = len(columns) - 1
            out += [[scale * v + (shift if i == last else 0.0) for v in col] for i, col in enumerate(columns)]
        return out

    def _outputs(self, margins, interval):
        if self._binomial:
            p1 = [1 / (1 + math.exp(-m)) for m in margins]
            return [[1 - p for p in p1], p1]
        if self._multinomial:
            scaled = [
                [s * m + b for s, b in zip(self._spec["class_scale"], self._spec["class_shift"], strict=True)]
                for m in margins
            ]
            totals = [sum(math.exp(v) for v in row) for row in scaled]
            return [
                [math.exp(row[k]) / t for row, t in zip(scaled, totals, strict=True)]
                for k in range(len(self._labels))
            ]
        values = [margins]
        if interval:
            width = float(self._spec.get("interval_width", 1.0))
            values += [[m - width for m in margins], [m + width for m in margins]]
        return values
