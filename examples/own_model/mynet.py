"""A researcher's own model for FedLedger (docs/MODELS.md): a small 1-D CNN over the feature vector, with BatchNorm.

DP-SGD cannot train BatchNorm (it mixes the rows of a batch), so a study with
this model needs ``model.fix_batchnorm=true``: Opacus replaces it with
GroupNorm (each channel normalised over the feature positions of its own
row), and FedLedger says so. Every hospital installs this same file; its
SHA-256 is the study's registered ``model-source-hash``.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    """Conv1d -> BatchNorm1d -> ReLU -> Linear over the flattened channels.

    Shape (n,) with one output (binary: a logit per row), (n, out_features) with
    more (a multiclass study passes out_features, its class count).
    """

    def __init__(self, n_features: int, channels: int = 4, kernel: int = 3, out_features: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, channels, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.ReLU()
        self.out = nn.Linear(channels * n_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.conv(x.unsqueeze(1))))  # (n, channels, n_features)
        out = self.out(h.flatten(1))
        return out.squeeze(-1) if out.shape[-1] == 1 else out
