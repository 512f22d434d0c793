"""Decryptions for release: every released value is rounded to a fixed grid, never the raw decryption.

A raw CKKS decryption published beside its ciphertext gives away the secret
key (Li and Micciancio, 2021: ``s = (m - c0) / c1`` once the decrypted
polynomial ``m`` is known exactly). Rounding to ``2**-RELEASE_GRID_BITS``
removes far more low bits than the encryption noise occupies, so the released
values no longer determine ``m``; the sizing argument is in docs/ENCRYPTION.md
("Released decryptions"). Every release path goes through ``round_for_release``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tenseal as ts

from fedledger.ckks.encrypt import decrypt_update
from fedledger.ckks.errors import SecurityError
from fedledger.ckks.format import layout

# Released parameters are multiples of 2**-RELEASE_GRID_BITS (see docs/ENCRYPTION.md).
RELEASE_GRID_BITS = 16
RELEASE_GRID = 2.0**-RELEASE_GRID_BITS
# The encoding scale must be at least this many bits finer than the grid, or the grid is no protection.
RELEASE_MIN_MARGIN_BITS = 14


def round_for_release(values: np.ndarray) -> np.ndarray:
    """Round to the release grid (round half to even); exact in float32 for magnitudes below 2**(24 - bits)."""
    x = np.asarray(values, dtype=np.float64)
    return np.round(x / RELEASE_GRID) * RELEASE_GRID


def check_release_scale(ctx: ts.Context) -> None:
    """Refuse a context whose encoding scale is too coarse for the grid to hide the decryption's error."""
    scale_bits = math.log2(layout(ctx).scale)
    if scale_bits - RELEASE_GRID_BITS < RELEASE_MIN_MARGIN_BITS:
        raise SecurityError(
            f"a CKKS scale of 2^{scale_bits:g} is too coarse to release decryptions on a "
            f"2^-{RELEASE_GRID_BITS} grid (needs 2^{RELEASE_GRID_BITS + RELEASE_MIN_MARGIN_BITS} or finer)"
        )


def decrypt_for_release(
    ctx: ts.Context, blobs: Sequence[bytes], n_params: int, total_weight: float | None = None
) -> np.ndarray:
    """The only way a decryption leaves the key holders: decrypted, averaged, then rounded to the grid."""
    check_release_scale(ctx)
    return round_for_release(decrypt_update(ctx, blobs, n_params, total_weight=total_weight))
