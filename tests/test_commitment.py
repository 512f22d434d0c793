"""The EIP-712 commitment format is public: pinned by a fixed vector and checked by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from fedledger.commitment import (
    ROUND_COMMITMENT_TYPE,
    CommitmentError,
    RoundCommitment,
    SignedCommitment,
    commitment_digest,
    domain,
    epsilon_to_micro,
    micro_to_epsilon,
    recover_signer,
    sign_commitment,
    typed_data,
)

# Fixed vector. Changing any of these values is a breaking change to every recorded study.
VECTOR_KEY = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
VECTOR_SIGNER = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
VECTOR_CHAIN_ID = 1
VECTOR_CONTRACT = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
VECTOR_COMMITMENT = RoundCommitment(
    study_id=b"\x11" * 32,
    round=3,
    prev_global_hash=b"\x22" * 32,
    update_hash=b"\x33" * 32,
    sample_count=1234,
    epsilon_micro=1_500_000,
    start_model_hash=b"\x44" * 32,
)
# RoundCommitmentV2 (issue 15). Version 1 (no startModelHash) was: typehash
# 9efa85f58fee35837acdaebd996d3620576f3e0c06fad79e38205ffbaee2c412, digest
# 59a89a344298874132d559eeeba489c5ac32a8c251cfa12296fd17b52aee28c5.
VECTOR_TYPEHASH = "0dfd9d46313a956b76c1d56c8350f2ff24647b104222358b1a5ccd4d6177f94c"
VECTOR_DOMAIN_SEPARATOR = "558abc91bd77f86a42240e1c870881cc0499584a33f8cecae6f04d41701a67ac"
VECTOR_DIGEST = "865cfd982827aabbfcae2fd5b483b1887dc1acdf28a2b55e6f3286dd64e85bd1"
VECTOR_SIGNATURE = (
    "d5a4bfb7e34198e9ac7391c10616f8293f4ee71ebdfee6aa87443dc36890332b"
    "388d9cc70ca8712caad2f94e1c8728b79835a727363bbd9abe59c44926c9b1561c"
)


def test_fixed_vector_digest_and_signer():
    # Arrange
    dom = domain(VECTOR_CHAIN_ID, VECTOR_CONTRACT)
    # Act
    digest = commitment_digest(dom, VECTOR_COMMITMENT)
    signature = sign_commitment(VECTOR_KEY, dom, VECTOR_COMMITMENT)
    # Assert
    assert digest.hex() == VECTOR_DIGEST
    assert signature.hex() == VECTOR_SIGNATURE  # RFC 6979 deterministic nonces
    assert recover_signer(dom, VECTOR_COMMITMENT, bytes.fromhex(VECTOR_SIGNATURE)) == VECTOR_SIGNER
    assert Account.from_key(VECTOR_KEY).address == VECTOR_SIGNER


def test_digest_matches_a_hand_built_eip712_encoding():
    # Arrange: the spec, written out with nothing but keccak and abi.encode
    c = VECTOR_COMMITMENT
    typehash = keccak(text=ROUND_COMMITMENT_TYPE)
    struct_hash = keccak(
        encode(
            ["bytes32", "bytes32", "uint64", "bytes32", "bytes32", "uint64", "uint64", "bytes32"],
            [
                typehash,
                c.study_id,
                c.round,
                c.prev_global_hash,
                c.update_hash,
                c.sample_count,
                c.epsilon_micro,
                c.start_model_hash,
            ],
        )
    )
    domain_typehash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    separator = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [domain_typehash, keccak(text="FedLedger"), keccak(text="1"), VECTOR_CHAIN_ID, VECTOR_CONTRACT],
        )
    )
    # Act
    digest = commitment_digest(domain(VECTOR_CHAIN_ID, VECTOR_CONTRACT), c)
    # Assert
    assert ROUND_COMMITMENT_TYPE == (
        "RoundCommitmentV2(bytes32 studyId,uint64 round,bytes32 prevGlobalHash,"
        "bytes32 updateHash,uint64 sampleCount,uint64 epsilonMicro,bytes32 startModelHash)"
    )
    assert typehash.hex() == VECTOR_TYPEHASH and separator.hex() == VECTOR_DOMAIN_SEPARATOR
    assert digest == keccak(b"\x19\x01" + separator + struct_hash)


@pytest.mark.parametrize(
    "field,value",
    [
        ("round", 4),
        ("sample_count", 1235),
        ("epsilon_micro", 1_500_001),
        ("update_hash", b"\x34" * 32),
        ("prev_global_hash", b"\x23" * 32),
        ("study_id", b"\x12" * 32),
        ("start_model_hash", b"\x45" * 32),
    ],
)
def test_any_changed_field_changes_the_signer(field, value):
    # Arrange
    dom = domain(VECTOR_CHAIN_ID, VECTOR_CONTRACT)
    sig = bytes.fromhex(VECTOR_SIGNATURE)
    # Act
    signer = recover_signer(dom, replace(VECTOR_COMMITMENT, **{field: value}), sig)
    # Assert
    assert signer != VECTOR_SIGNER


def test_other_chain_or_contract_changes_the_signer():
    # Arrange
    sig = bytes.fromhex(VECTOR_SIGNATURE)
    # Act / Assert
    assert recover_signer(domain(2, VECTOR_CONTRACT), VECTOR_COMMITMENT, sig) != VECTOR_SIGNER
    assert recover_signer(domain(1, "0x" + "dd" * 20), VECTOR_COMMITMENT, sig) != VECTOR_SIGNER


def test_sign_accepts_a_local_account_and_round_trips():
    # Arrange
    acct = Account.create()
    dom = domain(31337, "0x" + "ab" * 20)
    # Act
    sig = sign_commitment(acct, dom, VECTOR_COMMITMENT)
    # Assert
    assert len(sig) == 65 and sig[64] in (27, 28)
    assert recover_signer(dom, VECTOR_COMMITMENT, sig) == acct.address
    assert recover_signer(dom, VECTOR_COMMITMENT, "0x" + sig.hex()) == acct.address


def test_malformed_and_malleable_signatures_are_rejected():
    # Arrange
    dom = domain(VECTOR_CHAIN_ID, VECTOR_CONTRACT)
    sig = bytes.fromhex(VECTOR_SIGNATURE)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(sig[32:64], "big")
    flipped = sig[:32] + (n - s).to_bytes(32, "big") + bytes([55 - sig[64]])  # the other valid (high-s) form
    # Act / Assert
    with pytest.raises(CommitmentError):
        recover_signer(dom, VECTOR_COMMITMENT, sig[:64])
    with pytest.raises(CommitmentError, match="high s"):
        recover_signer(dom, VECTOR_COMMITMENT, flipped)


@pytest.mark.parametrize(
    "eps,micro",
    [
        (0.0, 0),
        (1.5, 1_500_000),
        (0.1, 100_000),
        (2.9999996, 3_000_000),
        (1e-7, 0),
        (8.0000004, 8_000_000),
        (12.345678, 12_345_678),
    ],
)
def test_epsilon_to_micro(eps, micro):
    assert epsilon_to_micro(eps) == micro
    assert abs(micro_to_epsilon(micro) - eps) <= 5e-7


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), 2.0**64])
def test_epsilon_to_micro_rejects_out_of_range(bad):
    with pytest.raises(CommitmentError):
        epsilon_to_micro(bad)


def test_fields_are_validated():
    with pytest.raises(CommitmentError):
        replace(VECTOR_COMMITMENT, study_id=b"\x11" * 31)
    with pytest.raises(CommitmentError):
        replace(VECTOR_COMMITMENT, round=-1)
    with pytest.raises(CommitmentError):
        replace(VECTOR_COMMITMENT, sample_count=2**64)
    with pytest.raises(CommitmentError, match="start_model_hash"):
        replace(VECTOR_COMMITMENT, start_model_hash=b"\x44" * 31)


def test_json_and_tuple_round_trip():
    c = VECTOR_COMMITMENT
    assert RoundCommitment.from_json(c.to_json()) == c
    assert RoundCommitment.from_tuple(c.as_abi_tuple()) == c
    assert RoundCommitment.from_json({**c.to_json(), "studyId": "0x" + "11" * 32}) == c
    assert typed_data(domain(1, VECTOR_CONTRACT), c)["primaryType"] == "RoundCommitmentV2"


def test_signed_commitment_json_is_the_hospitals_reply_record():
    # Arrange
    dom = domain(VECTOR_CHAIN_ID, VECTOR_CONTRACT)
    # Act
    signed = SignedCommitment.sign(Account.from_key(VECTOR_KEY), dom, VECTOR_COMMITMENT, hospital="hospital_0")
    record = signed.to_json()
    # Assert: the record's keys, order and values (docs/INTERFACES.md, docs/HASHES.md section 5)
    assert list(record.items()) == [
        ("hospital", "hospital_0"),
        ("address", VECTOR_SIGNER),
        ("update-hash", "0x" + "33" * 32),
        ("sample-count", 1234),
        ("epsilon-micro", 1_500_000),
        ("start-model-hash", "0x" + "44" * 32),
        ("signature", "0x" + VECTOR_SIGNATURE),
    ]
    assert signed.recover(dom) == VECTOR_SIGNER and signed.digest(dom).hex() == VECTOR_DIGEST
    assert (
        signed.as_abi_tuple()
        == VECTOR_COMMITMENT.as_abi_tuple()
        == (
            b"\x11" * 32,
            3,
            b"\x22" * 32,
            b"\x33" * 32,
            1234,
            1_500_000,
            b"\x44" * 32,
        )
    )


def test_signed_commitment_reads_back_bound_to_its_round_and_update():
    # Arrange
    signed = SignedCommitment(VECTOR_COMMITMENT, bytes.fromhex(VECTOR_SIGNATURE), VECTOR_SIGNER, "hospital_0")
    context = {
        "study_id": "0x" + "11" * 32,
        "round": 3,
        "prev_global_hash": b"\x22" * 32,
        "update_hash": "0x" + "33" * 32,
        "sample_count": 1234,
    }
    # Act
    back = SignedCommitment.from_json(signed.to_json(), **context)
    # Assert
    assert back == signed
    assert SignedCommitment.from_json(
        {k: v for k, v in signed.to_json().items() if k != "sample-count"}, **context
    ) == (signed)
    with pytest.raises(CommitmentError, match="update hash"):
        SignedCommitment.from_json(signed.to_json(), **{**context, "update_hash": b"\x34" * 32})
    with pytest.raises(CommitmentError, match="lacks 'signature'"):
        SignedCommitment.from_json({k: v for k, v in signed.to_json().items() if k != "signature"}, **context)
    with pytest.raises(CommitmentError, match="lacks 'start-model-hash'"):
        SignedCommitment.from_json({k: v for k, v in signed.to_json().items() if k != "start-model-hash"}, **context)
    with pytest.raises(CommitmentError, match="start-model-hash"):
        SignedCommitment.from_json({**signed.to_json(), "start-model-hash": "0x44"}, **context)
    with pytest.raises(CommitmentError, match="65 bytes"):
        SignedCommitment.from_json({**signed.to_json(), "signature": "0x1234"}, **context)


@pytest.mark.parametrize("seed", range(5))
def test_keccak_digest_equals_eth_accounts_typed_data_encoding(seed):
    # Arrange: random fields and domains, encoded by eth_account's generic EIP-712 encoder
    import random

    from eth_account.messages import _hash_eip191_message, encode_typed_data

    rng = random.Random(seed)
    c = RoundCommitment(
        study_id=rng.randbytes(32),
        round=rng.randrange(2**64),
        prev_global_hash=rng.randbytes(32),
        update_hash=rng.randbytes(32),
        sample_count=rng.randrange(2**64),
        epsilon_micro=rng.randrange(2**64),
        start_model_hash=rng.randbytes(32),
    )
    dom = domain(rng.randrange(1, 2**40), Account.create().address)
    # Act
    reference = bytes(_hash_eip191_message(encode_typed_data(full_message=typed_data(dom, c))))
    # Assert
    assert commitment_digest(dom, c) == reference
