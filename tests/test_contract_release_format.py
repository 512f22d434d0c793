"""The EIP-712 ModelRelease format is public: pinned by a fixed vector (docs/HASHES.md section 4a), written out
by hand, and carried through a hospital's evaluation reply to the signatures a release sends."""

from __future__ import annotations

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from fedledger.commitment import domain
from fedledger.release_attestation import (
    MODEL_RELEASE_TYPEHASH,
    ModelRelease,
    ReleaseAttestation,
    matching_signatures,
    recover_release_signer,
    release_digest,
    sign_release,
)
from fedledger.round_task import EvaluationReport
from tests.eip712_by_hand import domain_separator

# Fixed vector (docs/HASHES.md section 4a): the section 4 domain and key; changing any value breaks every release.
DOM = domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # public anvil development key #2
RELEASE = ModelRelease(b"\x11" * 32, 1, b"\x44" * 32)
TYPEHASH = "86c7840814cbaa836b8e6e6f3444f37244fa18865759830ccb4c6f4dae6d594c"
DIGEST = "951c3cb6b727d3e5ed2bb5a413fcf27cedcc4e8765a98aa4b7ac6f7df9e2bed6"
SIGNATURE = (
    "42d9d39f3beb70e9fa60e286c4410e557452b605b45bf812f8bc71dafe0097be"
    "2cf091f1c3999d30d5618b1d1358a0b35d1624b63acf0a217663168e1d719f891b"
)


def test_model_release_vector_by_hand():
    # Arrange
    by_hand_type = keccak(text="ModelRelease(bytes32 studyId,uint64 round,bytes32 modelHash)")
    struct = keccak(encode(["bytes32", "bytes32", "uint64", "bytes32"], [by_hand_type, b"\x11" * 32, 1, b"\x44" * 32]))
    # Act
    by_hand = keccak(b"\x19\x01" + domain_separator(DOM) + struct)
    # Assert
    assert MODEL_RELEASE_TYPEHASH.hex() == by_hand_type.hex() == TYPEHASH
    assert release_digest(DOM, RELEASE).hex() == by_hand.hex() == DIGEST


def test_model_release_signature_vector():
    # Arrange
    account = Account.from_key(KEY)
    # Act
    sig = sign_release(account, DOM, RELEASE)
    # Assert: deterministic (RFC 6979), recovers to the key's address, and to no one for another round
    assert sig.hex() == SIGNATURE
    assert recover_release_signer(DOM, RELEASE, sig) == account.address == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert recover_release_signer(DOM, ModelRelease(b"\x11" * 32, 2, b"\x44" * 32), sig) != account.address


def test_evaluation_reply_carries_the_attestation_and_the_release_keeps_only_matching_ones():
    # Arrange: two hospitals sign the released hash, one a different hash, one with a key not its own
    keys = {f"hospital_{i}": Account.create() for i in range(4)}
    registered = {h: a.address for h, a in keys.items()}
    other = ModelRelease(RELEASE.study_id, 1, b"\x55" * 32)
    signed = {
        "hospital_0": ReleaseAttestation.sign(keys["hospital_0"], DOM, RELEASE),
        "hospital_1": ReleaseAttestation.sign(keys["hospital_1"], DOM, RELEASE),
        "hospital_2": ReleaseAttestation.sign(keys["hospital_2"], DOM, other),
        "hospital_3": ReleaseAttestation.sign(Account.create(), DOM, RELEASE),
    }
    replies = {}
    for h, att in signed.items():
        metrics, info = EvaluationReport(loss=0.1, accuracy=0.9, num_examples=5, auc=None, hospital=h,
                                         release=att.to_wire()).to_wire()  # fmt: skip
        replies[h] = EvaluationReport.from_wire(metrics, info).release
    # Act
    signatures, left_out = matching_signatures(DOM, RELEASE, replies, registered)
    # Assert
    assert signatures == [signed["hospital_0"].signature, signed["hospital_1"].signature]
    assert sorted(left_out) == ["hospital_2", "hospital_3"]
    assert "signed model hash 0x5555" in left_out["hospital_2"] and "not the registered" in left_out["hospital_3"]
