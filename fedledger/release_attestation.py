"""A hospital's signed attestation of a released model: EIP-712 ``ModelRelease`` (public format).

A release counts on-chain only with these signatures from the study's
``releaseQuorum`` hospitals (``StudyLedger.releaseModel``): each hospital signs
the hash of the checkpoint it decrypted itself, so a coordinator cannot
release a model no quorum obtained. Same domain as ``RoundCommitment``
(:mod:`fedledger.commitment`); type, type hash and a fixed vector in
docs/HASHES.md::

    ModelRelease(bytes32 studyId,uint64 round,bytes32 modelHash)

A hospital's evaluation reply carries :meth:`ReleaseAttestation.to_wire`;
the releasing code collects those whose hash matches the checkpoint it
releases and passes their signatures to ``releaseModel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from fedledger.commitment import EIP712_TYPES, CommitmentError, Domain, domain_separator, recover_typed_signer
from fedledger.hashing import as_bytes, to_hex

MODEL_RELEASE_TYPE = "ModelRelease(bytes32 studyId,uint64 round,bytes32 modelHash)"
MODEL_RELEASE_TYPEHASH = keccak(text=MODEL_RELEASE_TYPE)
RELEASE_PRIMARY_TYPE = "ModelRelease"
RELEASE_FIELDS = (("studyId", "bytes32"), ("round", "uint64"), ("modelHash", "bytes32"))
RELEASE_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": EIP712_TYPES["EIP712Domain"],
    RELEASE_PRIMARY_TYPE: [{"name": name, "type": kind} for name, kind in RELEASE_FIELDS],
}


@dataclass(frozen=True)
class ModelRelease:
    """The EIP-712 struct ``ModelRelease``, field for field (bytes32 as bytes)."""

    study_id: bytes
    round: int
    model_hash: bytes

    def __post_init__(self) -> None:
        for name in ("study_id", "model_hash"):
            value = as_bytes(getattr(self, name))
            if len(value) != 32:
                raise CommitmentError(f"{name} must be 32 bytes, got {len(value)}")
            object.__setattr__(self, name, value)
        if isinstance(self.round, bool) or not 0 <= int(self.round) < 2**64:
            raise CommitmentError(f"round must be a uint64, got {self.round!r}")


def release_typed_data(dom: Domain, release: ModelRelease) -> dict[str, Any]:
    """The full EIP-712 typed-data document (what a wallet would show)."""
    return {
        "types": RELEASE_TYPES,
        "primaryType": RELEASE_PRIMARY_TYPE,
        "domain": dom.as_dict(),
        "message": {"studyId": release.study_id, "round": release.round, "modelHash": release.model_hash},
    }


def release_digest(dom: Domain, release: ModelRelease) -> bytes:
    """``keccak256(0x1901 || domainSeparator || hashStruct(ModelRelease))``: what the contract recovers from."""
    struct = keccak(MODEL_RELEASE_TYPEHASH + release.study_id + release.round.to_bytes(32, "big") + release.model_hash)
    return keccak(b"\x19\x01" + domain_separator(dom) + struct)


def _signable(dom: Domain, release: ModelRelease) -> SignableMessage:
    return encode_typed_data(full_message=release_typed_data(dom, release))


def sign_release(account: LocalAccount, dom: Domain, release: ModelRelease) -> bytes:
    """65-byte signature ``r || s || v`` (v in {27, 28}) as the contract expects."""
    return bytes(account.sign_message(_signable(dom, release)).signature)


def recover_release_signer(dom: Domain, release: ModelRelease, signature: bytes | str) -> str:
    """Checksum address that signed ``release``; refuses malformed and high-s signatures as the contract does."""
    return recover_typed_signer(_signable(dom, release), signature)


@dataclass(frozen=True)
class ReleaseAttestation:
    """A hospital's signed ``ModelRelease``, as its evaluation reply carries it (info keys ``release-*``)."""

    model_hash: bytes
    signature: bytes
    signer: str

    @classmethod
    def sign(cls, account: LocalAccount, dom: Domain, release: ModelRelease) -> ReleaseAttestation:
        return cls(release.model_hash, sign_release(account, dom, release), account.address)

    def to_wire(self) -> dict[str, str]:
        return {
            "release-model-hash": to_hex(self.model_hash),
            "release-signature": to_hex(self.signature),
            "release-signer": to_checksum_address(self.signer),
        }

    @classmethod
    def from_wire(cls, info: Mapping[str, object]) -> ReleaseAttestation | None:
        """None when the reply carries no attestation; :class:`CommitmentError` when it is malformed."""
        if "release-signature" not in info:
            return None
        try:
            return cls(
                as_bytes(str(info["release-model-hash"])),
                as_bytes(str(info["release-signature"])),
                to_checksum_address(str(info["release-signer"])),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CommitmentError(f"malformed release attestation: {exc}") from exc


def recovered(dom: Domain, release: ModelRelease, signature: bytes | str) -> str | None:
    """The signer, or None when the signature does not verify (for readers that skip bad ones)."""
    try:
        return recover_release_signer(dom, release, signature)
    except CommitmentError:
        return None


__all__ = [
    "MODEL_RELEASE_TYPE",
    "MODEL_RELEASE_TYPEHASH",
    "ModelRelease",
    "ReleaseAttestation",
    "matching_signatures",
    "recover_release_signer",
    "recovered",
    "release_digest",
    "release_typed_data",
    "sign_release",
]


def matching_signatures(
    dom: Domain, release: ModelRelease, attestations: Mapping[str, Mapping[str, object]], registered: Mapping[str, str]
) -> tuple[list[bytes], dict[str, str]]:
    """The signatures, among the hospitals' attestations (by hospital id), that sign ``release`` by the
    hospital's registered address; and why each other one was left out (another model hash, another signer)."""
    signatures: list[bytes] = []
    left_out: dict[str, str] = {}
    for hospital, wire in sorted(attestations.items()):
        try:
            att = ReleaseAttestation.from_wire(wire)
        except CommitmentError as exc:
            left_out[hospital] = str(exc)
            continue
        if att is None:
            continue
        if att.model_hash != release.model_hash:
            left_out[hospital] = f"signed model hash {to_hex(att.model_hash)}, not {to_hex(release.model_hash)}"
            continue
        signer = recovered(dom, release, att.signature)
        expected = registered.get(hospital)
        if expected is None or signer is None or signer != to_checksum_address(expected):
            left_out[hospital] = f"signature recovers to {signer}, not the registered {expected}"
            continue
        signatures.append(att.signature)
    return signatures, left_out
