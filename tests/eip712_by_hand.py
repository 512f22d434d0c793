"""The commitment's EIP-712 digest written out from docs/HASHES.md with keccak and abi.encode.

A second implementation for the tests: it pins the format's pieces (type
hash, domain separator, digest) against the vectors and against the
contract, independently of fedledger.commitment (which the code uses).
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from fedledger.commitment import Domain, RoundCommitment

TYPEHASH = keccak(
    text="RoundCommitmentV2(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,"
    "bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash)"
)


def domain_separator(dom: Domain) -> bytes:
    t = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    fields = [t, keccak(text=dom.name), keccak(text=dom.version), dom.chain_id, dom.verifying_contract]
    return keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"], fields))


def commitment_digest_independent(separator: bytes, c: RoundCommitment) -> bytes:
    types = ["bytes32", "bytes32", "uint64", "bytes32", "bytes32", "uint64", "uint64", "bytes32"]
    fields = [TYPEHASH, c.study_id, c.round, c.prev_global_hash, c.update_hash, c.sample_count, c.epsilon_micro]
    fields.append(c.start_model_hash)
    return keccak(b"\x19\x01" + separator + keccak(encode(types, fields)))
