"""The hospital's side: encrypt ``weight * update`` with SEAL's seeded symmetric encryption; decrypt the aggregate.

Symmetric, seeded encryption replaces a ciphertext's second polynomial by a
64-byte PRNG seed, halving the bytes. TenSEAL's own encrypt drops the seed, so
SEAL's encryptor is driven directly and its output wrapped in TenSEAL's format.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from fedledger.ckks.bounds import WrapCheck, check_wrap, wrap_point
from fedledger.ckks.errors import CiphertextError, KeyHandlingError
from fedledger.ckks.format import layout, parse_vector, wrap_seal_ciphertext
from fedledger.ckks.params import chunk_sizes


class _SeededEncryptor:
    """SEAL symmetric encryption with the seed kept (TenSEAL's own path drops it)."""

    def __init__(self, ctx: ts.Context) -> None:
        if not ctx.is_private():
            raise KeyHandlingError("encrypting needs the study's secret context")
        sc = ctx.seal_context().data
        self.encoder = sealapi.CKKSEncoder(sc)
        self.encryptor = sealapi.Encryptor(sc, ctx.secret_key().data)
        self.scale = float(ctx.global_scale)
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.fd: int | None
        try:
            self.fd = os.memfd_create("fedledger-ct")
            self.path = f"/proc/self/fd/{self.fd}"
        except (AttributeError, OSError):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fedledger-ct-")
            self.path = os.path.join(self._tmpdir.name, "ct")
            self.fd = None

    def encrypt(self, chunk: np.ndarray) -> bytes:
        pt = sealapi.Plaintext()
        self.encoder.encode(chunk.tolist(), self.scale, pt)
        self.encryptor.encrypt_symmetric(pt).save(self.path)
        if self.fd is not None:
            return os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        with open(self.path, "rb") as f:
            return f.read()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


def encrypt_update(ctx: ts.Context, flat: np.ndarray, weight: float) -> list[bytes]:
    """Encrypt ``weight * flat`` (flat float vector, caller's fixed order) into as few ciphertexts as possible."""
    x = np.asarray(flat, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("empty update")
    w = float(weight)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    y = x * w
    if not np.all(np.isfinite(y)):
        raise ValueError("update contains NaN or infinite values")
    lay = layout(ctx)
    data_bits = sum(m.bit_count() for m in ctx.seal_context().data.first_context_data().parms().coeff_modulus())
    limit = 2.0 ** (data_bits - 2) / lay.scale
    peak = float(np.abs(y).max())
    if peak >= limit:
        raise ValueError(
            f"weighted update magnitude {peak:.3g} would overflow the {data_bits}-bit modulus at "
            f"scale 2^{int(math.log2(lay.scale))} (limit {limit:.3g}); use a wider preset"
        )
    enc = _SeededEncryptor(ctx)
    try:
        out: list[bytes] = []
        for i, size in enumerate(chunk_sizes(x.size, lay.slots)):
            chunk = y[i * lay.slots : i * lay.slots + size]
            out.append(wrap_seal_ciphertext(enc.encrypt(chunk), size, lay.scale))
        return out
    finally:
        enc.close()


def decrypt_update(
    ctx: ts.Context, blobs: Sequence[bytes], n_params: int, total_weight: float | None = None
) -> np.ndarray:
    """Decrypt an aggregate (or one update) to a flat float64 vector; divide by total_weight if given."""
    if not ctx.is_private():
        raise KeyHandlingError("decrypting needs the study's secret context")
    lay = layout(ctx)
    sizes = chunk_sizes(n_params, lay.slots)
    if isinstance(blobs, (bytes, bytearray)) or len(blobs) != len(sizes):
        raise CiphertextError(
            f"{n_params} parameters need {len(sizes)} ciphertexts, got "
            f"{len(blobs) if not isinstance(blobs, (bytes, bytearray)) else 'bytes'}"
        )
    out = np.empty(n_params, dtype=np.float64)
    pos = 0
    for i, (b, size) in enumerate(zip(blobs, sizes)):
        vec = parse_vector(ctx, b, lay, i, lay.max_blob_bytes, size)
        out[pos : pos + size] = vec.decrypt()
        pos += size
    if total_weight is not None:
        if not total_weight > 0:
            raise ValueError("total_weight must be positive")
        out /= float(total_weight)
    return out


def decrypt_aggregate(
    ctx: ts.Context, blobs: Sequence[bytes], n_params: int, total_weight: int
) -> tuple[np.ndarray, WrapCheck]:
    """Decrypt an aggregate, check its sums against the wrap point (``bounds``), divide by the weight.

    The caller refuses the aggregate when the check fails (the division is done regardless, so the
    step bound can still be reported).
    """
    sums = decrypt_update(ctx, blobs, n_params)
    wrap = check_wrap(sums, wrap_point(ctx))
    return sums / float(total_weight), wrap
