"""A pyfunc model answering with the migration guide's legacy blobs, to check the split end to end."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc


class SeedBlobModel(mlflow.pyfunc.PythonModel):
    """For N input rows, returns the guide's legacy (runtime 1.7.x) blob for N rows, as one row."""

    def load_context(self, context):
        vectors = json.loads(Path(context.artifacts["vectors"]).read_text())
        self.blobs = {}
        for vector in vectors:
            blob = vector["legacy"]["rows"][0][0]
            self.blobs.setdefault(len(vector["runtime_2_0"]["rows"]), blob)

    def predict(self, context, model_input, params=None):
        return [self.blobs[len(model_input)]]
