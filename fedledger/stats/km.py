"""Kaplan-Meier from pooled noisy survival cells (events and censored per grid interval), with bands.

Cells (fedledger.stats.layout ``surv``): events ``d_i`` and censored ``c_i``
in interval ``(t_i, t_{i+1}]``, those followed past the grid's end, missing.
Numbers at risk are post-processing: ``n_i = sum_{j>=i} (d_j + c_j) + beyond``
(summed from the end, so the noise in ``n_i`` comes from the cells after it only); ``S(t_{i+1}) = prod_{j<=i} (1 - d_j / (n_i - c_i / 2))``
(the life-table estimate: an interval's censored count as at risk for half of
it), with ``d`` clipped to ``[0, n]``. It is the product-limit curve at the
grid times up to the grouping of exits into intervals; a finer grid brings it
closer (docs/STATS.md states the tolerance the tests use).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KMCurve:
    """Survival at the grid times (``survival[0] = 1`` at time 0), at-risk numbers and bands."""

    times: np.ndarray
    survival: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    greenwood_se: np.ndarray


def km_from_cells(cells: np.ndarray, grid: np.ndarray) -> KMCurve:
    """The product-limit curve of one (pooled) ``surv`` group."""
    k = len(grid) - 1
    c = np.asarray(cells, dtype=np.float64)
    if c.size != 2 * k + 2:
        raise ValueError(f"a grid of {k} intervals needs {2 * k + 2} survival cells, got {c.size}")
    d, cens, beyond = np.clip(c[:k], 0, None), np.clip(c[k : 2 * k], 0, None), max(float(c[2 * k]), 0.0)
    # at risk at the start of interval i: everyone who leaves in interval i or later (or is followed past
    # the grid). Summed from the end, the noise of n_i is that of the cells after it only: small where n is.
    at_risk = np.cumsum((d + cens)[::-1])[::-1] + beyond
    # life-table (actuarial) correction: the censored of an interval count as at risk for half of it
    safe = np.maximum(at_risk - cens / 2.0, 1.0)
    d = np.minimum(d, safe)
    factors = 1.0 - d / safe
    surv = np.concatenate([[1.0], np.cumprod(factors)])
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(safe - d > 0, d / (safe * (safe - d)), 0.0)
    gw = np.concatenate([[0.0], np.cumsum(terms)])
    return KMCurve(np.asarray(grid, dtype=np.float64), surv, at_risk, d, surv * np.sqrt(gw))
