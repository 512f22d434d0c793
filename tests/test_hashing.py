"""Fixed test vectors for the public hash formats (docs/HASHES.md repeats every one of them).

Inputs are tiny and hand-checkable; the expected values are hard-coded hex.
An independent implementation (another language, another team) must
reproduce each of them byte for byte. Changing any value here is a breaking
change to every recorded study.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from fedledger.commitment import RoundCommitment, commitment_digest, domain, recover_signer, sign_commitment
from fedledger.hashing import canonical_model_bytes, ciphertexts_hash, from_hex, model_hash, to_hex
from tests.eip712_by_hand import TYPEHASH as _TYPEHASH
from tests.eip712_by_hand import commitment_digest_independent
from tests.eip712_by_hand import domain_separator as _domain_separator

# -- models -------------------------------------------------------------------------------

MODEL_1 = {"w": np.array([1.0, -2.0], dtype="<f4"), "b": np.array(0.5, dtype="<f8")}
MODEL_1_BYTES = (
    "4645444c45444745522d4d4f44454c2d7631"  # "FEDLEDGER-MODEL-v1"
    "02000000"  # u32 number of arrays = 2
    "0100"
    "62"  # "b": u16 name length, name
    "03"
    "3c6638"  # u8 dtype length, "<f8"
    "00"  # u8 ndim = 0 (a scalar), no shape
    "0800000000000000"
    "000000000000e03f"  # u64 byte length 8, 0.5 as little-endian float64
    "0100"
    "77"  # "w"
    "03"
    "3c6634"  # "<f4"
    "01"
    "0200000000000000"  # ndim 1, shape (2,)
    "0800000000000000"
    "0000803f000000c0"  # 8 bytes: 1.0, -2.0 as little-endian float32
)
MODEL_1_HASH = "0xf8dce3e7cbbcd9c52c97e4f501e14d23f7bc8d4ba0a7da49d65b0d63ce26e41a"

MODEL_2 = {"x": np.array([[1, 2], [3, 4]], dtype=">i4")}  # big-endian input: hashed as little-endian
MODEL_2_BYTES = (
    "4645444c45444745522d4d4f44454c2d7631"
    "01000000"
    "0100"
    "78"
    "03"
    "3c6934"
    "02"
    "0200000000000000"
    "0200000000000000"
    "1000000000000000"
    "01000000"
    "02000000"
    "03000000"
    "04000000"
)
MODEL_2_HASH = "0xacb00bb7c9884458463c26f6fd2b3c6f423f14a396e67f75bb1e91c2e07de28e"

EMPTY_MODEL_HASH = "0x92bcb75a5c8317d1ff3208cb1a0602ee9a1ff7eb34da8ba1bfba66ae5830fda4"

# -- ciphertexts --------------------------------------------------------------------------

CT_EMPTY_HASH = "0x903cd69785e6f0278abd5749be90958da2a6e3056f963a1047e6523b5e17317b"
CT_TWO_HASH = "0x2b6ae4284d4e838dd63c78c815342bec65b3e9a2a6b4a57b3db35877e703736b"  # [01 02, <empty>]
CT_ABC_HASH = "0x51d3628d75018aaab9fc4a8e565f52ddee134071f5f5da8d7f1b59a1106461cb"  # [b"abc"]

# -- EIP-712 commitment -------------------------------------------------------------------

DOMAIN = domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
COMMITMENT = RoundCommitment(b"\x11" * 32, 1, b"\x22" * 32, b"\x33" * 32, 100, 1_500_000, b"\x44" * 32)
TYPEHASH = "0x0dfd9d46313a956b76c1d56c8350f2ff24647b104222358b1a5ccd4d6177f94c"  # RoundCommitmentV2
DOMAIN_SEPARATOR = "0x60f632ef170155b2fcb0aaff67a43b8dbfc5f81c9b038023da2a9136504bdf64"
DIGEST = "0x6e1c9d8849495ae558ae32a6d01adf2f9195b07ee8881ea3d09b89859dba437c"
# anvil/hardhat development account #2 (a publicly known test key, never for real use)
DEV_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
DEV_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
SIGNATURE = (
    "0xb3bd07a0966514ba7fb288f38b572d4591e2dd1cf9d05b5e8517720d5f77334f"
    "34abc3ebd3bf88d41a24e8853ff6286345c962d6d4fdc5a1d8a6db38678b1e0a"
    "1b"
)


def test_canonical_model_bytes_vector():
    assert canonical_model_bytes(MODEL_1).hex() == MODEL_1_BYTES


def test_model_hash_vector():
    assert to_hex(model_hash(MODEL_1)) == MODEL_1_HASH
    assert to_hex(hashlib.sha256(bytes.fromhex(MODEL_1_BYTES)).digest()) == MODEL_1_HASH


def test_model_hash_is_independent_of_byte_order_and_insertion_order():
    assert canonical_model_bytes(MODEL_2).hex() == MODEL_2_BYTES
    assert to_hex(model_hash(MODEL_2)) == MODEL_2_HASH
    little = {"x": MODEL_2["x"].astype("<i4")}
    assert to_hex(model_hash(little)) == MODEL_2_HASH
    reordered = {"b": MODEL_1["b"], "w": MODEL_1["w"]}
    assert to_hex(model_hash(reordered)) == MODEL_1_HASH


def test_model_hash_changes_with_dtype_shape_and_value():
    base = model_hash(MODEL_1)
    assert model_hash({**MODEL_1, "w": MODEL_1["w"].astype("<f8")}) != base
    assert model_hash({**MODEL_1, "w": MODEL_1["w"].reshape(2, 1)}) != base
    assert model_hash({**MODEL_1, "w": np.array([1.0, -2.0000002], dtype="<f4")}) != base


def test_empty_model_vector():
    assert canonical_model_bytes({}) == b"FEDLEDGER-MODEL-v1" + b"\x00" * 4
    assert to_hex(model_hash({})) == EMPTY_MODEL_HASH


def test_ciphertexts_hash_vectors():
    assert to_hex(ciphertexts_hash([])) == CT_EMPTY_HASH
    assert to_hex(ciphertexts_hash([b"\x01\x02", b""])) == CT_TWO_HASH
    assert to_hex(ciphertexts_hash([b"abc"])) == CT_ABC_HASH


def test_ciphertexts_hash_by_hand():
    by_hand = b"FEDLEDGER-CKKS-v1" + struct.pack("<I", 2) + struct.pack("<Q", 2) + b"\x01\x02" + struct.pack("<Q", 0)
    assert to_hex(hashlib.sha256(by_hand).digest()) == CT_TWO_HASH
    # length prefixes make the split unambiguous
    assert ciphertexts_hash([b"ab", b"c"]) != ciphertexts_hash([b"a", b"bc"]) != ciphertexts_hash([b"abc"])


def test_eip712_commitment_vectors():
    assert to_hex(_TYPEHASH) == TYPEHASH
    assert to_hex(_domain_separator(DOMAIN)) == DOMAIN_SEPARATOR
    assert to_hex(commitment_digest(DOMAIN, COMMITMENT)) == DIGEST
    assert to_hex(commitment_digest_independent(_domain_separator(DOMAIN), COMMITMENT)) == DIGEST


def test_eip712_signature_vector():
    sig = sign_commitment(DEV_KEY, DOMAIN, COMMITMENT)  # RFC 6979: deterministic
    assert "0x" + sig.hex() == SIGNATURE
    assert recover_signer(DOMAIN, COMMITMENT, SIGNATURE) == DEV_ADDRESS


def test_hex_helpers():
    assert from_hex(DIGEST) == bytes.fromhex(DIGEST[2:])
    with pytest.raises(ValueError):
        from_hex("0x1234")
