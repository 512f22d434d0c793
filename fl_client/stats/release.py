"""The key holders' side: decrypt the pooled (or, where the protocol allows, one site's) noisy vector."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tenseal as ts

from fedledger.ckks import decrypt_for_release
from fedledger.stats.layout import cell_units, vector_size
from fedledger.stats.query import StatsQuery


def decrypt_statistics(secret_context: ts.Context, blobs: Sequence[bytes], query: StatsQuery) -> np.ndarray:
    """Decrypted, rounded to the release grid (never a raw decryption), back in the cells' own units."""
    return decrypt_for_release(secret_context, blobs, vector_size(query)) * cell_units(query)
