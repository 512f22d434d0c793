"""The round protocol, in one place.

One round: send the task (global model + round config incl. the previous
global hash) -> hospitals train and reply -> validate and aggregate (the
strategy and its wrappers) -> write the round's artifacts durably -> commit
the round (ledger wrapper) -> federated evaluation of the new global model.
With few hospitals (``OVERLAP_MAX_TASKS``) the evaluation tasks are pushed
just before the commit is submitted, so the transaction is mined while they
travel; a hospital evaluates only once the chain records the model it was
sent (it waits for the record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flwr.app import ConfigRecord, Message
from flwr.serverapp import Grid

from fedledger.hashing import canonical_model_bytes, to_hex
from fedledger.protocol import protocol_hash
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload, encode
from fl_server.artifact_store import ArtifactStore
from fl_server.selection import validation_metrics
from fl_server.strategy import RoundStrategy
from fl_server.validation import Rejection, TrainReply, parse_evaluate_replies, parse_train_replies

log = logging.getLogger("fedledger.server")
T = TypeVar("T")

# Overlap the commit with the evaluation dispatch only for this many tasks or fewer: with few hospitals
# the dispatch is latency (Flower's poll ticks) and hiding the commit in it pays; with many it is
# throughput, and the hospitals waiting for the record hold workers (docs/BENCHMARKS.md, docs/ARCHITECTURE.md).
OVERLAP_MAX_TASKS = 32


class StudyStopped(RuntimeError):
    """Too few hospitals remain to continue; the message says which and why."""


@dataclass
class RoundOutcome:
    server_round: int
    prev_hash: str
    aggregate_hash: str
    participants: list[str]
    rejected: list[dict[str, Any]]
    total_examples: int
    metrics: dict[str, float | None]
    per_hospital: dict[str, dict[str, Any]]
    train_loss: float | None
    bytes_per_hospital: float
    duration_s: float
    ledger: dict[str, Any] | None = None
    privacy: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)  # where the round's wall time went
    evaluation_rejected: list[dict[str, Any]] = field(default_factory=list)  # evaluation replies without a report
    refusals: list[dict[str, Any]] = field(default_factory=list)  # the manifest's ``refusals`` (aggregate bounds too)
    validation: dict[str, float | None] | None = None  # pooled validation metrics (fl_server/selection.py)


class PhaseClock:
    """Wall time of each phase of a round, so a slow round says what was slow."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self._t, 4)
        self._t = now


def write_manifest(
    store: ArtifactStore,
    study_id: str,
    server_round: int,
    prev_hash: str,
    aggregate: ModelPayload,
    accepted: Sequence[Any],
    aggregate_hash: bytes | None = None,
    protocol: str | None = None,
    rejected: Sequence[Rejection] = (),
) -> dict[str, Any]:
    """Persist a round's update and aggregate blobs plus its manifest before it is committed.

    ``protocol`` is the hash of the study protocol the round's task was sent under
    (fedledger.protocol), which the auditor checks against the chain's configHash.

    ``accepted`` are the round's replies (TrainReply: each update hashed once,
    its signed-commitment record kept as received); ``aggregate_hash`` is the
    aggregate's digest when the caller has it already. The hospitals' refusals
    among ``rejected`` go into the manifest's ``refusals`` (absent when there
    are none, so a round without one writes the manifest as before).
    """

    def blobs_of(payload: ModelPayload) -> list[str]:
        if payload.encrypted:
            return store.put_blobs(payload.ciphertexts)
        return store.put_blobs([canonical_model_bytes(payload.arrays)])

    def update_hash(r: Any) -> bytes:
        return r.update_hash if isinstance(r, TrainReply) else r.payload.digest()

    manifest = {
        "format": "fedledger-round-v1",
        "study_id": study_id,
        "round": server_round,
        "prev_hash": prev_hash,
        "encrypted": aggregate.encrypted,
        "aggregate": {
            "hash": to_hex(aggregate_hash if aggregate_hash is not None else aggregate.digest()),
            "blobs": blobs_of(aggregate),
            "total_weight": int(sum(r.num_examples for r in accepted)),
        },
        "updates": [
            {
                "hospital": r.hospital,
                "node_id": r.node_id,
                "num_examples": r.num_examples,
                "update_hash": to_hex(update_hash(r)),
                "blobs": blobs_of(r.payload),
                "commitment": r.commitment,
                **noise_source_of(r),
            }
            for r in accepted
        ],
    }
    if protocol is not None:
        manifest["protocol_hash"] = protocol
    refusals = [refusal_entry(r) for r in rejected if r.kind == "refusal"]
    refusals += [e for e in (aggregate_refusal_entry(r, server_round) for r in accepted) if e is not None]
    if refusals:
        manifest["refusals"] = refusals
    store.write_round(manifest)
    return manifest


def noise_source_of(reply: Any) -> dict[str, str]:
    """What drew a DP hospital's noise, as it reported it (``noise_source`` in its manifest entry; none without DP)."""
    source = getattr(getattr(reply, "report", None), "noise_source", None)
    return {"noise_source": source} if source else {}


def refusal_entry(rejection: Rejection) -> dict[str, Any]:
    """A hospital's refusal as the manifest keeps it: the code split from the reason it came with."""
    code, sep, reason = rejection.reason.partition(": ")
    if not sep:
        code, reason = "", rejection.reason
    return {"hospital": rejection.hospital, "node_id": rejection.node_id, "code": code, "reason": reason}


