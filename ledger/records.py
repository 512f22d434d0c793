"""What the StudyLedger client returns: typed read models of studies, hospitals, rounds and their events.

Field for field the contract's views and logs (docs/LEDGER.md), hashes as
``bytes``, addresses checksummed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedledger.commitment import RoundCommitment

#: ``getHospital``'s status enum (``StudyLedger.HospitalStatus``), by value.
HOSPITAL_STATUS = ("none", "registered", "consented", "withdrawn")
MODE_SIGNED = 1  # RoundRecord.mode: every commitment verified on-chain (recordRound)
MODE_MERKLE = 2  # RoundRecord.mode: Merkle root of the commitments only (recordRoundMerkle)


@dataclass(frozen=True)
class RecordReceipt:
    tx_hash: str
    block: int
    gas_used: int


@dataclass(frozen=True)
class StudyInfo:
    study_id: bytes
    config_hash: bytes
    initial_model_hash: bytes
    context_hash: bytes
    code_version: str
    aggregator: str
    expiry: int
    last_round: int
    registered_at: int
    hospitals: tuple[str, ...]
    release_quorum: int  # distinct consented hospitals whose ModelRelease signatures a release needs


@dataclass(frozen=True)
class HospitalInfo:
    address: str
    budget_micro: int
    last_epsilon_micro: int
    last_round: int
    status: str  # none | registered | consented | withdrawn
    max_samples: int = 0  # registered cohort size (the consent's cap on sample counts); 0 before consent

    @property
    def consented(self) -> bool:
        return self.status == "consented"


@dataclass(frozen=True)
class _RoundFields:
    """What a round's view and its ``RoundRecorded`` event both carry."""

    round: int
    prev_global_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    commitments_hash: bytes
    participants: int


@dataclass(frozen=True)
class RoundInfo(_RoundFields):
    timestamp: int
    block_number: int
    mode: int


@dataclass(frozen=True)
class CommitmentEvent:
    hospital: str
    commitment: RoundCommitment
    signature: bytes
    log_index: int


@dataclass(frozen=True)
class RoundEvent(_RoundFields):
    study_id: bytes
    block: int
    tx_hash: str
    commitments: tuple[CommitmentEvent, ...] = field(default=())
    #: 1: per-hospital (commitments verified on-chain, listed in ``commitments``);
    #: 2: Merkle (``commitments_hash`` is the root, ``commitments`` is empty: the
    #: leaves are in the round manifest of the artifact store)
    mode: int = MODE_SIGNED
    max_epsilon_micro: int | None = None  # Merkle mode: the aggregator's claim, from the calldata

    @property
    def commitments_root(self) -> bytes | None:
        """The Merkle root of a mode-2 round (None for a per-hospital round)."""
        return self.commitments_hash if self.mode == MODE_MERKLE else None
