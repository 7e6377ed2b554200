"""Pyfunc models saved by plain MLflow, as Hydrogen Torch releases them: no scorer metadata."""

from __future__ import annotations

import json

import mlflow.pyfunc


class PerRowModel(mlflow.pyfunc.PythonModel):
    """A newer HT model: one JSON string per input row already."""

    def predict(self, context, model_input, params=None):
        return [json.dumps({"predictions": [len(text), 0.5], "labels": ["a", "b"]}) for text in model_input["text"]]


class ShortBlobModel(mlflow.pyfunc.PythonModel):
    """A broken legacy model: its blob always holds two predictions, whatever the row count."""

    def predict(self, context, model_input, params=None):
        return [json.dumps({"predictions": [[0.1, 0.9], [0.2, 0.8]], "labels": ["a", "b"]})]


class TokenBlobModel(mlflow.pyfunc.PythonModel):
    """A legacy token-classification blob: ``predictions`` and ``offsets`` are both per row."""

    def predict(self, context, model_input, params=None):
        n = len(model_input)
        return [
            json.dumps(
                {
                    "predictions": [[f"tag{i}"] for i in range(n)],
                    "offsets": [[[0, i + 1]] for i in range(n)],
                    "labels": ["tag0", "tag1", "tag2"],
                }
            )
        ]
