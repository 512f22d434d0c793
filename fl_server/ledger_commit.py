"""Ledger commit: wraps a strategy so every round is recorded on-chain with the hospitals' signatures.

Before aggregation it drops replies whose commitment does not verify
off-chain (wrong signer, wrong round/study/prev hash, update hash or sample
count not matching what was sent), so one bad reply cannot make the whole
on-chain record revert. After the round's artifacts are durable,
``commit_round`` journals the record and submits it; if the chain is down the
record waits in the journal and the study stops with a clear error once the
configured limit passes. No round is ever silently left unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger.commitment import RoundCommitment, recover_signer
from fedledger.hashing import from_hex, to_hex
from fl_server.strategy import StrategyWrapper
from fl_server.validation import TrainReply, ValidationOutcome

log = logging.getLogger("fedledger.server")


class CommitmentRejected(ValueError):
    """A reply's signed commitment does not match what the hospital sent."""


class LedgerCommit(StrategyWrapper):
    """Adds signed, on-chain round records to any strategy."""

    def __init__(self, inner: Strategy, client: Any, study_id: str, hospitals: dict[str, str],
                 run_dir: Path, record_timeout_s: float, chain: Any = None) -> None:
        super().__init__(inner)
        self.client = client
        self.study_id = study_id
        self.hospitals = {h: to_checksum_address(a) for h, a in hospitals.items()}  # hospital id -> registered address
        self.domain = client.domain()
        self.record_timeout_s = record_timeout_s
        self.chain = chain
        from ledger.journal import Journal, RecordSubmitter

        self.journal = Journal(run_dir)
        self.submitter = RecordSubmitter(client=client, journal=self.journal, limit_s=record_timeout_s)
        self._prev_hash: dict[int, str] = {}

    @classmethod
    def from_spec(cls, inner: Strategy, spec: dict[str, Any]) -> "LedgerCommit":
        """Connect to the study's chain as the aggregator (key from a file, env var or keystore; never logged)."""
        from ledger.chains import _http_w3, load_aggregator_account
        from ledger.client import LedgerClient
        from ledger.local_registry import lookup
        from fl_client.hospital_keys import load_eth_account

        chain_spec = spec["chain"]
        if chain_spec.get("aggregator_key"):
            account = load_eth_account(chain_spec["aggregator_key"])
        else:
            account = load_aggregator_account(chain_spec.get("key_env"), Path(chain_spec["keystore"]) if chain_spec.get("keystore") else None)
        local = lookup(chain_spec["contract"]) if chain_spec["backend"] == "eth_tester" else None
        w3 = local.w3 if local is not None else _http_w3(chain_spec["rpc_url"])
        client = LedgerClient.at(w3, chain_spec["contract"], account, deploy_block=int(chain_spec.get("deploy_block", 0)))
        hospitals = {h["id"]: h["address"] for h in spec["hospitals"]}
        return cls(inner, client, spec["study_id"], hospitals, Path(spec["run_dir"]),
                   float(chain_spec.get("record_timeout_s", 120)), chain=local)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self._prev_hash[server_round] = str(config["prev-hash"])
        return self.inner.configure_train(server_round, arrays, config, grid)

    def summary(self) -> None:
        log.info("LedgerCommit: contract %s, study %s", self.client.address, self.study_id)

    # -- commitments ----------------------------------------------------------------
    def verify(self, server_round: int, reply: TrainReply) -> RoundCommitment:
        """Re-derive the commitment from what was sent and check the hospital's signature over it."""
        c = reply.commitment
        if not c:
            raise CommitmentRejected("reply carries no signed commitment")
        expected_address = self.hospitals.get(reply.hospital)
        if expected_address is None:
            raise CommitmentRejected(f"hospital {reply.hospital!r} is not registered for this study")
        commitment = RoundCommitment(
            study_id=from_hex(self.study_id), round=server_round,
            prev_global_hash=from_hex(self._prev_hash[server_round]),
            update_hash=reply.payload.digest(), sample_count=reply.num_examples,
            epsilon_micro=int(c["epsilon-micro"]),
        )
        if str(c.get("update-hash")) != to_hex(commitment.update_hash):
            raise CommitmentRejected("signed update hash does not match the update received")
        signer = recover_signer(self.domain, commitment, bytes.fromhex(str(c["signature"])[2:]))
        if signer != expected_address:
            raise CommitmentRejected(f"signature is by {signer}, not by the hospital's registered key {expected_address}")
        return commitment

    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> tuple[ArrayRecord | None, MetricRecord | None]:
        kept = []
        for reply in outcome.accepted:
            try:
                self.verify(server_round, reply)
                kept.append(reply)
            except (CommitmentRejected, KeyError, ValueError) as exc:
                outcome.reject(reply, reply.node_id, reply.hospital, "invalid", f"commitment rejected: {exc}")
        outcome.accepted = kept
        return self.inner.aggregate_outcome(server_round, outcome)

    # -- the on-chain record ----------------------------------------------------------
    def commit_round(self, server_round: int, manifest: dict[str, Any]) -> dict[str, Any]:
        """Journal the round durably, then submit it (and anything still pending) in order."""
        from ledger.journal import RoundRecord

        commitments, signatures = [], []
        for u in manifest["updates"]:
            c = u["commitment"]
            commitments.append(RoundCommitment(
                study_id=from_hex(self.study_id), round=server_round, prev_global_hash=from_hex(manifest["prev_hash"]),
                update_hash=from_hex(u["update_hash"]), sample_count=int(u["num_examples"]),
                epsilon_micro=int(c["epsilon-micro"])))
            signatures.append(bytes.fromhex(str(c["signature"])[2:]))
        record = RoundRecord(from_hex(self.study_id), server_round, from_hex(manifest["prev_hash"]),
                             from_hex(manifest["aggregate"]["hash"]), int(manifest["aggregate"]["total_weight"]),
                             tuple(commitments), tuple(signatures))
        self.journal.append(record)
        self.submitter.flush()
        done = self.journal.submitted().get(record.key)
        if done is None:
            raise RuntimeError(f"round {server_round} was journaled but not submitted")
        receipt = {"tx": done.get("tx_hash"), "block": done.get("block"), "gas_used": None}
        if receipt["tx"]:
            mined = self.client.w3.eth.get_transaction_receipt(receipt["tx"])
            receipt["gas_used"] = int(mined["gasUsed"])
        log.info("round %d recorded on-chain: tx %s block %s gas %s", server_round, receipt["tx"], receipt["block"], receipt["gas_used"])
        return receipt
