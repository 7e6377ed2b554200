"""The pyfunc model inside an HT-style MLflow model: a torch network behind an MLflow ``predict``.

``TorchPyfuncModel`` loads the network once (TorchScript, or a pickled ``nn.Module`` whose class
ships with the model), keeps it on the configured device (see ``device.py``), encodes each batch on
the CPU, moves it to the device once, and runs it under ``torch.inference_mode()``. It answers as
HT models do: ``legacy_blob`` returns one JSON blob for the whole batch (every released HT model),
``per_row`` one JSON string per row. Subclass it to add model code, for example reading forwarded
headers through ``h2o_scorer_core.context.request_headers``.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from scorer_hydrogen_torch.device import select_backend, select_device
from scorer_hydrogen_torch.encoders import make_encoder

__all__ = ["TorchPyfuncModel"]


class TorchPyfuncModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """An HT-style model: artifacts ``model`` (the network) and ``spec`` (task, labels, encoder)."""

    def load_context(self, context: Any) -> None:
        import torch

        self.spec: dict[str, Any] = json.loads(Path(context.artifacts["spec"]).read_text())
        self.device = select_device()
        self.backend = select_backend()
        self.encoder = make_encoder(self.spec["encoder"])
        path = context.artifacts["model"]
        if self.spec["format"] == "torchscript":
            # Released HT models are TorchScript; torch 2.13 deprecates the format but loads it.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", DeprecationWarning)
                network = torch.jit.load(path, map_location=self.device)  # type: ignore[no-untyped-call]
        else:
            network = torch.load(path, map_location=self.device, weights_only=False)
        self.network = network.eval()
        self._onnx: Any = None
        if self.backend == "onnx":
            self._onnx = self._export_onnx()

    def _export_onnx(self) -> Any:
        import onnxruntime
        import torch

        example = self.encoder.example().to(self.device)
        exported = Path(tempfile.mkdtemp(prefix="scorer-ht-onnx-")) / "model.onnx"
        # The TorchScript-based exporter is the one that takes TorchScript networks (torch.export
        # does not), and released HT models are TorchScript; torch deprecates it without removing it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it also warns, harmlessly, about TorchScript signatures
            torch.onnx.export(
                self.network,
                (example,),
                str(exported),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "rows"}, "output": {0: "rows"}},
                dynamo=False,
            )
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        return onnxruntime.InferenceSession(str(exported), providers=providers)

    def forward(self, model_input: Any) -> np.ndarray:
        """The network's raw output for a pandas batch, as a float array on the CPU."""
        import torch

        batch = self.encoder.encode(model_input)
        if self._onnx is not None:
            result: np.ndarray = np.asarray(
                self._onnx.run(None, {"input": batch.numpy()})[0], dtype=np.float64
            )
            return result
        with torch.inference_mode():
            output = self.network(batch.to(self.device, non_blocking=True))
        values: np.ndarray = output.float().cpu().numpy().astype(np.float64)
        return values

    def predictions(self, raw: np.ndarray) -> list[Any]:
        """Per-row predictions: class probabilities for classifiers, values for regression."""
        if self.spec["task"].endswith("classification"):
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            raw = shifted / shifted.sum(axis=1, keepdims=True)
        return [[float(v) for v in row] for row in raw.reshape(len(raw), -1)]

    def model_level(self) -> dict[str, Any]:
        """Keys describing the model, the same for every row (``labels``)."""
        labels = self.spec.get("labels")
        return {"labels": list(labels)} if labels else {}

    # Unannotated on purpose: MLflow turns type hints on predict into its own input conversion.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        rows = self.predictions(self.forward(model_input))
        extra = self.model_level()
        if self.spec.get("output_format", "legacy_blob") == "per_row":
            return [json.dumps({"predictions": row, **extra}) for row in rows]
        return [json.dumps({"predictions": rows, **extra})]
