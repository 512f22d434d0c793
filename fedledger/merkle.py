"""Merkle tree of a round's signed commitments (ledger Merkle mode, docs/HASHES.md section 6).

Pure Python (keccak from eth_utils). The contract stores only the root
(``StudyLedger.recordRoundMerkle``); leaves, proofs and signatures go into
the round manifest, and the auditor checks every leaf.

Leaf of hospital ``a`` (20-byte address) whose commitment has EIP-712 digest ``d``::

    leaf = keccak256( keccak256( 12 zero bytes || a || d ) )     # = keccak256(bytes.concat(keccak256(abi.encode(a, d))))

(the double hash of OpenZeppelin's StandardMerkleTree for ``["address", "bytes32"]``:
a leaf can never be confused with an inner node). Tree:

* leaves sorted ascending as 32-byte big-endian strings (the root does not
  depend on arrival order); duplicate leaves are refused;
* a parent is ``keccak256(min(a, b) || max(a, b))`` (sorted-pair hashing, as
  OpenZeppelin's ``MerkleProof.verify``), so a proof is just the list of
  sibling hashes, bottom up, with no left/right flags;
* a level with an odd number of nodes promotes its last node unchanged to the
  next level (no duplication: a duplicated node would let two different leaf
  sets share a root); that node has no sibling at that level, so its proof
  skips the level;
* one leaf: the root is the leaf and its proof is empty. Zero leaves: no tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak

from fedledger.hashing import as_bytes32, to_hex

ZERO32 = b"\x00" * 32


class MerkleError(ValueError):
    """Bad input to the tree (no leaves, duplicate leaf, leaf not in the tree, wrong length)."""


def _b32(v: bytes | str) -> bytes:
    try:
        return as_bytes32(v)
    except ValueError as exc:
        raise MerkleError(str(exc)) from exc


def commitment_leaf(hospital: str | bytes, digest: bytes | str) -> bytes:
    """Leaf of ``hospital``'s commitment with EIP-712 ``digest`` (= ``StudyLedger.commitmentLeaf``)."""
    addr = to_canonical_address(hospital) if isinstance(hospital, str) else bytes(hospital)
    if len(addr) != 20:
        raise MerkleError(f"hospital address must be 20 bytes, got {len(addr)}")
    return keccak(keccak(bytes(12) + addr + _b32(digest)))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Sorted-pair hash: keccak256(min || max), OpenZeppelin's ``Hashes.commutativeKeccak256``."""
    return keccak(a + b) if a <= b else keccak(b + a)


class MerkleTree:
    """A tree over a set of leaves; ``.root``, ``.proof(leaf)``, ``.leaves`` (sorted)."""

    def __init__(self, leaves: Iterable[bytes | str]):
        ls = sorted(_b32(x) for x in leaves)
        if not ls:
            raise MerkleError("a Merkle tree needs at least one leaf")
        for a, b in zip(ls, ls[1:]):
            if a == b:
                raise MerkleError(f"duplicate leaf {to_hex(a)}")
        self.leaves: tuple[bytes, ...] = tuple(ls)
        self.levels: list[list[bytes]] = [ls]
        level = ls
        while len(level) > 1:
            nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])  # odd node promoted unchanged
            self.levels.append(nxt)
            level = nxt
        self._index = {leaf: i for i, leaf in enumerate(ls)}

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, leaf: bytes | str) -> list[bytes]:
        """Sibling hashes from the leaf up (empty for a single-leaf tree)."""
        leaf = _b32(leaf)
        if leaf not in self._index:
            raise MerkleError(f"leaf {to_hex(leaf)} is not in the tree")
        i = self._index[leaf]
        out = []
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            i //= 2
        return out


def merkle_root(leaves: Iterable[bytes | str]) -> bytes:
    return MerkleTree(leaves).root


def merkle_proof(leaves: Iterable[bytes | str], leaf: bytes | str) -> list[bytes]:
    return MerkleTree(leaves).proof(leaf)


def process_proof(proof: Sequence[bytes | str], leaf: bytes | str) -> bytes:
    """The root a proof leads to (OpenZeppelin's ``MerkleProof.processProof``)."""
    h = _b32(leaf)
    for p in proof:
        h = hash_pair(h, _b32(p))
    return h


def verify_proof(proof: Sequence[bytes | str], root: bytes | str, leaf: bytes | str) -> bool:
    """True when ``proof`` leads from ``leaf`` to ``root`` (OpenZeppelin's ``MerkleProof.verify``)."""
    try:
        return process_proof(proof, leaf) == _b32(root)
    except MerkleError:
        return False
