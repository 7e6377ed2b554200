"""Turning a batch of request rows into the one tensor an HT-style model takes.

Each model's spec names its encoder: ``text`` (whitespace tokens looked up in a vocabulary,
padded to ``max_length``), ``image`` (base64 of raw uint8 pixels in ``shape`` C x H x W, scaled to
[0, 1]) or ``tabular`` (float columns). Encoding happens on the CPU, for the whole batch at once,
so that the batch crosses to the device once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np

from scorer_core import InvalidRequest

__all__ = ["Encoder", "make_encoder"]

PAD, UNKNOWN = 0, 1


class Encoder:
    """Column names the encoder reads, and ``encode(frame) -> torch.Tensor`` for the batch."""

    columns: list[str]

    def __init__(self, spec: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def encode(self, frame: Any) -> Any:
        raise NotImplementedError

    def example(self) -> Any:
        """A one-row input of the right shape and dtype (for tracing and ONNX export)."""
        raise NotImplementedError

    def sample_cells(self) -> dict[str, str]:
        """A valid request cell per column, for ``/model/sample_request``."""
        return {column: "0" for column in self.columns}


class TextEncoder(Encoder):
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.columns = [spec.get("column", "text")]
        self.vocab: dict[str, int] = dict(spec["vocab"])
        self.max_length = int(spec.get("max_length", 32))
        self.lowercase = bool(spec.get("lowercase", True))

    def encode(self, frame: Any) -> Any:
        import torch

        ids = np.full((len(frame), self.max_length), PAD, dtype=np.int64)
        for row, cell in enumerate(frame[self.columns[0]].tolist()):
            text = cell if isinstance(cell, str) else ""  # a missing cell arrives as None or NaN
            tokens = text.lower().split() if self.lowercase else text.split()
            row_ids = [self.vocab.get(t, UNKNOWN) for t in tokens[: self.max_length]]
            ids[row, : len(row_ids)] = row_ids
        return torch.from_numpy(ids)

    def example(self) -> Any:
        import torch

        return torch.zeros((1, self.max_length), dtype=torch.int64)

    def sample_cells(self) -> dict[str, str]:
        return {self.columns[0]: " ".join(list(self.vocab)[:3]) or "text"}


class ImageEncoder(Encoder):
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.columns = [spec.get("column", "image")]
        self.shape = tuple(int(d) for d in spec["shape"])

    def encode(self, frame: Any) -> Any:
        import torch

        size = int(np.prod(self.shape))
        pixels = np.empty((len(frame), size), dtype=np.uint8)
        for row, cell in enumerate(frame[self.columns[0]].tolist()):
            if not isinstance(cell, str):
                raise InvalidRequest(f"Row {row}, field '{self.columns[0]}': the image is missing")
            try:
                raw = base64.b64decode(cell, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest(
                    f"Row {row}, field '{self.columns[0]}': the image is not valid base64"
                ) from None
            if len(raw) != size:
                raise InvalidRequest(
                    f"Row {row}, field '{self.columns[0]}': the image has {len(raw)} bytes, expected {size} "
                    f"(uint8 pixels of shape {self.shape})"
                )
            pixels[row] = np.frombuffer(raw, dtype=np.uint8)
        return torch.from_numpy(pixels.reshape(len(frame), *self.shape).astype(np.float32) / 255.0)

    def example(self) -> Any:
        import torch

        return torch.zeros((1, *self.shape), dtype=torch.float32)

    def sample_cells(self) -> dict[str, str]:
        blank = bytes(int(np.prod(self.shape)))
        return {self.columns[0]: base64.b64encode(blank).decode()}


class TabularEncoder(Encoder):
    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.columns = list(spec["columns"])

    def encode(self, frame: Any) -> Any:
        import torch

        values = frame[self.columns].to_numpy(dtype=np.float32, na_value=np.nan)
        return torch.from_numpy(np.nan_to_num(values, nan=0.0))

    def example(self) -> Any:
        import torch

        return torch.zeros((1, len(self.columns)), dtype=torch.float32)


_ENCODERS: dict[str, type[Encoder]] = {"text": TextEncoder, "image": ImageEncoder, "tabular": TabularEncoder}


def make_encoder(spec: Mapping[str, Any]) -> Encoder:
    kind = spec.get("kind")
    if kind not in _ENCODERS:
        raise ValueError(f"unknown input encoder '{kind}'; expected one of {', '.join(_ENCODERS)}")
    return _ENCODERS[kind](spec)
