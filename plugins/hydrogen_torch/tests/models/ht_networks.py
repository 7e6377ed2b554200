"""Small real torch networks for the tests and the benchmark; weights from fixed seeds, no downloads."""

from __future__ import annotations

import torch
from torch import nn

VOCAB = {
    word: i + 2
    for i, word in enumerate(
        ["good", "great", "fine", "bad", "awful", "poor", "okay", "movie", "plot", "actor", "the", "a"]
    )
}
TEXT_LABELS = ["neg", "neu", "pos"]
IMAGE_SHAPE = (3, 8, 8)
IMAGE_LABELS = ["cat", "dog"]
TABULAR_COLUMNS = ["f0", "f1", "f2", "f3"]


class TinyTextClassifier(nn.Module):
    """Mean of token embeddings (padding excluded), then a linear layer to three classes."""

    def __init__(self, vocab_size: int = len(VOCAB) + 2, dim: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.head = nn.Linear(dim, len(TEXT_LABELS))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(-1).float()
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


class TinyImageClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4, len(IMAGE_LABELS))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(images)).mean(dim=(2, 3)))


class RegressionHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(len(TABULAR_COLUMNS), 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class TinyTransformerClassifier(nn.Module):
    """Transformer-like text classifier for the batching benchmark: 2 encoder layers, d=64."""

    def __init__(self, vocab_size: int = len(VOCAB) + 2, dim: int = 64, max_length: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position = nn.Parameter(torch.randn(1, max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=128, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, len(TEXT_LABELS))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embedding(ids) + self.position[:, : ids.shape[1]])
        return self.head(hidden.mean(dim=1))


class InferenceProbe(TinyTextClassifier):
    """Records, for each call, whether inference mode was on and where the batch lived."""

    calls: list[tuple[bool, str, int]] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        InferenceProbe.calls.append((torch.is_inference_mode_enabled(), ids.device.type, ids.shape[0]))
        return super().forward(ids)


def seeded(network_class: type[nn.Module], seed: int = 7) -> nn.Module:
    torch.manual_seed(seed)
    return network_class()
