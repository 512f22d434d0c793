"""FedAvg over hospital replies: a small Flower Strategy whose aggregation returns typed results.

Encryption and the ledger are not in here: they wrap this class
(fl_server/encrypted.py, fl_server/ledger_commit.py), as Flower's DP
wrappers wrap a strategy. Every layer returns what it made (a
:class:`TrainResult`, an :class:`EvaluationResult`); the round protocol reads
those. Flower's own ``aggregate_train`` / ``aggregate_evaluate`` are thin
adapters over them.
"""

from __future__ import annotations

import logging
import random
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger.round_task import SERVER_ROUND, EvaluationReport, Record
from fedledger.wire import ModelPayload, encode
from fl_server.intervals import with_intervals
from fl_server.validation import (
    Rejection,
    TrainReply,
    ValidationOutcome,
    check_plain_update,
    parse_evaluate_replies,
    parse_train_replies,
    weighted_mean,
)

log = logging.getLogger("fedledger.server")


@dataclass(frozen=True)
class TrainResult:
    """One round's aggregation: the new global model (None: nothing accepted) and who is in it."""

    aggregate: ModelPayload | None
    accepted: tuple[TrainReply, ...]
    rejected: tuple[Rejection, ...]

    @classmethod
    def of(cls, outcome: ValidationOutcome, aggregate: ModelPayload | None) -> TrainResult:
        return cls(aggregate, tuple(outcome.accepted), tuple(outcome.rejected))

    @property
    def num_examples(self) -> int:
        return sum(r.num_examples for r in self.accepted)

    @property
    def train_loss(self) -> float:
        """Sample-weighted mean training loss of the accepted updates (NaN when none reported one)."""
        loss = weighted_mean([(r.report.train_loss, r.num_examples) for r in self.accepted])
        return float(loss if loss is not None else float("nan"))

    def metric_record(self) -> MetricRecord:
        return MetricRecord({"num-examples": self.num_examples, "train-loss": self.train_loss})


@dataclass(frozen=True)
class EvaluationResult:
    """Federated evaluation of one global model: each hospital's report, sorted by hospital id."""

    per_hospital: dict[str, EvaluationReport]

    @cached_property
    def overall(self) -> dict[str, float | None]:
        """Each metric's sample-weighted mean over the hospitals where it is defined, computed once
        (binary: loss, accuracy, AUC; another task: loss and its own, fedledger/tasks.py)."""
        reports = [r.metrics() | {"num-examples": r.num_examples} for r in self.per_hospital.values()]
        keys = dict.fromkeys(k for r in reports for k in r if k != "num-examples") or ("loss", "accuracy", "auc")
        return {k: weighted_mean([(r.get(k), r["num-examples"]) for r in reports]) for k in keys}

    def rows(self) -> dict[str, dict[str, Any]]:
        """Per hospital, as the round outcome reports it (results.json ``per_hospital``), with 95% intervals."""
        return {
            h: with_intervals({**r.metrics(), "num-examples": r.num_examples}, r.num_positives)
            for h, r in self.per_hospital.items()
        }

    def round_metrics(self) -> dict[str, float | None]:
        """The round outcome's ``metrics``: accuracy and AUC where the task has them, the loss, then the task's own."""
        overall = self.overall
        first = [k for k in ("accuracy", "auc") if k in overall] + ["loss"]
        return {k: overall.get(k) for k in first} | {k: v for k, v in overall.items() if k not in first}

    def metric_record(self) -> MetricRecord | None:
        if not self.per_hospital:
            return None
        rec = MetricRecord({k: float(v) for k, v in self.overall.items() if v is not None})
        rec["num-examples"] = sum(r.num_examples for r in self.per_hospital.values())
        return rec


