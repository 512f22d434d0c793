"""Recover commitment signers off-chain, independently of the contract's own ecrecover.

The EIP-712 digest is fedledger.commitment's (one implementation, shared with
the hospital that signed). Recovery from that digest goes straight to
libsecp256k1 when coincurve is installed; the reference
:func:`fedledger.commitment.recover_signer` confirms the first commitment of
every hospital and every failure, so each reported failure is confirmed by it.
"""

from __future__ import annotations

from functools import lru_cache

from eth_keys import keys
from eth_utils import keccak

from fedledger.commitment import CommitmentError, Domain, RoundCommitment, commitment_digest, recover_signer
from fedledger.hashing import to_hex

try:  # libsecp256k1 when installed (eth_keys uses it too); the pure-Python curve otherwise
    import coincurve as _coincurve
except ImportError:  # pragma: no cover
    _coincurve = None

SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@lru_cache(maxsize=1 << 16)
def digest(dom: Domain, c: RoundCommitment) -> bytes:
    """The commitment's EIP-712 digest, memoised: a Merkle round's leaf check and its signature check share it."""
    return commitment_digest(dom, c)


def _ecrecover(digest: bytes, signature: bytes) -> str:
    if len(signature) != 65:
        raise CommitmentError(f"signature must be 65 bytes, got {len(signature)}")
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    if s > SECP256K1_HALF_N:
        raise CommitmentError("signature has a high s value (malleable)")
    if v not in (27, 28):
        raise CommitmentError(f"signature v must be 27 or 28, got {v}")
    if _coincurve is not None:
        try:
            pub = _coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v - 27]), digest, hasher=None)
        except Exception as exc:
            raise CommitmentError(f"invalid signature: {exc}") from exc
        return to_hex(keccak(pub.format(compressed=False)[1:])[-20:])  # lowercase; compared case-insensitively
    try:
        pub = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth_keys raises several types
        raise CommitmentError(f"invalid signature: {exc}") from exc
    return pub.to_checksum_address()


class SignerVerifier:
    """Recover commitment signers off-chain.

    ``reference=True``: every signature through :func:`fedledger.commitment.recover_signer`.
    Default: ecrecover over the digest, cross-checked against ``recover_signer``
    on the first commitment of every hospital and on every signature that
    fails. Both paths reject high-s and malformed signatures.
    """

    def __init__(self, dom: Domain, reference: bool = False):
        self.dom = dom
        self.reference = reference
        self._crosschecked: set[str] = set()

    def digest(self, c: RoundCommitment) -> bytes:
        return digest(self.dom, c)

    def recover(self, c: RoundCommitment, signature: bytes, claimed: str, digest: bytes | None = None) -> str:
        if self.reference:
            return recover_signer(self.dom, c, signature)
        try:
            fast = _ecrecover(digest or self.digest(c), signature)
            if fast.lower() == claimed.lower():
                fast = claimed
        except CommitmentError:
            fast = None
        if fast is None or fast != claimed or claimed not in self._crosschecked:
            ref = recover_signer(self.dom, c, signature)  # raises CommitmentError like the fast path
            if fast is not None and ref.lower() != fast.lower():
                raise CommitmentError(f"fast recovery disagrees with fedledger.commitment ({fast} vs {ref})")
            self._crosschecked.add(ref)
            return ref
        return fast
