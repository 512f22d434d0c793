"""Public hash formats: the one place that turns models and ciphertexts into bytes32.

Auditors re-implement these, so the byte layouts are specified in
docs/HASHES.md and pinned by fixed vectors in tests/test_hashing.py. Changing
anything here is a breaking change to every recorded study.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence

import numpy as np

MODEL_DOMAIN = b"FEDLEDGER-MODEL-v1"
CIPHERTEXTS_DOMAIN = b"FEDLEDGER-CKKS-v1"
AGGREGATE_DOMAIN = b"FEDLEDGER-CKKS-AGGREGATE-v2"


def canonical_model_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Byte layout of a model: arrays sorted by name, each self-describing.

    Sorting by name (not insertion order) means two implementations agree
    without sharing a framework's parameter ordering.
    """
    out = [MODEL_DOMAIN, struct.pack("<I", len(arrays))]
    for name in sorted(arrays):
        arr = np.asarray(arrays[name])
        le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        dtype = le.dtype.str.encode("ascii")  # e.g. b"<f4"
        raw = np.ascontiguousarray(le).tobytes()
        name_b = name.encode("utf-8")
        out.append(struct.pack("<H", len(name_b)) + name_b)
        out.append(struct.pack("<B", len(dtype)) + dtype)
        out.append(struct.pack("<B", arr.ndim) + b"".join(struct.pack("<Q", d) for d in arr.shape))
        out.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(out)


def model_hash(arrays: Mapping[str, np.ndarray]) -> bytes:
    """SHA-256 of canonical_model_bytes: the hash of a plaintext model."""
    return hashlib.sha256(canonical_model_bytes(arrays)).digest()


def ciphertexts_hash(blobs: Sequence[bytes]) -> bytes:
    """SHA-256 over serialized ciphertexts in order, each length-prefixed."""
    h = hashlib.sha256()
    h.update(CIPHERTEXTS_DOMAIN)
    h.update(struct.pack("<I", len(blobs)))
    for blob in blobs:
        h.update(struct.pack("<Q", len(blob)))
        h.update(blob)
    return h.digest()


def aggregate_hash(blobs: Sequence[bytes], total_weight: int) -> bytes:
    """The hash of an encrypted aggregate: its ciphertexts AND the weight hospitals divide by.

    Version 2 of the aggregate hash: v1 (``ciphertexts_hash``) left the weight
    outside, so an aggregator could send one hospital another divisor under
    the recorded hash. Refuses a weight that is not a positive integer.
    """
    if isinstance(total_weight, bool) or not isinstance(total_weight, int) or total_weight <= 0:
        raise ValueError(f"an aggregate's total weight must be a positive integer, got {total_weight!r}")
    if total_weight >= 1 << 64:
        raise ValueError(f"an aggregate's total weight must fit in 64 bits, got {total_weight}")
    h = hashlib.sha256()
    h.update(AGGREGATE_DOMAIN)
    h.update(struct.pack("<Q", total_weight))
    h.update(struct.pack("<I", len(blobs)))
    for blob in blobs:
        h.update(struct.pack("<Q", len(blob)))
        h.update(blob)
    return h.digest()


def sha256(data: bytes) -> bytes:
    """Plain SHA-256, used for configs, contexts and files."""
    return hashlib.sha256(data).digest()


def to_hex(data: bytes) -> str:
    """0x-prefixed lowercase hex, the form used in JSON and on-chain."""
    return "0x" + bytes(data).hex()


def from_hex(text: str) -> bytes:
    """Inverse of to_hex (the 0x is optional); refuses anything that is not 32 bytes."""
    raw = as_bytes(text)
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte hash, got {len(raw)} bytes: {text!r}")
    return raw


def as_bytes(value: bytes | str) -> bytes:
    """Raw bytes as given, or decoded from (0x-)hex text."""
    return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)


def as_bytes32(value: bytes | str) -> bytes:
    """A bytes32 given as raw bytes or (0x-)hex; refuses any other length."""
    raw = as_bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw
