"""The study's best round on the hospitals' validation rows, and early stopping.

Each hospital holding validation rows (``dataset.validation_fraction``)
reports the global model's metrics on them with its evaluation; this module
pools them (sample-weighted, like the test metrics), keeps the best round by
``strategy.selection_metric`` and says when ``strategy.early_stopping_patience``
rounds have passed without improvement. What this choice costs in privacy is
in docs/PRIVACY.md ("Best round and early stopping").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedledger.round_task import EvaluationReport
from fedledger.tasks import lower_is_better


class EarlyStopped(Exception):
    """The study stops: ``patience`` rounds passed without a better validation metric."""


def validation_metrics(reports: Mapping[str, EvaluationReport]) -> dict[str, float | None] | None:
    """Each validation metric's sample-weighted mean over the hospitals where it is defined (binary: loss,
    accuracy, AUC; another task: loss and its own); None without any validation rows."""
    held = [r.validation for r in reports.values() if r.validation]
    if not held:
        return None

    def mean(key: str) -> float | None:
        pairs = [(float(v[key]), float(v["num-examples"] or 0)) for v in held if v.get(key) is not None]
        weight = sum(w for _, w in pairs)
        return sum(x * w for x, w in pairs) / weight if weight else None

    keys = dict.fromkeys(k for v in held for k in v if k != "num-examples")
    return {
        **{k: mean(k) for k in keys},
        "num-examples": float(sum(float(v["num-examples"] or 0) for v in held)),
    }


@dataclass
class BestRound:
    """The best round so far by one validation metric; rounds without a value neither improve nor count."""

    metric: str = "loss"
    patience: int | None = None
    task: str = "binary"  # the study's task: which way its metric improves (fedledger/tasks.py)
    best_round: int | None = None
    best_value: float | None = None
    since_best: int = 0
    stopped_after: int | None = None

    def observe(self, server_round: int, validation: Mapping[str, Any] | None) -> None:
        """Take one round's pooled validation metrics; raise :class:`EarlyStopped` when patience runs out."""
        value = (validation or {}).get(self.metric)
        if value is None:
            return
        lower = lower_is_better(self.task, self.metric)
        better = self.best_value is None or (value < self.best_value if lower else value > self.best_value)
        if better:
            self.best_round, self.best_value, self.since_best = server_round, float(value), 0
            return
        self.since_best += 1
        if self.patience is not None and self.since_best >= self.patience:
            self.stopped_after = server_round
            raise EarlyStopped(
                f"early stopping after round {server_round}: validation {self.metric} has not improved on "
                f"round {self.best_round}'s {self.best_value:.4f} for {self.since_best} round(s)"
            )

    def section(self) -> dict[str, Any]:
        """results.json ``selection``: the best round and whether the study stopped early."""
        return {
            "split": "validation",
            "metric": self.metric,
            "best_round": self.best_round,
            "best_value": self.best_value,
            "early_stopping_patience": self.patience,
            "stopped_early_after_round": self.stopped_after,
        }
