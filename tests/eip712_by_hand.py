"""The commitment's EIP-712 digest written out from docs/HASHES.md with keccak only.

A second implementation for the tests: it pins the format's pieces (type
hash, domain separator, digest) against the vectors and against the
contract, independently of fedledger.commitment (which the code uses).
"""

from __future__ import annotations

from eth_utils import keccak

from fedledger.commitment import Domain, RoundCommitment

TYPEHASH = keccak(
    text="RoundCommitment(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,"
    "bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro)"
)


def domain_separator(dom: Domain) -> bytes:
    t = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        t
        + keccak(text=dom.name)
        + keccak(text=dom.version)
        + dom.chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(dom.verifying_contract[2:])
    )


def commitment_digest_independent(separator: bytes, c: RoundCommitment) -> bytes:
    struct = keccak(
        TYPEHASH
        + c.study_id
        + c.round.to_bytes(32, "big")
        + c.prev_global_hash
        + c.update_hash
        + c.sample_count.to_bytes(32, "big")
        + c.epsilon_micro.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + separator + struct)
