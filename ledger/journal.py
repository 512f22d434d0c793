"""Durable journal of round records, so no round is ever silently left unrecorded.

Before the server submits a round to the ledger it appends the full record
(everything ``recordRound`` needs, signatures included) to
``<run_dir>/ledger_journal.jsonl`` and fsyncs it. After the transaction is
mined it appends a ``submitted`` line with the transaction hash. On restart,
:meth:`Journal.pending` lists what was never confirmed, in order.

:class:`RecordSubmitter` writes pending records in round order, retrying with
exponential backoff while the chain is unreachable, and raises
:class:`LedgerUnavailable` (the record stays in the journal) when one cannot be
written within ``limit_s`` seconds. Before (re)submitting it checks the chain:
a round that is already recorded with the same aggregate hash (e.g. mined just
before the connection dropped) is marked submitted instead of sent twice.

Journal lines (JSON, one per line)::

    {"type": "record", "key": "<studyId hex>:<round>", "record": {...}}
    {"type": "submitted", "key": ..., "tx_hash": "0x..." | null, "block": int | null,
     "found_on_chain": bool}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from fedledger.commitment import RoundCommitment
from fedledger.hashing import as_bytes, to_hex
from ledger.client import LedgerClient
from ledger.records import MODE_MERKLE, MODE_SIGNED, RecordReceipt
from ledger.reverts import LedgerError, LedgerRevert, LedgerTransportError
from ledger.rpc import TRANSPORT_ERRORS

log = logging.getLogger("fedledger.ledger.journal")

JOURNAL_NAME = "ledger_journal.jsonl"


class JournalError(LedgerError):
    """The journal is corrupt or contradicts itself or the chain."""


class LedgerUnavailable(LedgerError):
    """A round could not be written to the chain within the configured limit."""


@dataclass(frozen=True)
class RoundRecord:
    """Everything ``StudyLedger.recordRound`` (mode 1) or ``recordRoundMerkle`` (mode 2) takes.

    A Merkle record carries the root, participant count and max epsilon; its
    commitments and signatures are optional (the round manifest holds every
    leaf, proof and signature) and are journaled only if given.
    """

    study_id: bytes
    round: int
    prev_global_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    commitments: tuple[RoundCommitment, ...]
    signatures: tuple[bytes, ...]
    mode: int = MODE_SIGNED
    commitments_root: bytes | None = None
    participants: int | None = None
    max_epsilon_micro: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "commitments", tuple(self.commitments))
        object.__setattr__(self, "signatures", tuple(bytes(s) for s in self.signatures))
        if len(self.commitments) != len(self.signatures):
            raise ValueError(f"{len(self.commitments)} commitments but {len(self.signatures)} signatures")
        if self.mode not in (MODE_SIGNED, MODE_MERKLE):
            raise ValueError(f"unknown round mode {self.mode}")
        if self.mode == MODE_MERKLE:
            if self.commitments_root is None or len(bytes(self.commitments_root)) != 32:
                raise ValueError("a Merkle-mode record needs a 32-byte commitments root")
            object.__setattr__(self, "commitments_root", bytes(self.commitments_root))
            if not self.participants or self.participants < 1:
                raise ValueError("a Merkle-mode record needs participants >= 1")
            if self.max_epsilon_micro is None:
                raise ValueError("a Merkle-mode record needs max_epsilon_micro")

    @property
    def key(self) -> str:
        return f"{self.study_id.hex()}:{self.round}"

    def to_json(self) -> dict[str, Any]:
        return {
            "studyId": to_hex(self.study_id),
            "round": self.round,
            "prevGlobalHash": to_hex(self.prev_global_hash),
            "aggregateHash": to_hex(self.aggregate_hash),
            "totalSamples": self.total_samples,
            "commitments": [c.to_json() for c in self.commitments],
            "signatures": [to_hex(s) for s in self.signatures],
            # Merkle fields only when used, so per-hospital lines stay as before
            **(
                {
                    "mode": self.mode,
                    "commitmentsRoot": to_hex(self.commitments_root),
                    "participants": self.participants,
                    "maxEpsilonMicro": self.max_epsilon_micro,
                }
                if self.mode == MODE_MERKLE
                else {}
            ),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RoundRecord":
        return cls(
            study_id=as_bytes(d["studyId"]),
            round=int(d["round"]),
            prev_global_hash=as_bytes(d["prevGlobalHash"]),
            aggregate_hash=as_bytes(d["aggregateHash"]),
            total_samples=int(d["totalSamples"]),
            commitments=tuple(RoundCommitment.from_json(c) for c in d["commitments"]),
            signatures=tuple(as_bytes(s) for s in d["signatures"]),
            mode=int(d.get("mode", MODE_SIGNED)),  # journals written before Merkle mode: per-hospital
            commitments_root=as_bytes(d["commitmentsRoot"]) if d.get("commitmentsRoot") else None,
            participants=int(d["participants"]) if d.get("participants") is not None else None,
            max_epsilon_micro=int(d["maxEpsilonMicro"]) if d.get("maxEpsilonMicro") is not None else None,
        )


@dataclass
class _Entry:
    record: RoundRecord
    submitted: dict[str, Any] | None = None


class Journal:
    """Append-only, fsynced JSONL journal of round records (thread-safe)."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL_NAME
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- write

    def _append(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock:
            new = not self.path.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if new:  # make the file's directory entry durable too
                fd = os.open(self.run_dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def append(self, record: RoundRecord) -> str:
        """Durably journal ``record`` (idempotent for an identical record); returns its key."""
        existing = self._entries().get(record.key)
        if existing is not None:
            if existing.record != record:
                raise JournalError(f"journal already holds a different record for {record.key} ({self.path})")
            return record.key
        self._append({"type": "record", "key": record.key, "record": record.to_json()})
        return record.key

    def mark_submitted(
        self, key: str, tx_hash: str | None, block: int | None = None, found_on_chain: bool = False
    ) -> None:
        self._append(
            {"type": "submitted", "key": key, "tx_hash": tx_hash, "block": block, "found_on_chain": found_on_chain}
        )

    # ----------------------------------------------------------------- read

    def _entries(self) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        if not self.path.exists():
            return entries
        with self._lock:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # torn final write (crash mid-append): it never happened
                    log.warning("ignoring torn last line of %s", self.path)
                    continue
                raise JournalError(f"{self.path}:{i + 1}: corrupt journal line") from None
            if obj.get("type") == "record":
                entries.setdefault(obj["key"], _Entry(RoundRecord.from_json(obj["record"])))
            elif obj.get("type") == "submitted":
                if obj["key"] not in entries:
                    raise JournalError(f"{self.path}:{i + 1}: submitted mark for unknown record {obj['key']}")
                entries[obj["key"]].submitted = obj
        return entries

    def records(self) -> list[RoundRecord]:
        return [e.record for e in self._entries().values()]

    def pending(self) -> list[RoundRecord]:
        """Records not yet confirmed on chain, in (study, round) journal order."""
        pend = [e.record for e in self._entries().values() if e.submitted is None]
        return sorted(pend, key=lambda r: (r.study_id, r.round))

    def submitted(self) -> dict[str, dict[str, Any]]:
        return {k: e.submitted for k, e in self._entries().items() if e.submitted is not None}


@dataclass
class RecordSubmitter:
    """Submit journaled round records in order; wait out a chain that is down, up to ``limit_s``."""

    client: LedgerClient
    journal: Journal
    sender: LocalAccount | None = None
    limit_s: float = 120.0
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    attempts: int = field(default=0, init=False)
    # Records journaled by this very object and not yet tried: no earlier attempt can have landed,
    # so their first try skips the "already on chain?" read (a RoundAlreadyRecorded revert still says so).
    _fresh: set[str] = field(default_factory=set, init=False, repr=False)
    receipts: dict[str, RecordReceipt] = field(
        default_factory=dict, init=False, repr=False
    )  # by record key, this process

    def __post_init__(self) -> None:
        # Short inner retries: this class owns the waiting and its deadline.
        self._client = self.client.with_options(
            max_attempts=2, backoff_s=0.05, max_backoff_s=0.1, receipt_timeout_s=max(5.0, min(self.limit_s, 60.0))
        )

    def record(
        self,
        study_id: bytes,
        round: int,
        prev_global_hash: bytes,
        aggregate_hash: bytes,
        total_samples: int,
        commitments: Sequence[RoundCommitment],
        signatures: Sequence[bytes],
    ) -> list[RecordReceipt]:
        """Journal one round durably, then submit everything pending (this round included)."""
        return self.submit_new(
            RoundRecord(
                study_id, round, prev_global_hash, aggregate_hash, total_samples, tuple(commitments), tuple(signatures)
            )
        )

    def record_merkle(
        self,
        study_id: bytes,
        round: int,
        prev_global_hash: bytes,
        aggregate_hash: bytes,
        total_samples: int,
        commitments_root: bytes,
        participants: int,
        max_epsilon_micro: int,
    ) -> list[RecordReceipt]:
        """Journal one Merkle-mode round durably, then submit everything pending."""
        return self.submit_new(
            RoundRecord(
                study_id,
                round,
                prev_global_hash,
                aggregate_hash,
                total_samples,
                (),
                (),
                mode=MODE_MERKLE,
                commitments_root=commitments_root,
                participants=participants,
                max_epsilon_micro=max_epsilon_micro,
            )
        )

    def submit_new(self, rec: RoundRecord) -> list[RecordReceipt]:
        """Journal a record made just now durably, then submit everything pending (it included)."""
        self.journal.append(rec)
        self._fresh.add(rec.key)
        return self.flush()

    def flush(self) -> list[RecordReceipt]:
        """Submit all pending records in order; raises LedgerUnavailable past the limit."""
        receipts = []
        for rec in self.journal.pending():
            r = self._submit(rec)
            if r is not None:
                receipts.append(r)
        return receipts

    def _submit(self, rec: RoundRecord) -> RecordReceipt | None:
        deadline = self.clock() + self.limit_s
        delay = self.backoff_s
        last_exc: BaseException | None = None
        while True:
            self.attempts += 1
            try:
                fresh = rec.key in self._fresh
                self._fresh.discard(rec.key)
                if not fresh and self._already_on_chain(rec):
                    return None
                if rec.mode == MODE_MERKLE:
                    receipt = self._client.record_round_merkle(
                        rec.study_id,
                        rec.round,
                        rec.prev_global_hash,
                        rec.aggregate_hash,
                        rec.total_samples,
                        rec.commitments_root,
                        rec.participants,
                        rec.max_epsilon_micro,
                        sender=self.sender,
                    )
                else:
                    receipt = self._client.record_round(
                        rec.study_id,
                        rec.round,
                        rec.prev_global_hash,
                        rec.aggregate_hash,
                        rec.total_samples,
                        rec.commitments,
                        rec.signatures,
                        sender=self.sender,
                    )
                self.journal.mark_submitted(rec.key, receipt.tx_hash, receipt.block)
                self.receipts[rec.key] = receipt
                log.info("round %d recorded on chain: tx %s (gas %d)", rec.round, receipt.tx_hash, receipt.gas_used)
                return receipt
            except LedgerRevert as exc:
                if exc.error == "RoundAlreadyRecorded" and self._already_on_chain(rec):
                    return None
                raise
            except (LedgerTransportError, *TRANSPORT_ERRORS) as exc:
                last_exc = exc
                self._client.reset_nonces()
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise LedgerUnavailable(
                    f"round {rec.round} of study 0x{rec.study_id.hex()} could not be written to the ledger at "
                    f"{self._client._endpoint()} within {self.limit_s:.0f}s ({last_exc}); it is kept in "
                    f"{self.journal.path} and will be submitted when the chain is back"
                ) from last_exc
            log.warning(
                "ledger unreachable (%s); retrying round %d in %.1fs (%.0fs left)",
                type(last_exc).__name__,
                rec.round,
                min(delay, remaining),
                remaining,
            )
            self.sleep(min(delay, remaining))
            delay = min(delay * 2, self.max_backoff_s)

    def _already_on_chain(self, rec: RoundRecord) -> bool:
        try:
            onchain = self._client.read_round(rec.study_id, rec.round)
        except LedgerRevert as exc:
            if exc.error == "RoundNotRecorded":
                return False
            raise
        if onchain.aggregate_hash != rec.aggregate_hash or (
            rec.mode == MODE_MERKLE and onchain.commitments_hash != rec.commitments_root
        ):
            raise JournalError(
                f"round {rec.round} of study 0x{rec.study_id.hex()} is on chain with aggregate hash "
                f"0x{onchain.aggregate_hash.hex()}, journal says 0x{rec.aggregate_hash.hex()}"
            )
        self.journal.mark_submitted(rec.key, None, onchain.block_number, found_on_chain=True)
        log.info("round %d already on chain (block %d); marked submitted", rec.round, onchain.block_number)
        return True
