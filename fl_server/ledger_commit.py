"""Ledger commit: wraps a strategy so every round is recorded on-chain with the hospitals' signatures.

Before aggregation it drops replies whose commitment does not verify
off-chain (wrong signer, wrong round/study/prev hash, update hash or sample
count not matching what was sent), so one bad reply cannot make the whole
on-chain record revert. After the round's artifacts are durable,
``commit_round`` journals the record and submits it; if the chain is down the
record waits in the journal and the study stops with a clear error once the
configured limit passes. No round is ever silently left unrecorded.

Two ledger modes (``ledger.mode``): ``per_hospital`` records every commitment
and signature on chain (``recordRound``; the contract enforces consent and
budgets); ``merkle`` records only the Merkle root of the accepted commitments
(``recordRoundMerkle``; flat gas) and writes each hospital's leaf and proof
next to its signed commitment in the round manifest; ``auto`` uses Merkle
mode when more than ``merkle_threshold`` hospitals contributed. In Merkle
mode the contract cannot enforce consent or budgets, so the server checks
them off-chain before aggregating (and the auditor checks them afterwards).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedledger.commitment import CommitmentError, RoundCommitment, SignedCommitment
from fedledger.hashing import from_hex, to_hex
from fedledger.merkle import MerkleTree, commitment_leaf
from fedledger.round_task import RoundTask
from fl_server.artifact_store import ArtifactStore
from fl_server.strategy import RoundStrategy, StrategyWrapper, TrainResult
from fl_server.validation import TrainReply, ValidationOutcome
from ledger.accounts import load_eth_account
from ledger.chains import load_aggregator_account
from ledger.client import LedgerClient
from ledger.journal import Journal, RecordSubmitter, RoundRecord
from ledger.local_registry import lookup
from ledger.records import MODE_MERKLE
from ledger.rpc import http_w3

log = logging.getLogger("fedledger.server")


SAMPLE_COUNT_ABOVE_CAP = "sample-count-above-cap"  # reason code: more samples than the registered cohort size


class CommitmentRejected(ValueError):
    """A reply's signed commitment does not match what the hospital sent."""


def aggregator_client(chain_spec: Mapping[str, Any]) -> LedgerClient:
    """The aggregator's client of the study's chain (an eth_tester chain is the launcher's, found in-process).

    The key comes from a file, an environment variable or a keystore; it is never logged.
    """
    if chain_spec.get("aggregator_key"):
        account = load_eth_account(chain_spec["aggregator_key"])
    else:
        account = load_aggregator_account(
            chain_spec.get("key_env"), Path(chain_spec["keystore"]) if chain_spec.get("keystore") else None
        )
    local = lookup(chain_spec["contract"]) if chain_spec["backend"] == "eth_tester" else None
    w3 = local.w3 if local is not None else http_w3(chain_spec["rpc_url"])
    return LedgerClient.at(w3, chain_spec["contract"], account, deploy_block=int(chain_spec.get("deploy_block", 0)))


