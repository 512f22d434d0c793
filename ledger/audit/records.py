"""Typed views of what the chain records about one study; the checks read only these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedledger.commitment import Domain, RoundCommitment, domain

ZERO32 = b"\x00" * 32


@dataclass(frozen=True)
class CommitmentView:
    hospital: str  # the signer the contract recovered (CommitmentRecorded.hospital)
    commitment: RoundCommitment
    signature: bytes
    log_index: int = 0


@dataclass
class RoundView:
    round: int
    prev_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    participants: int
    block: int
    timestamp: int
    commitments: list[CommitmentView]
    commitments_hash: bytes | None = None  # mode 2: the Merkle root of the commitments
    tx_hash: str = ""
    log_index: int = 0
    mode: int = 1  # 1: commitments on chain (recordRound); 2: Merkle root only (recordRoundMerkle)
    max_epsilon_micro: int | None = None  # mode 2: the aggregator's claim in the calldata
    leaves_loaded: bool = False  # mode 2: commitments were filled in from the manifest's leaves


@dataclass
class HospitalView:
    address: str
    budget_micro: int
    max_samples: int | None = None  # the cohort size registered with its consent (HospitalConsented)
    #: (block, log_index, kind) with kind in registered | consented | withdrawn, in chain order
    events: list[tuple[int, int, str]] = field(default_factory=list)

    def status_at(self, block: int, log_index: int) -> str:
        status = "none"
        cached = self.__dict__.get("_sorted")
        if cached is None or cached[0] != len(self.events):
            cached = (len(self.events), sorted(self.events))
            self.__dict__["_sorted"] = cached
        for b, li, kind in cached[1]:
            if (b, li) < (block, log_index):
                status = kind
        return status


@dataclass
class ChainView:
    """What the chain says about one study (no aggregator input)."""

    study_id: bytes
    chain_id: int
    contract: str
    initial_model_hash: bytes
    context_hash: bytes
    config_hash: bytes
    aggregator: str
    expiry: int
    last_round: int
    hospitals: dict[str, HospitalView]
    rounds: list[RoundView]
    released: dict[int, bytes] = field(default_factory=dict)
    release_signers: dict[int, tuple[str, ...]] = field(default_factory=dict)  # round -> ModelReleased.signers
    release_quorum: int = 0  # getStudy's releaseQuorum
    code_version: str = ""
    registered_at: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # address -> human name (from manifests)
    notices: list[str] = field(default_factory=list)  # events outside the normal flow
    head_block: int = 0
    queries: list[Any] = field(default_factory=list)  # statistics queries (ledger.audit.queries.QueryView)

    @property
    def domain(self) -> Domain:
        return domain(self.chain_id, self.contract)

    def label(self, address: str | None) -> str | None:
        if address is None:
            return None
        name = self.labels.get(address)
        return f"{name} ({address})" if name else address
