"""FedProx's proximal term, applied where it costs no privacy.

FedProx (Li et al., 2020) adds ``mu/2 * ||w - w_global||^2`` to each
hospital's local loss, so hospitals with skewed data drift less from the
model they started the round from. Its gradient ``mu * (w - w_global)``
depends on the parameters only, never on a patient, so it is added after
Opacus has clipped and noised the data gradient: the DP guarantee and its
accounting are unchanged (docs/PRIVACY.md). Without DP it is the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class ProximalSGD(torch.optim.SGD):
    """SGD whose step first adds ``mu * (w - anchor)`` to each gradient; ``anchor`` is the round's start model.

    With ``mu = 0`` it is exactly ``torch.optim.SGD``. Opacus's DPOptimizer
    calls this optimizer's ``step`` after writing the privatized gradient
    into ``p.grad``, which is where the term belongs.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], *, mu: float, **sgd: Any) -> None:
        params = list(params)
        if not mu >= 0.0:
            raise ValueError(f"proximal mu must be >= 0, got {mu!r}")
        super().__init__(params, **sgd)
        self.mu = float(mu)
        self._anchor = {p: p.detach().clone() for p in params}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if self.mu:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.add_(p.detach() - self._anchor[p], alpha=self.mu)
        return super().step(closure)


def proximal_term(model: torch.nn.Module, anchor: Iterable[torch.Tensor], mu: float) -> torch.Tensor:
    """``mu/2 * ||w - anchor||^2``: the loss term the optimizer's added gradient derives from (reported, tested)."""
    return 0.5 * mu * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
