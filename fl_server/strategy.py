"""FedAvg over hospital replies: a small Flower Strategy.

Encryption and the ledger are not in here: they wrap this class
(fl_server/encrypted.py, fl_server/ledger_commit.py), as Flower's DP
wrappers wrap a strategy.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger.wire import ModelPayload, encode
from fl_server.validation import (
    Rejection,
    TrainReply,
    ValidationOutcome,
    check_plain_update,
    hospital_of,
    parse_train_replies,
    weighted_mean,
)

log = logging.getLogger("fedledger.server")


class FedAvgStrategy(Strategy):
    """Sample-weighted FedAvg of plaintext updates, with per-hospital bookkeeping."""

    def __init__(self, fraction_train: float = 1.0, fraction_evaluate: float = 1.0, seed: int = 0) -> None:
        self.fraction_train = fraction_train
        self.fraction_evaluate = fraction_evaluate
        self._rng = random.Random(seed)
        self.template: dict[str, np.ndarray] | None = None
        # Filled by each aggregate_* call; the round protocol reads them for its report.
        self.last_accepted: list[TrainReply] = []
        self.last_rejected: list[Rejection] = []
        self.last_evaluation: dict[str, dict[str, float | None]] = {}
        self.node_names: dict[int, str] = {}  # node id -> hospital id, so a crashed node is still named

    # -- sampling -----------------------------------------------------------
    def _sample(self, grid: Grid, fraction: float) -> list[int]:
        nodes = sorted(grid.get_node_ids())
        k = max(1, round(len(nodes) * fraction))
        return sorted(self._rng.sample(nodes, k)) if k < len(nodes) else nodes

    def _messages(
        self, grid: Grid, fraction: float, arrays: ArrayRecord, config: ConfigRecord, kind: str
    ) -> list[Message]:
        content = RecordDict({"global": arrays, "config": config})
        return [Message(content=content, message_type=kind, dst_node_id=n) for n in self._sample(grid, fraction)]

    # -- Strategy interface -------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["server-round"] = server_round
        return self._messages(grid, self.fraction_train, arrays, config, MessageType.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["server-round"] = server_round
        return self._messages(grid, self.fraction_evaluate, arrays, config, MessageType.EVALUATE)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.aggregate_outcome(server_round, parse_train_replies(replies, self.node_names))

    def aggregate_outcome(
        self, server_round: int, outcome: ValidationOutcome
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop plaintext updates that do not fit the model, then take the sample-weighted mean."""
        kept = []
        for reply in outcome.accepted:
            try:
                if self.template is not None:
                    check_plain_update(reply, self.template)
                kept.append(reply)
            except ValueError as exc:
                outcome.reject(reply, reply.node_id, reply.hospital, "invalid", str(exc))
        outcome.accepted = kept
        self.last_accepted, self.last_rejected = outcome.accepted, outcome.rejected
        if not outcome.accepted:
            return None, None
        total = sum(r.num_examples for r in outcome.accepted)
        names = sorted(outcome.accepted[0].payload.arrays)
        avg = {
            name: (
                sum(r.payload.arrays[name].astype(np.float64) * r.num_examples for r in outcome.accepted) / total
            ).astype(np.float32)
            for name in names
        }
        return encode(ModelPayload(arrays=avg)), self.train_metrics(outcome.accepted)

    def commit_round(self, server_round: int, manifest: dict) -> dict | None:
        """Nothing to commit without a ledger wrapper."""
        return None

    @staticmethod
    def train_metrics(accepted: list[TrainReply]) -> MetricRecord:
        total = sum(r.num_examples for r in accepted)
        loss = weighted_mean([(r.metrics.get("train-loss"), r.num_examples) for r in accepted])
        return MetricRecord({"num-examples": total, "train-loss": float(loss if loss is not None else float("nan"))})

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        per_hospital: dict[str, dict[str, float | None]] = {}
        for msg in replies:
            hospital = hospital_of(msg, self.node_names)
            if not hospital.startswith("node-"):
                self.node_names[int(msg.metadata.src_node_id)] = hospital
            if msg.has_error() or "metrics" not in msg.content.metric_records:
                reason = msg.error.reason if msg.has_error() else "reply without metrics"
                log.warning(
                    "evaluation reply dropped: node=%s hospital=%s reason=%s",
                    msg.metadata.src_node_id,
                    hospital,
                    reason,
                )
                continue
            m = dict(msg.content.metric_records["metrics"])
            auc = m.get("auc")
            per_hospital[hospital] = {
                "loss": float(m["loss"]),
                "accuracy": float(m["accuracy"]),
                "auc": None if auc is None or auc != auc or m.get("auc-defined", 1) == 0 else float(auc),
                "num-examples": int(m["num-examples"]),
            }
        self.last_evaluation = dict(sorted(per_hospital.items()))
        if not per_hospital:
            return None
        rows = list(per_hospital.values())
        overall = {k: weighted_mean([(r[k], r["num-examples"]) for r in rows]) for k in ("loss", "accuracy", "auc")}
        rec = MetricRecord({k: float(v) for k, v in overall.items() if v is not None})
        rec["num-examples"] = sum(int(r["num-examples"]) for r in rows)
        return rec

    def summary(self) -> None:
        log.info("FedAvg: fraction_train=%.2f fraction_evaluate=%.2f", self.fraction_train, self.fraction_evaluate)


class StrategyWrapper(Strategy):
    """Base of the wrappers (encryption, ledger): delegates everything to ``inner``.

    Replies are parsed once, at the outermost wrapper; each layer then works
    on the ValidationOutcome in ``aggregate_outcome`` and passes it inwards.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.aggregate_outcome(server_round, parse_train_replies(replies, self.core.node_names))

    def aggregate_outcome(
        self, server_round: int, outcome: ValidationOutcome
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_outcome(server_round, outcome)

    def commit_round(self, server_round: int, manifest: dict) -> dict | None:
        return self.inner.commit_round(server_round, manifest) if hasattr(self.inner, "commit_round") else None

    @property
    def core(self) -> FedAvgStrategy:
        s = self.inner
        while isinstance(s, StrategyWrapper):
            s = s.inner
        return s

    def summary(self) -> None:
        self.inner.summary()
