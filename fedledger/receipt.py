"""A hospital's signed receipt of a recorded round (public format, docs/HASHES.md section 7).

A coordinator holding the chain's keys can rebuild a local chain (same
deployer nonce, same contract address, so every hospital's EIP-712 commitment
stays valid) with rounds dropped or budgets changed. A receipt is the
hospital's own signed statement of what it read: at block ``blockNumber``,
whose hash was ``blockHash``, the contract recorded round ``round`` of the
study with the round record hashing to ``roundRecordHash``. A rebuilt chain
contradicts it (another block hash at that height, another record, no
record), and the hospital and the auditor both say so.

EIP-712, in the commitment's domain (fedledger/commitment.py: name
"FedLedger", version "1", the chain id, the StudyLedger address)::

    RoundReceipt(bytes32 studyId,uint64 round,uint64 blockNumber,bytes32 blockHash,bytes32 roundRecordHash)

The round record hash (:func:`round_record_hash`) is ``keccak256`` of the ABI
encoding of the study id, the round, ``getRound``'s eight return values in
order and the hash of the transaction that emitted the round's
``RoundRecorded`` log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from fedledger.commitment import EIP712_TYPES, Domain, domain, domain_separator
from fedledger.hashing import as_bytes, to_hex

FORMAT = "fedledger-round-receipt-v1"
PRIMARY_TYPE = "RoundReceipt"
ROUND_RECEIPT_TYPE = (
    "RoundReceipt(bytes32 studyId,uint64 round,uint64 blockNumber,bytes32 blockHash,bytes32 roundRecordHash)"
)
RECEIPT_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": EIP712_TYPES["EIP712Domain"],
    PRIMARY_TYPE: [
        {"name": "studyId", "type": "bytes32"},
        {"name": "round", "type": "uint64"},
        {"name": "blockNumber", "type": "uint64"},
        {"name": "blockHash", "type": "bytes32"},
        {"name": "roundRecordHash", "type": "bytes32"},
    ],
}
_RECEIPT_TYPEHASH = keccak(text=ROUND_RECEIPT_TYPE)
#: ABI types of the round record hash's preimage: study id, round, getRound's 8 outputs, the tx hash.
RECORD_ABI = (
    "bytes32",  # studyId
    "uint64",  # round
    "bytes32",  # prevGlobalHash
    "bytes32",  # aggregateHash
    "uint64",  # totalSamples
    "bytes32",  # commitmentsHash
    "uint32",  # participants
    "uint64",  # timestamp
    "uint64",  # blockNumber
    "uint8",  # mode
    "bytes32",  # transaction hash of the RoundRecorded log
)
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


class ReceiptError(ValueError):
    """A receipt is malformed or its signature does not verify."""


def _b32(value: bytes | str, name: str) -> bytes:
    try:
        out = as_bytes(value)
    except (TypeError, ValueError) as exc:
        raise ReceiptError(f"{name} is not hex: {exc}") from exc
    if len(out) != 32:
        raise ReceiptError(f"{name} must be 32 bytes, got {len(out)}")
    return out


@dataclass(frozen=True)
class RoundRecord:
    """One recorded round as the chain returns it: ``getRound``'s outputs plus the recording transaction."""

    study_id: bytes
    round: int
    prev_global_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    commitments_hash: bytes
    participants: int
    timestamp: int
    block_number: int
    mode: int
    tx_hash: bytes

    @classmethod
    def from_get_round(
        cls, study_id: bytes | str, round: int, outputs: Sequence[Any], tx_hash: bytes | str
    ) -> RoundRecord:
        """``getRound(studyId, round)``'s eight outputs, in the contract's order, and the log's tx hash."""
        if len(outputs) != 8:
            raise ReceiptError(f"getRound returns 8 values, got {len(outputs)}")
        prev, agg, total, commits, parts, ts, block, mode = outputs
        return cls(
            _b32(study_id, "study_id"),
            int(round),
            _b32(prev, "prevGlobalHash"),
            _b32(agg, "aggregateHash"),
            int(total),
            _b32(commits, "commitmentsHash"),
            int(parts),
            int(ts),
            int(block),
            int(mode),
            _b32(tx_hash, "tx_hash"),
        )

    def hash(self) -> bytes:
        """The round record hash a receipt signs (docs/HASHES.md section 7)."""
        values = [getattr(self, f.name) for f in fields(self)]  # field order is the layout's (RECORD_ABI)
        return keccak(encode(list(RECORD_ABI), values))


