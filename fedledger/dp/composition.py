"""One hospital's epsilon over training AND statistics queries: the composition both are charged to.

Training is DP-SGD (an Opacus history of subsampled Gaussian steps).
A Gaussian query (``(epsilon, delta)``, fedledger.stats.calibration) is one
more unsampled Gaussian step ``(z, 1.0, 1)``: it joins the training
history and the hospital's own accountant (PRV or RDP) composes them
tightly. A Laplace query is pure ``epsilon``: it composes additively
(basic composition; a pure mechanism adds its epsilon and no delta). So::

    epsilon_total(delta) = accountant(training steps + Gaussian queries, delta) + sum(Laplace epsilons)

docs/PRIVACY.md ("Statistics queries") states it with a worked example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.dp.epsilon import compute_epsilon


@dataclass(frozen=True)
class QueryCharge:
    """A statistics query as the accountant sees it."""

    query_hash: str
    mechanism: str  # laplace | gaussian
    epsilon: float  # the query's own epsilon (Laplace: what it adds)
    noise_multiplier: float | None = None  # Gaussian: z of its (z, 1.0, 1) entry

    def __post_init__(self) -> None:
        if self.mechanism == "gaussian" and not (self.noise_multiplier and self.noise_multiplier > 0):
            raise ValueError("a Gaussian query charge needs its noise multiplier")
        if self.mechanism not in ("laplace", "gaussian"):
            raise ValueError(f"unknown query mechanism {self.mechanism!r}")


def composed_epsilon(
    accountant: str,
    training_history: Sequence[Sequence[float]],
    delta: float,
    charges: Sequence[QueryCharge],
    planned_steps: int | None = None,
    round_steps: int | None = None,
) -> float:
    """Epsilon at ``delta`` of the training history and the query charges together (module docstring)."""
    pure = sum(c.epsilon for c in charges if c.mechanism == "laplace")
    gauss = [(float(c.noise_multiplier or 0.0), 1.0, 1) for c in charges if c.mechanism == "gaussian"]
    if not gauss:
        return compute_epsilon(accountant, training_history, delta, planned_steps, round_steps) + pure
    if accountant == "gdp":
        raise ValueError("the gdp accountant cannot compose Gaussian queries with training; use prv or rdp")
    history = [(float(h[0]), float(h[1]), int(h[2])) for h in training_history] + gauss
    return compute_epsilon(accountant, history, delta) + pure
