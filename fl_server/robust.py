"""Robust aggregation of plaintext updates with Flower's own rules: median, trimmed mean, Krum.

The math is Flower's (``flwr.server.strategy.aggregate``), called on each
round's updates in the model's fixed layout (sorted names). Everything else is
FedAvg's: sampling, the messages, the template check, and what the ledger
records (every accepted update's commitment, the aggregate's hash, the total
of committed samples). Only a study without encryption gets one:
``fedledger.strategies.check_strategy`` refuses it otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

from fedledger.strategies import FEDMEDIAN, FEDTRIMMEDAVG, KRUM, StrategyChoice
from fl_server.strategy import FedAvgStrategy
from fl_server.validation import TrainReply

log = logging.getLogger("fedledger.server")

Rule = Callable[[list[tuple[list[np.ndarray], int]]], list[np.ndarray]]


def rule_for(choice: StrategyChoice) -> Rule:
    """The Flower aggregation function of a robust choice, with its settings bound."""
    if choice.name == FEDMEDIAN:
        return aggregate_median
    if choice.name == FEDTRIMMEDAVG:
        beta = float(choice.beta or 0.0)
        return lambda results: aggregate_trimmed_avg(results, beta)
    if choice.name == KRUM:
        f, m = int(choice.num_malicious or 0), int(choice.multi_krum_m or 1)
        # Flower's to_keep: 0 is Krum (one update), k > 0 averages the k best (weighted by samples)
        return lambda results: aggregate_krum(results, f, min(m, len(results)) if m > 1 else 0)
    raise ValueError(f"{choice.name!r} is not a robust aggregation rule")


class RobustStrategy(FedAvgStrategy):
    """FedAvg's rounds with a robust rule in place of the sample-weighted mean."""

    def __init__(
        self,
        choice: StrategyChoice,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        seed: int = 0,
        template: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(fraction_train, fraction_evaluate, seed, template)
        self.choice = choice
        self.rule = rule_for(choice)

    def combine(self, kept: list[TrainReply]) -> dict[str, np.ndarray]:
        if self.choice.name == FEDTRIMMEDAVG and int(float(self.choice.beta or 0.0) * len(kept)) < 1:
            log.warning(
                "trimmed mean over %d update(s) with beta=%s cuts none: this round is their plain mean",
                len(kept),
                self.choice.beta,
            )
        names = sorted(kept[0].payload.arrays)
        results = [([r.payload.arrays[n].astype(np.float64) for n in names], r.num_examples) for r in kept]
        combined = self.rule(results)
        return {
            n: np.asarray(a, dtype=np.float32).reshape(kept[0].payload.arrays[n].shape)
            for n, a in zip(names, combined, strict=True)
        }

    def summary(self) -> None:
        log.info("%s: %s", self.choice.name, self.choice)


def strategy_for(
    choice: StrategyChoice,
    fraction_train: float,
    fraction_evaluate: float,
    seed: int,
    template: Mapping[str, np.ndarray] | None,
) -> FedAvgStrategy:
    """The innermost strategy of a study: FedAvg (FedProx aggregates as FedAvg), or a robust rule."""
    if choice.robust:
        return RobustStrategy(choice, fraction_train, fraction_evaluate, seed, template)
    return FedAvgStrategy(fraction_train, fraction_evaluate, seed, template)
