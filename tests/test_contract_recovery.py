"""StudyLedger's signer recovery at its edges, on both EVMs: what each path does with a bad signature or dirty calldata.

recordRound recovers signers in its Yul hot path and, on a failure, again in
``_explainFailure``; ``recoverCommitmentSigner`` and ``merkleMember`` recover
through OpenZeppelin's ECDSA. These pin which error (or which answer) each
path gives, so the recovery code can be restructured without changing them.
"""

from __future__ import annotations

import os

import pytest
from eth_utils import keccak

from fedledger.commitment import RoundCommitment, commitment_digest
from fedledger.merkle import MerkleTree, commitment_leaf
from ledger.reverts import LedgerRevert

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _words(c: RoundCommitment) -> list[bytearray]:
    return [bytearray(f if isinstance(f, bytes) else f.to_bytes(32, "big")) for f in _fields(c)]


def _fields(c: RoundCommitment) -> tuple:
    return c.as_abi_tuple()


def _bad_signatures(good: bytes) -> dict[str, bytes]:
    s = int.from_bytes(good[32:64], "big")
    return {
        "64 bytes": good[:64],
        "high s": good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]]),
        "v = 1": good[:64] + b"\x01",
    }


class _RawCall:
    """An eth_call of hand-made calldata, shaped like a web3 contract call for ``LedgerClient._view``."""

    def __init__(self, w3, sender: str, to: str, data: bytes):
        self.w3, self.tx = w3, {"from": sender, "to": to, "data": "0x" + data.hex()}

    def call(self):
        return self.w3.eth.call(self.tx)


@pytest.mark.parametrize(("field", "error"), [(1, "UnknownRevert"), (4, "MalformedCommitment"), (5, "UnknownRevert")])
def test_dirty_high_bits_in_a_signed_uint64_field(make_study, field, error):
    # Arrange: a consented hospital signs the commitment's seven words with a uint64 field's top byte set
    s = make_study(n=1)
    (c,), _ = s.commitments(1)
    words = _words(c)
    words[field][0] = 1
    dirty = b"".join(words)
    dom_sep = s.client.contract.functions.domainSeparator().call()
    typehash = s.client.contract.functions.ROUND_COMMITMENT_TYPEHASH().call()
    sig = s.hospitals[0].unsafe_sign_hash(keccak(b"\x19\x01" + dom_sep + keccak(typehash + dirty))).signature
    args = [s.study_id, 1, s.initial_model_hash, os.urandom(32), c.sample_count, [_fields(c)], [bytes(sig)]]
    data = bytes.fromhex(s.client.contract.encode_abi("recordRound", args=args)[2:])
    at = data.index(b"".join(_words(c)))
    data = data[:at] + dirty + data[at + len(dirty) :]
    # Act
    with pytest.raises(LedgerRevert) as info:
        s.client._view(_RawCall(s.chain.w3, s.aggregator.address, s.client.address, data), "recordRound (raw)")
    # Assert: the sample count is caught as malformed; a dirty round or epsilon fails solc's calldata check, bare
    assert info.value.error == error
    if error == "MalformedCommitment":
        assert info.value.error_args == {"index": 0}
    else:
        assert info.value.data is None


def test_recover_commitment_signer_reverts_with_openzeppelins_errors(make_study):
    # Arrange
    s = make_study(n=1)
    (c,), (sig,) = s.commitments(1)
    bad = _bad_signatures(sig)
    # Act
    errors = {}
    for name, b in bad.items():
        with pytest.raises(LedgerRevert) as info:
            s.client.onchain_recover(c, b)
        errors[name] = (info.value.error, info.value.error_args)
    # Assert
    assert s.client.onchain_recover(c, sig) == s.hospitals[0].address
    assert errors["64 bytes"] == ("ECDSAInvalidSignatureLength", {"length": 64})
    assert errors["high s"] == ("ECDSAInvalidSignatureS", {"s": bad["high s"][32:64]})
    assert errors["v = 1"] == ("ECDSAInvalidSignature", {})


def test_bad_signatures_are_invalid_in_record_round_and_not_members_of_a_merkle_round(make_study):
    # Arrange
    s = make_study(n=1)
    (c,), (sig,) = s.commitments(1)
    leaf = commitment_leaf(s.hospitals[0].address, commitment_digest(s.client.domain(), c))
    tree = MerkleTree([leaf])
    bad = _bad_signatures(sig)
    # Act
    recorded = {}
    for name, b in bad.items():
        with pytest.raises(LedgerRevert) as info:
            s.record(1, [c], [b])
        recorded[name] = (info.value.error, info.value.error_args)
    agg = os.urandom(32)
    s.client.record_round_merkle(
        s.study_id, 1, s.initial_model_hash, agg, c.sample_count, tree.root, 1, c.epsilon_micro, sender=s.aggregator
    )
    members = {name: s.client.merkle_member(s.study_id, 1, c, b, tree.proof(leaf)) for name, b in bad.items()}
    # Assert
    assert recorded == dict.fromkeys(bad, ("InvalidSignature", {"index": 0}))
    assert members == dict.fromkeys(bad)
    assert s.client.merkle_member(s.study_id, 1, c, sig, tree.proof(leaf)) == s.hospitals[0].address
