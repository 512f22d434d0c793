"""A hospital's signed round commitment: EIP-712 typed data (public format).

The hospital signs, the server forwards, the StudyLedger contract verifies the
signature on-chain, and the auditor re-verifies it off-chain with
:func:`recover_signer`. The type and domain below must match
``ledger/contracts/StudyLedger.sol`` exactly; tests/test_commitment.py pins
the digest with a fixed vector. Format (see docs/LEDGER.md)::

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
      name = "FedLedger", version = "1"
    RoundCommitmentV2(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,
                      bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,
                      bytes32 startModelHash)

Epsilon is fixed-point: ``epsilonMicro = round(epsilon * 1e6)`` as uint64.
``startModelHash``: :func:`fedledger.hashing.model_hash` of the plaintext model the hospital trained
from (a round's must be equal: the auditor checks, no key needed). The type name carries the version.

A signed commitment (:class:`SignedCommitment`) is one object from the
hospital to the chain: its JSON form (:meth:`SignedCommitment.to_json`) is the
``commitment`` record of the hospital's reply, kept as is in the round
manifest; :meth:`RoundCommitment.as_abi_tuple` is the contract's ``Commitment``
struct; :meth:`RoundCommitment.to_json` is the struct alone, as the journal
and a Merkle round's leaf entry hold it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from fedledger.hashing import as_bytes, to_hex

DOMAIN_NAME = "FedLedger"
DOMAIN_VERSION = "1"
PRIMARY_TYPE = "RoundCommitmentV2"
UINT64_MAX = 2**64 - 1

EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    PRIMARY_TYPE: [
        {"name": "studyId", "type": "bytes32"},
        {"name": "round", "type": "uint64"},
        {"name": "prevGlobalHash", "type": "bytes32"},
        {"name": "updateHash", "type": "bytes32"},
        {"name": "sampleCount", "type": "uint64"},
        {"name": "epsilonMicro", "type": "uint64"},
        {"name": "startModelHash", "type": "bytes32"},
    ],
}

ROUND_COMMITMENT_TYPE = (
    "RoundCommitmentV2(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,"
    "bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash)"
)


#: The contract's ``Commitment`` struct as web3 takes and returns it.
CommitmentTuple = tuple[bytes, int, bytes, bytes, int, int, bytes]


class CommitmentError(ValueError):
    """A commitment field or signature is malformed."""


def _bytes32(value: bytes | str, name: str) -> bytes:
    value = as_bytes(value)
    if len(value) != 32:
        raise CommitmentError(f"{name} must be 32 bytes, got {len(value)}")
    return value


def _uint64(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT64_MAX:
        raise CommitmentError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return value


def epsilon_to_micro(epsilon: float) -> int:
    """Fixed-point micro-epsilon as recorded on-chain: ``round(epsilon * 1e6)``.

    Python's ``round`` (half to even) is the reference rounding.
    """
    if not math.isfinite(epsilon) or epsilon < 0:
        raise CommitmentError(f"epsilon must be finite and >= 0, got {epsilon!r}")
    return _uint64(round(epsilon * 1_000_000), "epsilonMicro")


def micro_to_epsilon(epsilon_micro: int) -> float:
    return epsilon_micro / 1_000_000


@dataclass(frozen=True)
class Domain:
    """EIP-712 domain of one deployed StudyLedger."""

    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def domain(chain_id: int, contract_address: str) -> Domain:
    return Domain(chain_id=int(chain_id), verifying_contract=to_checksum_address(contract_address))


@dataclass(frozen=True)
class RoundCommitment:
    """The EIP-712 struct ``RoundCommitmentV2``, field for field (bytes32 as bytes)."""

    study_id: bytes
    round: int
    prev_global_hash: bytes
    update_hash: bytes
    sample_count: int
    epsilon_micro: int
    start_model_hash: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "study_id", _bytes32(self.study_id, "study_id"))
        object.__setattr__(self, "prev_global_hash", _bytes32(self.prev_global_hash, "prev_global_hash"))
        object.__setattr__(self, "update_hash", _bytes32(self.update_hash, "update_hash"))
        object.__setattr__(self, "start_model_hash", _bytes32(self.start_model_hash, "start_model_hash"))
        _uint64(self.round, "round")
        _uint64(self.sample_count, "sample_count")
        _uint64(self.epsilon_micro, "epsilon_micro")

    def as_message(self) -> dict[str, Any]:
        """EIP-712 message dict (camelCase field names)."""
        return {
            "studyId": self.study_id,
            "round": self.round,
            "prevGlobalHash": self.prev_global_hash,
            "updateHash": self.update_hash,
            "sampleCount": self.sample_count,
            "epsilonMicro": self.epsilon_micro,
            "startModelHash": self.start_model_hash,
        }

    def as_abi_tuple(self) -> CommitmentTuple:
        """ABI tuple for the contract's ``Commitment`` struct."""
        return (
            self.study_id,
            self.round,
            self.prev_global_hash,
            self.update_hash,
            self.sample_count,
            self.epsilon_micro,
            self.start_model_hash,
        )

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> RoundCommitment:
        """Inverse of :meth:`as_abi_tuple` (a decoded calldata struct)."""
        return cls(*t)

    def to_json(self) -> dict[str, Any]:
        """The EIP-712 message with its bytes32 fields as 0x-hex (the journal's and a Merkle leaf's form)."""
        return {k: to_hex(v) if isinstance(v, bytes) else v for k, v in self.as_message().items()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RoundCommitment:
        return cls(
            study_id=d["studyId"],
            round=int(d["round"]),
            prev_global_hash=d["prevGlobalHash"],
            update_hash=d["updateHash"],
            sample_count=int(d["sampleCount"]),
            epsilon_micro=int(d["epsilonMicro"]),
            start_model_hash=d["startModelHash"],
        )


def typed_data(dom: Domain, commitment: RoundCommitment) -> dict[str, Any]:
    """The full EIP-712 typed-data document (what a wallet would show)."""
    return {
        "types": EIP712_TYPES,
        "primaryType": PRIMARY_TYPE,
        "domain": dom.as_dict(),
        "message": commitment.as_message(),
    }


def _signable(dom: Domain, commitment: RoundCommitment) -> SignableMessage:
    return encode_typed_data(full_message=typed_data(dom, commitment))


DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
_DOMAIN_TYPEHASH = keccak(text=DOMAIN_TYPE)
_COMMITMENT_TYPEHASH = keccak(text=ROUND_COMMITMENT_TYPE)


@lru_cache(maxsize=64)
def domain_separator(dom: Domain) -> bytes:
    """EIP-712 ``hashStruct(EIP712Domain)``, from the layout in docs/HASHES.md (one per deployed contract)."""
    return keccak(
        _DOMAIN_TYPEHASH
        + keccak(text=dom.name)
        + keccak(text=dom.version)
        + dom.chain_id.to_bytes(32, "big")
        + bytes(12)
        + as_bytes(dom.verifying_contract)
    )


def commitment_digest(dom: Domain, commitment: RoundCommitment) -> bytes:
    """The 32-byte EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct)``.

    Written with keccak alone because an auditor re-derives one per commitment
    and eth_account's generic typed-data encoder is several times slower; the
    tests pin it to eth_account's encoding, the contract's and fixed vectors.
    """
    c = commitment
    struct = keccak(
        _COMMITMENT_TYPEHASH
        + c.study_id
        + c.round.to_bytes(32, "big")
        + c.prev_global_hash
        + c.update_hash
        + c.sample_count.to_bytes(32, "big")
        + c.epsilon_micro.to_bytes(32, "big")
        + c.start_model_hash
    )
    return keccak(b"\x19\x01" + domain_separator(dom) + struct)


def sign_commitment(
    private_key_or_account: LocalAccount | bytes | str, dom: Domain, commitment: RoundCommitment
) -> bytes:
    """65-byte signature ``r || s || v`` (v in {27, 28}) as the contract expects."""
    if isinstance(private_key_or_account, LocalAccount):
        acct = private_key_or_account
    else:
        acct = Account.from_key(private_key_or_account)
    signed = acct.sign_message(_signable(dom, commitment))
    return bytes(signed.signature)


def recover_signer(dom: Domain, commitment: RoundCommitment, signature: bytes | str) -> str:
    """Checksum address that signed ``commitment`` under ``dom``.

    Rejects malformed and high-s (malleable) signatures, as OpenZeppelin's
    ECDSA does on-chain.
    """
    return recover_typed_signer(_signable(dom, commitment), signature)


def recover_typed_signer(message: SignableMessage, signature: bytes | str) -> str:
    """Checksum address that signed an EIP-712 message (any of this domain's types), refusing malformed and
    high-s (malleable) signatures as OpenZeppelin's ECDSA does on-chain."""
    signature = as_bytes(signature)
    if len(signature) != 65:
        raise CommitmentError(f"signature must be 65 bytes, got {len(signature)}")
    s = int.from_bytes(signature[32:64], "big")
    if s > 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0:
        raise CommitmentError("signature has a high s value (malleable)")
    try:
        return to_checksum_address(Account.recover_message(message, signature=signature))
    except Exception as exc:  # eth_keys raises several types for bad signatures
        raise CommitmentError(f"invalid signature: {exc}") from exc


_RECORD_KEYS = ("address", "update-hash", "epsilon-micro", "start-model-hash", "signature")


@dataclass(frozen=True)
class SignedCommitment:
    """A hospital's commitment with its signature: the one object from the hospital to the chain.

    ``signer`` is the address the hospital claims to sign with; who really
    signed is :meth:`recover`'s answer, and readers check that against the
    registered address. ``hospital`` is the study's name for the hospital (a
    label of the record, not signed).
    """

    commitment: RoundCommitment
    signature: bytes
    signer: str
    hospital: str = ""

    def __post_init__(self) -> None:
        signature = as_bytes(self.signature)
        if len(signature) != 65:
            raise CommitmentError(f"signature must be 65 bytes, got {len(signature)}")
        object.__setattr__(self, "signature", signature)
        try:
            object.__setattr__(self, "signer", to_checksum_address(self.signer))
        except (TypeError, ValueError) as exc:
            raise CommitmentError(f"signer {self.signer!r} is not an address") from exc

    @classmethod
    def sign(
        cls, account: LocalAccount, dom: Domain, commitment: RoundCommitment, hospital: str = ""
    ) -> SignedCommitment:
        return cls(commitment, sign_commitment(account, dom, commitment), account.address, hospital)

    def recover(self, dom: Domain) -> str:
        """The address that really signed (raises :class:`CommitmentError` on a bad signature)."""
        return recover_signer(dom, self.commitment, self.signature)

    def digest(self, dom: Domain) -> bytes:
        return commitment_digest(dom, self.commitment)

    def as_abi_tuple(self) -> CommitmentTuple:
        return self.commitment.as_abi_tuple()

    def to_json(self) -> dict[str, str | int]:
        """The ``commitment`` record of a hospital's train reply, which the round manifest keeps for its update.

        Study id, round and previous hash are not in it: they are the round's
        (docs/HASHES.md section 5).
        """
        c = self.commitment
        return {
            "hospital": self.hospital,
            "address": self.signer,
            "update-hash": to_hex(c.update_hash),
            "sample-count": c.sample_count,
            "epsilon-micro": c.epsilon_micro,
            "start-model-hash": to_hex(c.start_model_hash),
            "signature": to_hex(self.signature),
        }

    @classmethod
    def from_json(
        cls,
        record: Mapping[str, Any],
        *,
        study_id: bytes | str,
        round: int,
        prev_global_hash: bytes | str,
        update_hash: bytes | str,
        sample_count: int,
    ) -> SignedCommitment:
        """Read a record back, bound to what the reader knows: the round it belongs to and the update it came with.

        The signed sample count is the update's (``sample_count``); the
        record's ``sample-count`` is informative. Raises
        :class:`CommitmentError` when a key is missing or malformed, or the
        record's update hash is not the update's.
        """
        missing = [k for k in _RECORD_KEYS if k not in record]
        if missing:
            raise CommitmentError(f"commitment record lacks {', '.join(repr(k) for k in missing)}")
        update_hash = _bytes32(update_hash, "update_hash")
        if str(record["update-hash"]) != to_hex(update_hash):
            raise CommitmentError("signed update hash does not match the update received")
        try:
            epsilon_micro = int(record["epsilon-micro"])
        except (TypeError, ValueError) as exc:
            raise CommitmentError(f"epsilon-micro is not an integer: {exc}") from exc
        try:
            start = _bytes32(str(record["start-model-hash"]), "start-model-hash")
        except ValueError as exc:
            raise CommitmentError(f"start-model-hash is not a 32-byte hex hash: {exc}") from exc
        commitment = RoundCommitment(
            study_id=_bytes32(study_id, "study_id"),
            round=round,
            prev_global_hash=_bytes32(prev_global_hash, "prev_global_hash"),
            update_hash=update_hash,
            sample_count=sample_count,
            epsilon_micro=epsilon_micro,
            start_model_hash=start,
        )
        try:
            signature = as_bytes(str(record["signature"]))
        except ValueError as exc:
            raise CommitmentError(f"signature is not hex: {exc}") from exc
        return cls(commitment, signature, str(record["address"]), str(record.get("hospital", "")))


def commitments_hash(digests: Sequence[bytes]) -> bytes:
    """The contract's running hash of EIP-712 digests: h_i = keccak256(h_{i-1} || d_i), h_0 = 0."""
    acc = b"\x00" * 32
    for d in digests:
        acc = keccak(acc + bytes(d))
    return acc
