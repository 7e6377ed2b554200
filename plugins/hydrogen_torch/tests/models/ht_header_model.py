"""An HT model whose code reads a forwarded header exactly as the migration guide's 2.0 example does."""

from __future__ import annotations

import json

from scorer_hydrogen_torch.torch_model import TorchPyfuncModel

from h2o_scorer_core.context import request_headers


class HeaderAwareTextModel(TorchPyfuncModel):
    """Adds the caller's Authorization header to the blob's model-level keys (so, to every row)."""

    def predict(self, context, model_input, params=None):
        headers = request_headers.get({})  # dict[str, str]
        token = headers.get("Authorization", "")
        rows = self.predictions(self.forward(model_input))
        return [json.dumps({"predictions": rows, **self.model_level(), "caller": token})]
