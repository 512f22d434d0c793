"""Reply validation: every hospital reply is checked before anything is aggregated.

A bad reply never stops a round: it is dropped, logged with the node id, the
hospital and the reason, and kept in the round's report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from flwr.app import Message

from fedledger.round_task import EvaluationReport, Record, Refusal, RoundMessageError, TrainReport
from fedledger.wire import ModelPayload, decode

log = logging.getLogger("fedledger.server")


@dataclass
class TrainReply:
    """A parsed, not yet validated, training reply.

    ``commitment`` is the hospital's signed-commitment record as received
    (``fedledger.commitment.SignedCommitment.to_json``); the ledger wrapper
    verifies it, the round manifest keeps it as is.
    """

    node_id: int
    hospital: str
    payload: ModelPayload
    report: TrainReport
    commitment: dict[str, object] | None = None

    @property
    def num_examples(self) -> int:
        return self.report.num_examples

    @cached_property
    def update_hash(self) -> bytes:
        """The update's public hash, computed once per reply (signed commitment, manifest)."""
        return self.payload.digest()


@dataclass
class Rejection:
    """Why a hospital's reply was not aggregated."""

    node_id: int
    hospital: str
    kind: str  # "error" (node failed), "refusal" (hospital declined), "invalid" (bad content)
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"node_id": self.node_id, "hospital": self.hospital, "kind": self.kind, "reason": self.reason}


@dataclass
class ValidationOutcome:
    accepted: list[TrainReply] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def reject(self, node_id: int, hospital: str, kind: str, reason: str) -> None:
        log.warning("round reply rejected: node=%s hospital=%s kind=%s reason=%s", node_id, hospital, kind, reason)
        self.rejected.append(Rejection(node_id, hospital, kind, reason))


def hospital_of(msg: Message, names: dict[int, str] | None = None) -> str:
    """Best-effort hospital id of a reply, for log lines even when the content is bad.

    An error reply (a crashed client) carries no content: ``names`` maps node ids to the
    hospital ids they announced in earlier replies.
    """
    try:
        if msg.has_content():
            for key in (Record.INFO, Record.REFUSAL, Record.COMMITMENT):
                rec = msg.content.config_records.get(key)
                if rec is not None and "hospital" in rec:
                    return str(rec["hospital"])
    except Exception:
        pass
    node_id = int(msg.metadata.src_node_id)
    return (names or {}).get(node_id, f"node-{node_id}")


def _named(msg: Message, names: dict[int, str] | None) -> str:
    """:func:`hospital_of`, remembering the name a node announces (for its later error replies)."""
    hospital = hospital_of(msg, names)
    if names is not None and not hospital.startswith("node-"):
        names[int(msg.metadata.src_node_id)] = hospital
    return hospital


def parse_train_replies(replies: Iterable[Message], names: dict[int, str] | None = None) -> ValidationOutcome:
    """Split replies into well-formed ones and rejections (errors, refusals, malformed).

    ``names`` (node id -> hospital id) is read for error replies and updated from the others.
    """
    out = ValidationOutcome()
    for msg in replies:
        node_id = int(msg.metadata.src_node_id)
        hospital = _named(msg, names)
        if msg.has_error():
            out.reject(node_id, hospital, "error", f"node error {msg.error.code}: {msg.error.reason}")
            continue
        content = msg.content
        if Record.REFUSAL in content.config_records:
            refusal = Refusal.from_wire(content.config_records[Record.REFUSAL])
            out.reject(node_id, hospital, "refusal", f"{refusal.code}: {refusal.reason}")
            continue
        try:
            payload = decode(content.array_records[Record.UPDATE])
            records = content.config_records
            report = TrainReport.from_wire(content.metric_records[Record.METRICS], records.get(Record.INFO, {}))
            commitment = dict(records[Record.COMMITMENT]) if Record.COMMITMENT in records else None
        except KeyError as exc:
            out.reject(node_id, hospital, "invalid", f"reply lacks record {exc}")
            continue
        except (ValueError, TypeError) as exc:
            out.reject(node_id, hospital, "invalid", str(exc))
            continue
        out.accepted.append(TrainReply(node_id, hospital, payload, report, commitment))
    return out


def parse_evaluate_replies(
    replies: Iterable[Message], names: dict[int, str] | None = None
) -> tuple[dict[str, EvaluationReport], list[Rejection]]:
    """Each hospital's evaluation report, by hospital id (sorted), and the replies that carry none.

    A hospital's refusal keeps its code (``kind`` "refusal", reason ``"code: reason"``), as for training.
    """
    reports: dict[str, EvaluationReport] = {}
    dropped = ValidationOutcome()
    for msg in replies:
        node_id = int(msg.metadata.src_node_id)
        hospital = _named(msg, names)
        if msg.has_error():
            dropped.reject(node_id, hospital, "error", f"evaluation: node error {msg.error.code}: {msg.error.reason}")
            continue
        if Record.REFUSAL in msg.content.config_records:
            refusal = Refusal.from_wire(msg.content.config_records[Record.REFUSAL])
            dropped.reject(node_id, hospital, "refusal", f"{refusal.code}: {refusal.reason}")
            continue
        try:
            if Record.METRICS not in msg.content.metric_records:
                raise RoundMessageError("reply without metrics")
            info = msg.content.config_records.get(Record.INFO, {})  # hospital id, its release signature
            reports[hospital] = EvaluationReport.from_wire(msg.content.metric_records[Record.METRICS], info)
        except RoundMessageError as exc:
            dropped.reject(node_id, hospital, "invalid", f"evaluation: {exc}")
    return dict(sorted(reports.items())), dropped.rejected


def check_plain_update(reply: TrainReply, template: dict[str, np.ndarray], max_abs: float = 1e6) -> None:
    """A plaintext update must match the global model's layout and hold finite values."""
    arrays = reply.payload.arrays
    if reply.payload.encrypted:
        raise ValueError("encrypted update sent to a plaintext study")
    if set(arrays) != set(template):
        raise ValueError(f"update arrays {sorted(arrays)} do not match the model's {sorted(template)}")
    for name, ref in template.items():
        arr = arrays[name]
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"array {name} has shape {tuple(arr.shape)}, expected {tuple(ref.shape)}")
        if arr.dtype.kind != "f":
            raise ValueError(f"array {name} has dtype {arr.dtype}, expected floating point")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"array {name} holds NaN or infinite values")
        if arr.size and float(np.max(np.abs(arr))) > max_abs:
            raise ValueError(f"array {name} has values beyond {max_abs:g}")


def weighted_mean(values: list[tuple[float | None, int]]) -> float | None:
    """Sample-weighted mean that skips undefined values (None/NaN), e.g. ROC-AUC of a one-class hospital."""
    pairs = [(v, n) for v, n in values if v is not None and not math.isnan(v)]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None