class RoundStrategy(Strategy):
    """A Flower Strategy that returns its results; ``aggregate_train`` / ``aggregate_evaluate`` adapt them."""

    def __init__(self) -> None:
        self.node_names: dict[int, str] = {}  # for Flower's adapters: node id -> hospital id it announced

    @abstractmethod
    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        """Aggregate the well-formed replies of a round (rejecting any this layer finds bad)."""

    def aggregate_evaluation(self, server_round: int, reports: dict[str, EvaluationReport]) -> EvaluationResult:
        return EvaluationResult(reports)

    def commit_round(self, server_round: int, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Nothing to commit without a ledger wrapper."""
        return None

    # -- Flower's Strategy interface ------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        result = self.aggregate_outcome(server_round, parse_train_replies(replies, self.node_names))
        if result.aggregate is None:
            return None, None
        return encode(result.aggregate), result.metric_record()

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        reports, _ = parse_evaluate_replies(replies, self.node_names)
        return self.aggregate_evaluation(server_round, reports).metric_record()


class FedAvgStrategy(RoundStrategy):
    """Sample-weighted FedAvg of plaintext updates.

    ``template`` is the global model's layout (names, shapes); a plaintext
    update that does not fit it is rejected.
    """

    def __init__(
        self,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        seed: int = 0,
        template: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self._rng = random.Random(seed)
        self.template = dict(template) if template is not None else None

    # -- sampling -----------------------------------------------------------
    def _sample(self, grid: Grid, fraction: float) -> list[int]:
        nodes = sorted(grid.get_node_ids())
        k = max(1, round(len(nodes) * fraction))
        return sorted(self._rng.sample(nodes, k)) if k < len(nodes) else nodes

    def _messages(
        self, grid: Grid, fraction: float, server_round: int, arrays: ArrayRecord, config: ConfigRecord, kind: str
    ) -> list[Message]:
        config[SERVER_ROUND] = server_round  # as Flower's own strategies do; a RoundTask already carries it
        content = RecordDict({Record.GLOBAL: arrays, Record.CONFIG: config})
        return [Message(content=content, message_type=kind, dst_node_id=n) for n in self._sample(grid, fraction)]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._messages(grid, self.fraction_train, server_round, arrays, config, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self._messages(grid, self.fraction_evaluate, server_round, arrays, config, MessageType.EVALUATE)

    # -- aggregation ------------------------------------------------------------
    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        """Drop plaintext updates that do not fit the model, then combine the rest."""
        kept = []
        for reply in outcome.accepted:
            try:
                if self.template is not None:
                    check_plain_update(reply, self.template)
                kept.append(reply)
            except ValueError as exc:
                outcome.reject(reply.node_id, reply.hospital, "invalid", str(exc))
        outcome.accepted = kept
        if not kept:
            return TrainResult.of(outcome, None)
        return TrainResult.of(outcome, ModelPayload(arrays=self.combine(kept)))

    def combine(self, kept: list[TrainReply]) -> dict[str, np.ndarray]:
        """The sample-weighted mean (robust rules override this: fl_server/robust.py)."""
        total = sum(r.num_examples for r in kept)
        return {
            name: (sum(r.payload.arrays[name].astype(np.float64) * r.num_examples for r in kept) / total).astype(
                np.float32
            )
            for name in sorted(kept[0].payload.arrays)
        }

    def summary(self) -> None:
        log.info("FedAvg: fraction_train=%.2f fraction_evaluate=%.2f", self.fraction_train, self.fraction_evaluate)


class StrategyWrapper(RoundStrategy):
    """Base of the wrappers (encryption, ledger): delegates everything to ``inner``.

    Each layer works on the round's ValidationOutcome in ``aggregate_outcome``
    and passes it inwards; the innermost layer's result comes back out.
    """

    def __init__(self, inner: RoundStrategy) -> None:
        super().__init__()
        self.inner = inner

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        return self.inner.aggregate_outcome(server_round, outcome)

    def aggregate_evaluation(self, server_round: int, reports: dict[str, EvaluationReport]) -> EvaluationResult:
        return self.inner.aggregate_evaluation(server_round, reports)

    def commit_round(self, server_round: int, manifest: dict[str, Any]) -> dict[str, Any] | None:
        return self.inner.commit_round(server_round, manifest)

    def summary(self) -> None:
        self.inner.summary()