def aggregate_refusal_entry(reply: Any, server_round: int) -> dict[str, Any] | None:
    """A hospital that refused the previous round's aggregate (a public bound, fl_client/aggregate_bounds.py)
    and trained from its last accepted global model: its code, reason and the aggregate's round."""
    report = getattr(reply, "report", None)
    code = getattr(report, "aggregate_refused", None)
    if not code:
        return None
    return {
        "hospital": reply.hospital,
        "node_id": reply.node_id,
        "code": code,
        "reason": getattr(report, "aggregate_refused_reason", None) or "",
        "aggregate_round": server_round - 1,
    }


def run_rounds(
    grid: Grid,
    strategy: RoundStrategy,
    initial: ModelPayload,
    task: RoundTask,
    num_rounds: int,
    min_hospitals: int,
    store: ArtifactStore,
    timeout: float = 600.0,
    start_round: int = 1,
    on_round: Callable[[RoundOutcome], None] | None = None,
) -> tuple[ModelPayload, list[RoundOutcome]]:
    """Run rounds start_round..num_rounds; return the last global model and each round's outcome.

    ``task`` is the study's round task; each round sends it with its own round
    number and the hash of the model it carries.
    """
    global_model = initial
    global_record = encode(initial)  # each global model is encoded once: its evaluation, then the next round
    global_hash = to_hex(initial.digest())
    names: dict[int, str] = {}  # node id -> hospital id, so a crashed node is still named
    outcomes: list[RoundOutcome] = []
    for server_round in range(start_round, num_rounds + 1):
        t0 = time.perf_counter()
        clock = PhaseClock()
        prev_hash = global_hash
        train_task = task.for_round(server_round, prev_hash)
        replies = grid.send_and_receive(
            strategy.configure_train(server_round, global_record, ConfigRecord(train_task.to_wire()), grid),
            timeout=timeout,
        )
        clock.lap("train")
        result = strategy.aggregate_outcome(server_round, parse_train_replies(replies, names))
        clock.lap("aggregate")
        accepted, rejected = result.accepted, result.rejected
        new_global = result.aggregate
        if new_global is None or len(accepted) < min_hospitals:
            reasons = "; ".join(f"{r.hospital}: {r.reason}" for r in rejected) or "no replies"
            raise StudyStopped(
                f"round {server_round}: only {len(accepted)} hospital(s) contributed, the study needs at least "
                f"{min_hospitals} ({reasons})"
            )
        new_digest = new_global.digest()
        global_hash = to_hex(new_digest)
        manifest = write_manifest(
            store,
            train_task.study_id,
            server_round,
            prev_hash,
            new_global,
            accepted,
            aggregate_hash=new_digest,
            protocol=to_hex(protocol_hash(train_task)),
            rejected=rejected,
        )
        clock.lap("store")

        def commit() -> dict[str, Any] | None:
            # Hospitals check the model against this record before they evaluate it: they wait for it
            # (fl_client.chain_view.wait_for_recorded_hash), so it is mined while the tasks are on their way.
            recorded = strategy.commit_round(server_round, manifest)
            clock.lap("commit")
            if not new_global.encrypted:
                store.write_checkpoint(server_round, new_global.arrays)
            return recorded

        eval_config = ConfigRecord(task.for_round(server_round, global_hash).to_wire())
        new_record = encode(new_global)
        eval_messages = list(strategy.configure_evaluate(server_round, new_record, eval_config, grid))
        if len(eval_messages) <= OVERLAP_MAX_TASKS:
            eval_replies, ledger = send_and_receive_around(grid, eval_messages, commit, timeout)
        else:
            ledger = commit()
            eval_replies = list(grid.send_and_receive(eval_messages, timeout=timeout))
        reports, eval_rejected = parse_evaluate_replies(eval_replies, names)
        signed = {h: rep.release for h, rep in reports.items() if rep.release is not None}
        if signed:  # the hospitals' ModelRelease signatures: what releaseModel needs (experiments/release.py)
            store.write_release_attestations(server_round, signed)
        evaluation = strategy.aggregate_evaluation(server_round, reports)
        clock.lap("evaluate")
        outcome = RoundOutcome(
            server_round=server_round,
            prev_hash=prev_hash,
            aggregate_hash=global_hash,
            participants=[r.hospital for r in accepted],
            rejected=[r.as_dict() for r in rejected],
            total_examples=int(manifest["aggregate"]["total_weight"]),
            metrics=evaluation.round_metrics(),
            per_hospital=evaluation.rows(),
            train_loss=result.train_loss,
            bytes_per_hospital=sum(r.payload.nbytes() for r in accepted) / len(accepted),
            duration_s=time.perf_counter() - t0,
            ledger=ledger,
            privacy={r.hospital: r.report.privacy() for r in accepted if r.report.epsilon is not None},
            phases_s=clock.laps,
            evaluation_rejected=[r.as_dict() for r in eval_rejected],
            refusals=list(manifest.get("refusals", [])),
            validation=validation_metrics(reports),
        )
        outcomes.append(outcome)
        if on_round is not None:
            on_round(outcome)
        global_model, global_record = new_global, new_record
    return global_model, outcomes


def send_and_receive_around(
    grid: Grid, messages: Iterable[Message], work: Callable[[], T], timeout: float
) -> tuple[list[Message], T]:
    """Flower's ``Grid.send_and_receive`` with ``work()`` run between the push and the first pull.

    The pull loop is Flower's own (same cadence: the grid's ``pull_interval``,
    else the 3 s of the deployment grid). If ``work`` raises, nothing is
    pulled and the error propagates: the round stops as it did before.
    """
    pending = set(grid.push_messages(messages))
    result = work()
    interval = float(getattr(grid, "pull_interval", 3.0))
    deadline = time.time() + timeout
    replies: list[Message] = []
    while pending and time.time() < deadline:
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if pending:
            time.sleep(interval)
    return replies, result