@dataclass(frozen=True)
class RoundReceipt:
    """The EIP-712 struct ``RoundReceipt``, field for field."""

    study_id: bytes
    round: int
    block_number: int
    block_hash: bytes
    round_record_hash: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "study_id", _b32(self.study_id, "studyId"))
        object.__setattr__(self, "block_hash", _b32(self.block_hash, "blockHash"))
        object.__setattr__(self, "round_record_hash", _b32(self.round_record_hash, "roundRecordHash"))
        for name in ("round", "block_number"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise ReceiptError(f"{name} must be an int in [0, 2**64), got {v!r}")

    def as_message(self) -> dict[str, Any]:
        return {
            "studyId": self.study_id,
            "round": self.round,
            "blockNumber": self.block_number,
            "blockHash": self.block_hash,
            "roundRecordHash": self.round_record_hash,
        }

    def digest(self, dom: Domain) -> bytes:
        """``keccak256(0x1901 || domainSeparator || hashStruct(RoundReceipt))``."""
        struct = keccak(
            _RECEIPT_TYPEHASH
            + self.study_id
            + self.round.to_bytes(32, "big")
            + self.block_number.to_bytes(32, "big")
            + self.block_hash
            + self.round_record_hash
        )
        return keccak(b"\x19\x01" + domain_separator(dom) + struct)

    def typed_data(self, dom: Domain) -> dict[str, Any]:
        """The full EIP-712 document (what a wallet would show)."""
        return {
            "types": RECEIPT_TYPES,
            "primaryType": PRIMARY_TYPE,
            "domain": dom.as_dict(),
            "message": self.as_message(),
        }


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt, the chain and contract it is about, who signed it: one line of a hospital's receipts file."""

    receipt: RoundReceipt
    chain_id: int
    contract: str
    signer: str
    signature: bytes
    hospital: str = ""  # the study's name for the hospital (a label, not signed)

    @property
    def domain(self) -> Domain:
        return domain(self.chain_id, self.contract)

    @classmethod
    def sign(
        cls, account: LocalAccount, chain_id: int, contract: str, receipt: RoundReceipt, hospital: str = ""
    ) -> SignedReceipt:
        dom = domain(chain_id, contract)
        signed = account.sign_message(encode_typed_data(full_message=receipt.typed_data(dom)))
        return cls(receipt, int(chain_id), dom.verifying_contract, account.address, bytes(signed.signature), hospital)

    def recover(self) -> str:
        """The address that really signed; raises :class:`ReceiptError` on a malformed or high-s signature."""
        sig = self.signature
        if len(sig) != 65:
            raise ReceiptError(f"signature must be 65 bytes, got {len(sig)}")
        if int.from_bytes(sig[32:64], "big") > SECP256K1_HALF_N:
            raise ReceiptError("signature has a high s value (malleable)")
        try:
            signable = encode_typed_data(full_message=self.receipt.typed_data(self.domain))
            return to_checksum_address(Account.recover_message(signable, signature=sig))
        except Exception as exc:  # eth_keys raises several types for bad signatures
            raise ReceiptError(f"invalid signature: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        r = self.receipt
        return {
            "format": FORMAT,
            "hospital": self.hospital,
            "signer": self.signer,
            "chainId": self.chain_id,
            "contract": self.contract,
            "studyId": to_hex(r.study_id),
            "round": r.round,
            "blockNumber": r.block_number,
            "blockHash": to_hex(r.block_hash),
            "roundRecordHash": to_hex(r.round_record_hash),
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SignedReceipt:
        if d.get("format") != FORMAT:
            raise ReceiptError(f"not a {FORMAT} receipt (format {d.get('format')!r})")
        missing = [k for k in ("signer", "chainId", "contract", "studyId", "round", "blockNumber") if k not in d]
        missing += [k for k in ("blockHash", "roundRecordHash", "signature") if k not in d]
        if missing:
            raise ReceiptError(f"receipt lacks {', '.join(missing)}")
        try:
            receipt = RoundReceipt(
                d["studyId"], int(d["round"]), int(d["blockNumber"]), d["blockHash"], d["roundRecordHash"]
            )
            return cls(
                receipt,
                int(d["chainId"]),
                to_checksum_address(str(d["contract"])),
                to_checksum_address(str(d["signer"])),
                as_bytes(str(d["signature"])),
                str(d.get("hospital", "")),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ReceiptError):
                raise
            raise ReceiptError(f"malformed receipt: {exc}") from exc


def read_receipts(path: Path) -> tuple[list[SignedReceipt], list[str]]:
    """A receipts file (JSON lines, in the order written): its receipts, and a problem for each other line."""
    receipts: list[SignedReceipt] = []
    problems: list[str] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            receipts.append(SignedReceipt.from_json(json.loads(line)))
        except ValueError as exc:  # ReceiptError and json's errors are ValueErrors
            problems.append(f"{path} line {n} is not a receipt ({exc})")
    return receipts, problems