class LedgerCommit(StrategyWrapper):
    """Adds signed, on-chain round records to any strategy."""

    MODES = ("per_hospital", "merkle", "auto")

    def __init__(
        self,
        inner: RoundStrategy,
        client: Any,
        study_id: str,
        hospitals: dict[str, str],
        run_dir: Path,
        record_timeout_s: float,
        mode: str = "per_hospital",
        merkle_threshold: int = 32,
    ) -> None:
        super().__init__(inner)
        if mode not in self.MODES:
            raise ValueError(f"ledger.mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode
        self.merkle_threshold = int(merkle_threshold)
        self.run_dir = Path(run_dir)
        self._last_eps: dict[str, int] = {}  # address -> last epsilon this server accepted (Merkle rounds)
        self._caps: dict[str, int] = {}  # address -> cohort size registered at consent (fixed from then on)
        self.client = client
        self.study_id = study_id
        self.hospitals = {h: to_checksum_address(a) for h, a in hospitals.items()}  # hospital id -> registered address
        self.domain = client.domain()
        self.journal = Journal(run_dir)
        self.submitter = RecordSubmitter(client=client, journal=self.journal, limit_s=record_timeout_s)
        self._prev_hash: dict[int, str] = {}

    @classmethod
    def from_spec(cls, inner: RoundStrategy, spec: dict[str, Any]) -> LedgerCommit:
        """Connect to the study's chain as the aggregator; the mode is the study config's ``ledger.mode``."""
        chain_spec = spec["chain"]
        led = (spec.get("config") or {}).get("ledger") or {}
        threshold = led.get("merkle_threshold")
        return cls(
            inner,
            aggregator_client(chain_spec),
            spec["study_id"],
            {h["id"]: h["address"] for h in spec["hospitals"]},
            Path(spec["run_dir"]),
            float(chain_spec.get("record_timeout_s", 120)),
            mode=str(led.get("mode") or "per_hospital"),
            merkle_threshold=int(threshold) if threshold is not None else 32,
        )

    def uses_merkle(self, n_hospitals: int) -> bool:
        """Merkle mode for a round of ``n_hospitals`` accepted updates?"""
        return self.mode == "merkle" or (self.mode == "auto" and n_hospitals > self.merkle_threshold)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._prev_hash[server_round] = RoundTask.from_wire(config).prev_hash
        return self.inner.configure_train(server_round, arrays, config, grid)

    def summary(self) -> None:
        log.info(
            "LedgerCommit: contract %s, study %s, mode %s (Merkle threshold %d)",
            self.client.address,
            self.study_id,
            self.mode,
            self.merkle_threshold,
        )

    # -- commitments ----------------------------------------------------------------
    def verify(self, server_round: int, reply: TrainReply) -> SignedCommitment:
        """Bind the reply's signed record to what was sent and received, and check who signed it."""
        if not reply.commitment:
            raise CommitmentRejected("reply carries no signed commitment")
        expected_address = self.hospitals.get(reply.hospital)
        if expected_address is None:
            raise CommitmentRejected(f"hospital {reply.hospital!r} is not registered for this study")
        signed = SignedCommitment.from_json(
            reply.commitment,
            study_id=self.study_id,
            round=server_round,
            prev_global_hash=self._prev_hash[server_round],
            update_hash=reply.update_hash,
            sample_count=reply.num_examples,
        )
        signer = signed.recover(self.domain)
        if signer != expected_address:
            raise CommitmentRejected(
                f"signature is by {signer}, not by the hospital's registered key {expected_address}"
            )
        return signed

    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        kept = []
        verified = []
        for reply in outcome.accepted:
            try:
                verified.append((reply, self.verify(server_round, reply)))
            except (CommitmentRejected, CommitmentError, KeyError) as exc:
                outcome.reject(reply.node_id, reply.hospital, "invalid", f"commitment rejected: {exc}")
        merkle = self.uses_merkle(len(verified))
        seen: set[str] = set()
        for reply, signed in verified:
            try:
                self._check_cap(reply.hospital, reply.num_examples)
                if merkle:  # the contract will not check these in a Merkle round: do it here
                    self._check_policy(reply.hospital, signed.commitment, seen)
                kept.append(reply)
            except CommitmentRejected as exc:
                outcome.reject(reply.node_id, reply.hospital, "invalid", f"commitment rejected: {exc}")
        outcome.accepted = kept
        return self.inner.aggregate_outcome(server_round, outcome)

    def _check_cap(self, hospital: str, num_examples: int) -> None:
        """A hospital cannot weigh more than the cohort size it registered when it consented: the contract
        refuses such a commitment (``SampleCountAboveCap``), so drop the reply before it takes over the
        average and the honest hospitals' round is still recorded."""
        address = self.hospitals[hospital]
        cap = self._caps.get(address)
        if cap is None:
            info = self.client.read_hospital(from_hex(self.study_id), address)
            if info.status != "consented":  # recordRound would refuse it whatever its count
                raise CommitmentRejected(f"{hospital} is '{info.status}' on chain, not consenting")
            cap = self._caps[address] = info.max_samples
        if num_examples > cap:
            raise CommitmentRejected(
                f"{SAMPLE_COUNT_ABOVE_CAP}: {hospital} claims {num_examples} samples, "
                f"its registered cohort size is {cap}"
            )

    def _check_policy(self, hospital: str, c: RoundCommitment, seen: set[str]) -> None:
        """What ``recordRound`` enforces per hospital: consenting, once per round, epsilon within budget and
        not below the last value (the chain's, or the last one this server accepted in a Merkle round)."""
        address = self.hospitals[hospital]
        if address in seen:
            raise CommitmentRejected(f"{hospital} already contributed to round {c.round}")
        info = self.client.read_hospital(from_hex(self.study_id), address)
        if info.status != "consented":
            raise CommitmentRejected(f"{hospital} is '{info.status}' on chain, not consenting")
        if c.epsilon_micro > info.budget_micro:
            raise CommitmentRejected(
                f"{hospital} epsilon {c.epsilon_micro} micro is over its budget {info.budget_micro} micro"
            )
        last = max(info.last_epsilon_micro, self._last_eps.get(address, 0))
        if c.epsilon_micro < last:
            raise CommitmentRejected(f"{hospital} epsilon {c.epsilon_micro} micro is below its last {last} micro")
        seen.add(address)

    # -- the on-chain record ----------------------------------------------------------
    def commit_round(self, server_round: int, manifest: dict[str, Any]) -> dict[str, Any]:
        """Journal the round durably, then submit it (and anything still pending) in order."""
        signed = [
            SignedCommitment.from_json(
                u["commitment"],
                study_id=self.study_id,
                round=server_round,
                prev_global_hash=manifest["prev_hash"],
                update_hash=u["update_hash"],
                sample_count=int(u["num_examples"]),
            )
            for u in manifest["updates"]
        ]
        if self.uses_merkle(len(signed)):
            record = self._merkle_record(server_round, manifest, signed)
        else:
            record = RoundRecord(
                from_hex(self.study_id),
                server_round,
                from_hex(manifest["prev_hash"]),
                from_hex(manifest["aggregate"]["hash"]),
                int(manifest["aggregate"]["total_weight"]),
                tuple(s.commitment for s in signed),
                tuple(s.signature for s in signed),
            )
        self.submitter.submit_new(record)
        mined = self.submitter.receipts.pop(record.key, None)
        if mined is not None:  # submitted just now: its own receipt says everything
            receipt = {"tx": mined.tx_hash, "block": mined.block, "gas_used": int(mined.gas_used)}
        else:  # found on chain from an earlier attempt (e.g. before a restart): the journal has it
            done = self.journal.submitted().get(record.key)
            if done is None:
                raise RuntimeError(f"round {server_round} was journaled but not submitted")
            receipt = {"tx": done.get("tx_hash"), "block": done.get("block"), "gas_used": None}
            if receipt["tx"]:
                receipt["gas_used"] = int(self.client.w3.eth.get_transaction_receipt(receipt["tx"])["gasUsed"])
        receipt["mode"] = "merkle" if record.mode == MODE_MERKLE else "per_hospital"
        log.debug(  # the journal logs the same transaction at INFO, and the round table shows it
            "round %d recorded on-chain (%s): tx %s block %s gas %s",
            server_round,
            receipt["mode"],
            receipt["tx"],
            receipt["block"],
            receipt["gas_used"],
        )
        return receipt

    def _merkle_record(
        self, server_round: int, manifest: dict[str, Any], signed: list[SignedCommitment]
    ) -> RoundRecord:
        """Build the round's Merkle tree, put each leaf and proof into the manifest (rewritten durably
        before anything is journaled or sent), and return the mode-2 record of the root."""
        addresses = [self.hospitals[u["hospital"]] for u in manifest["updates"]]
        leaves = [commitment_leaf(a, s.digest(self.domain)) for a, s in zip(addresses, signed)]
        tree = MerkleTree(leaves)
        max_eps = max(s.commitment.epsilon_micro for s in signed)
        for u, a, s, leaf in zip(manifest["updates"], addresses, signed, leaves):
            u["merkle"] = {
                "address": a,
                "commitment": s.commitment.to_json(),
                "leaf": to_hex(leaf),
                "proof": [to_hex(p) for p in tree.proof(leaf)],
            }
            self._last_eps[a] = s.commitment.epsilon_micro
        manifest["ledger"] = {
            "mode": "merkle",
            "commitments_root": to_hex(tree.root),
            "participants": len(signed),
            "max_epsilon_micro": max_eps,
        }
        ArtifactStore(self.run_dir).write_round(manifest)
        return RoundRecord(
            from_hex(self.study_id),
            server_round,
            from_hex(manifest["prev_hash"]),
            from_hex(manifest["aggregate"]["hash"]),
            int(manifest["aggregate"]["total_weight"]),
            (),
            (),
            mode=MODE_MERKLE,
            commitments_root=tree.root,
            participants=len(signed),
            max_epsilon_micro=max_eps,
        )
