"""The aggregator's (and the auditor's) side: validate each hospital's ciphertexts, then sum them.

The aggregator holds a context without any key and can only parse and add.
Summing is deterministic, so an auditor's re-sum of the same blobs is
byte-identical to the aggregate the aggregator published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tenseal as ts

from fedledger.ckks.errors import CiphertextError
from fedledger.ckks.format import layout, parse_vector
from fedledger.ckks.params import chunk_sizes


def validate_ciphertexts(
    ctx: ts.Context, blobs: Sequence[bytes], expected_count: int, max_bytes: int, *, n_params: int | None = None
) -> list[ts.CKKSVector]:
    """Validate one hospital's update before aggregating; return the parsed vectors.

    Order of checks: container type, count, element types, total size against
    ``max_bytes`` (before parsing anything), then per ciphertext the wrapper,
    SEAL header, zstd framing and member layout (our own parser), then SEAL's
    parse under ``ctx`` and a final parameter check. ``n_params`` pins the exact
    vector sizes (otherwise: all full but the last). Nothing is unpickled.
    A ciphertext under a different secret key with the same parameters cannot be
    told apart here (it decrypts to noise); authenticity comes from the signed
    commitment over ``ciphertexts_hash``.
    """
    lay = layout(ctx)
    if isinstance(blobs, (bytes, bytearray, str)) or not isinstance(blobs, Sequence):
        raise CiphertextError(f"an update must be a list of bytes, got {type(blobs).__name__}")
    if len(blobs) != expected_count:
        raise CiphertextError(f"update has {len(blobs)} ciphertexts, expected {expected_count}")
    for i, b in enumerate(blobs):
        if not isinstance(b, bytes):
            raise CiphertextError(f"ciphertext {i} is {type(b).__name__}, not bytes")
    total = sum(len(b) for b in blobs)
    if total > max_bytes:
        raise CiphertextError(f"update is {total} bytes, over the {max_bytes}-byte limit")
    sizes: list[int | None]
    if n_params is not None:
        sizes = list(chunk_sizes(n_params, lay.slots))
        if len(sizes) != expected_count:
            raise CiphertextError(
                f"{n_params} parameters need {len(sizes)} ciphertexts, expected_count is {expected_count}"
            )
    else:
        sizes = [lay.slots] * (expected_count - 1) + [None]
    out: list[ts.CKKSVector] = []
    for i, b in enumerate(blobs):
        vec = parse_vector(ctx, b, lay, i, lay.max_blob_bytes, sizes[i])
        out.append(_wrap(vec))
    return out


def _wrap(vec: Any) -> ts.CKKSVector:
    """TenSEAL's Python CKKSVector around a C++ one, as its own deserializer builds it."""
    return ts.CKKSVector._wrap(vec)


def sum_vectors(vectors_per_hospital: Sequence[Sequence[ts.CKKSVector]]) -> list[bytes]:
    """Sum already-validated vectors (from validate_ciphertexts) and serialize the aggregate."""
    if not vectors_per_hospital:
        raise CiphertextError("nothing to sum")
    k = len(vectors_per_hospital[0])
    if any(len(v) != k for v in vectors_per_hospital):
        raise CiphertextError("hospitals sent different numbers of ciphertexts")
    out: list[bytes] = []
    for i in range(k):
        first = vectors_per_hospital[0][i].data
        if len(vectors_per_hospital) == 1:
            out.append(first.serialize())
            continue
        # TenSEAL's CKKSVector.copy() crashes on deserialized vectors; add() returns a fresh object.
        acc = first.add(vectors_per_hospital[1][i].data)
        for h in vectors_per_hospital[2:]:
            acc.add_(h[i].data)
        out.append(acc.serialize())
    return out


def sum_ciphertexts(ctx: ts.Context, blobs_per_hospital: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Add the hospitals' ciphertexts slot-wise; return the serialized aggregate, one blob per position.

    Streams position by position (one accumulator in memory). Every blob gets
    the structural pre-parse, so hostile bytes never reach SEAL. Deterministic:
    the auditor's re-sum of the same blobs is byte-identical.
    """
    lay = layout(ctx)
    if not blobs_per_hospital:
        raise CiphertextError("nothing to sum")
    k = len(blobs_per_hospital[0])
    if k == 0 or any(len(h) != k for h in blobs_per_hospital):
        raise CiphertextError("hospitals sent different (or zero) numbers of ciphertexts")
    out: list[bytes] = []
    for i in range(k):
        acc: Any = None
        size0: int | None = None
        for blobs in blobs_per_hospital:
            vec = parse_vector(ctx, blobs[i], lay, i, lay.max_blob_bytes, size0)
            size0 = vec.size()
            if acc is None:
                acc = vec
            else:
                acc.add_(vec)
        out.append(acc.serialize())
    return out
