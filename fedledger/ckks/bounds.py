"""Where a decrypted CKKS sum stops meaning anything: the wrap point q/(2*scale), and the margin kept from it.

CKKS decodes a plaintext modulo the data modulus q, centred: a slot whose
true value crosses +-q/(2*scale) comes back off by q/scale. Sender-side
bounds (``encrypt_update``) run only in honest code, so a hospital that builds
its ciphertext with SEAL directly can push the sum over. The receiver checks
instead: no decrypted sum may lie in the outer part of the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tenseal as ts
import tenseal.sealapi  # registers SEAL's Modulus type, which wrap_point reads

#: Refuse any decrypted sum beyond this share of the wrap point. An honest sender's own bound
#: (``encrypt_update``: |n_k w_k| < 2^(data bits - 2) / scale) is already half of it.
WRAP_MARGIN = 0.5


def wrap_point(ctx: ts.Context) -> float:
    """q/(2*scale) for the data modulus of a fresh ciphertext, the only level the parser accepts
    (``format.parse_vector`` pins parms_id and scale), so every aggregate's level too."""
    first = ctx.seal_context().data.first_context_data()
    q = math.prod(int(m.value()) for m in first.parms().coeff_modulus())
    return q / (2.0 * float(ctx.global_scale))


@dataclass(frozen=True)
class WrapCheck:
    """The largest decrypted sum against the limit; ``index`` names the first value over it (-1: none)."""

    peak: float
    limit: float
    wrap: float
    index: int

    @property
    def ok(self) -> bool:
        return self.index < 0

    def reason(self) -> str:
        return (
            f"decrypted value {self.index} has magnitude {self.peak:.6g}, beyond {WRAP_MARGIN:g} of the wrap "
            f"point q/(2*scale) = {self.wrap:.6g} (limit {self.limit:.6g}): the plaintext wrapped modulo q "
            "or a sender exceeded the encryption headroom"
        )


def check_wrap(sums: np.ndarray, wrap: float, margin: float = WRAP_MARGIN) -> WrapCheck:
    """Refuse sums near the wrap (or not finite); ``sums`` are the decrypted aggregate before dividing."""
    x = np.abs(np.asarray(sums, dtype=np.float64).ravel())
    limit = margin * wrap
    bad = np.flatnonzero(~(x < limit))  # NaN counts as over the limit
    peak = float(np.nanmax(x)) if x.size and not np.all(np.isnan(x)) else float("nan")
    return WrapCheck(peak if not bad.size else float(x[bad[0]]), limit, wrap, int(bad[0]) if bad.size else -1)
