"""The linear discrete-time hazard model: one shared linear risk score plus one baseline logit per interval.

``logit h_k(x) = alpha_k + beta . x`` (a proportional-odds logistic hazard,
Cox's discrete-time model): ``d + K`` parameters where K independent linear
heads would need ``K (d + 1)``, so DP-SGD's noise is spread over far fewer
coordinates. Only ``nn.Linear`` layers (the baselines are a bias-free linear
layer applied to a constant 1), so every Opacus grad-sample mode supports it.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearHazard(nn.Module):
    """``(n, d)`` features -> ``(n, K)`` hazard logits, proportional on the logit scale."""

    def __init__(self, n_features: int, n_intervals: int) -> None:
        super().__init__()
        if n_features < 1 or n_intervals < 1:
            raise ValueError(
                f"LinearHazard needs n_features >= 1 and n_intervals >= 1, got {n_features}, {n_intervals}"
            )
        self.risk = nn.Linear(n_features, 1, bias=False)
        self.baseline = nn.Linear(1, n_intervals, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.baseline(x.new_ones(x.shape[0], 1)) + self.risk(x)
