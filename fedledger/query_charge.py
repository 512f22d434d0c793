"""A hospital's signed epsilon charge for a statistics query: EIP-712 ``QueryCharge`` (public format).

Each hospital that answers a query signs what it charged to its privacy
budget for it, and its composed total after it (training and queries,
fedledger.dp.composition), so the chain's query record carries every
hospital's own word on its spend, as rounds carry signed commitments. Same
domain as ``RoundCommitment`` (:mod:`fedledger.commitment`)::

    QueryCharge(bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro)

Epsilons are fixed-point micro-epsilon (``round(epsilon * 1e6)``). Type hash
and a fixed vector: docs/HASHES.md section 9.

The requester signs the query it asks, with its purpose, so that the chain's
record names who asked (the contract recovers the requester from this
signature; an aggregator cannot attribute a query to someone else)::

    QueryRequest(bytes32 studyId,bytes32 queryHash,string purpose)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from fedledger.commitment import EIP712_TYPES, CommitmentError, Domain, domain_separator, recover_typed_signer
from fedledger.hashing import as_bytes

QUERY_CHARGE_TYPE = "QueryCharge(bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro)"
QUERY_CHARGE_TYPEHASH = keccak(text=QUERY_CHARGE_TYPE)
CHARGE_PRIMARY_TYPE = "QueryCharge"
CHARGE_FIELDS = (
    ("studyId", "bytes32"),
    ("queryHash", "bytes32"),
    ("epsilonMicro", "uint64"),
    ("totalEpsilonMicro", "uint64"),
)
CHARGE_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": EIP712_TYPES["EIP712Domain"],
    CHARGE_PRIMARY_TYPE: [{"name": name, "type": kind} for name, kind in CHARGE_FIELDS],
}


@dataclass(frozen=True)
class EpsilonCharge:
    """The EIP-712 struct ``QueryCharge``, field for field (the contract's ``QueryCharge`` tuple)."""

    study_id: bytes
    query_hash: bytes
    epsilon_micro: int
    total_epsilon_micro: int

    def __post_init__(self) -> None:
        for name in ("study_id", "query_hash"):
            value = as_bytes(getattr(self, name))
            if len(value) != 32:
                raise CommitmentError(f"{name} must be 32 bytes, got {len(value)}")
            object.__setattr__(self, name, value)
        for name in ("epsilon_micro", "total_epsilon_micro"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise CommitmentError(f"{name} must be a uint64, got {v!r}")
        if self.epsilon_micro > self.total_epsilon_micro:
            raise CommitmentError("a query's charge cannot exceed the hospital's total after it")

    def as_abi_tuple(self) -> tuple[bytes, bytes, int, int]:
        return (self.study_id, self.query_hash, self.epsilon_micro, self.total_epsilon_micro)


QUERY_REQUEST_TYPE = "QueryRequest(bytes32 studyId,bytes32 queryHash,string purpose)"
QUERY_REQUEST_TYPEHASH = keccak(text=QUERY_REQUEST_TYPE)
REQUEST_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": EIP712_TYPES["EIP712Domain"],
    "QueryRequest": [
        {"name": "studyId", "type": "bytes32"},
        {"name": "queryHash", "type": "bytes32"},
        {"name": "purpose", "type": "string"},
    ],
}


def _request_signable(dom: Domain, study_id: bytes, query_hash: bytes, purpose: str) -> SignableMessage:
    message = {"studyId": as_bytes(study_id), "queryHash": as_bytes(query_hash), "purpose": purpose}
    doc = {"types": REQUEST_TYPES, "primaryType": "QueryRequest", "domain": dom.as_dict(), "message": message}
    return encode_typed_data(full_message=doc)


def sign_request(account: LocalAccount, dom: Domain, study_id: bytes, query_hash: bytes, purpose: str) -> bytes:
    """The requester's 65-byte signature over the query it asks and why."""
    return bytes(account.sign_message(_request_signable(dom, study_id, query_hash, purpose)).signature)


def recover_requester(dom: Domain, study_id: bytes, query_hash: bytes, purpose: str, signature: bytes | str) -> str:
    """Checksum address that requested the query (malformed and high-s signatures refused)."""
    return recover_typed_signer(_request_signable(dom, study_id, query_hash, purpose), signature)


def charge_typed_data(dom: Domain, charge: EpsilonCharge) -> dict[str, Any]:
    """The full EIP-712 typed-data document (what a wallet would show)."""
    return {
        "types": CHARGE_TYPES,
        "primaryType": CHARGE_PRIMARY_TYPE,
        "domain": dom.as_dict(),
        "message": {
            "studyId": charge.study_id,
            "queryHash": charge.query_hash,
            "epsilonMicro": charge.epsilon_micro,
            "totalEpsilonMicro": charge.total_epsilon_micro,
        },
    }


def charge_digest(dom: Domain, charge: EpsilonCharge) -> bytes:
    """``keccak256(0x1901 || domainSeparator || hashStruct(QueryCharge))``: what the contract recovers from."""
    struct = keccak(
        QUERY_CHARGE_TYPEHASH
        + charge.study_id
        + charge.query_hash
        + charge.epsilon_micro.to_bytes(32, "big")
        + charge.total_epsilon_micro.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + domain_separator(dom) + struct)


def _signable(dom: Domain, charge: EpsilonCharge) -> SignableMessage:
    return encode_typed_data(full_message=charge_typed_data(dom, charge))


def sign_charge(account: LocalAccount, dom: Domain, charge: EpsilonCharge) -> bytes:
    """65-byte signature ``r || s || v`` (v in {27, 28}) as the contract expects."""
    return bytes(account.sign_message(_signable(dom, charge)).signature)


def recover_charge_signer(dom: Domain, charge: EpsilonCharge, signature: bytes | str) -> str:
    """Checksum address that signed ``charge``; refuses malformed and high-s signatures as the contract does."""
    return recover_typed_signer(_signable(dom, charge), signature)


__all__ = [
    "QUERY_CHARGE_TYPE",
    "QUERY_CHARGE_TYPEHASH",
    "QUERY_REQUEST_TYPE",
    "QUERY_REQUEST_TYPEHASH",
    "EpsilonCharge",
    "charge_digest",
    "charge_typed_data",
    "recover_charge_signer",
    "recover_requester",
    "sign_charge",
    "sign_request",
]
