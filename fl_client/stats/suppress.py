"""Small-cell suppression before noise: clinical release rules forbid publishing a cell of fewer than min_cell records.

A stratum of fewer than ``min_cell`` records is released as all zeros; in a
released stratum every count cell under ``min_cell`` is set to 0 (sums are
kept: they describe the whole stratum, which has at least ``min_cell``
records). The noise is then calibrated to the sensitivity this rule implies
(``fedledger.stats.layout.suppression_factor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.stats.layout import groups
from fedledger.stats.query import StatsQuery


@dataclass(frozen=True)
class Suppression:
    """What a hospital applied (kept locally: which cells were cut is itself data about small groups)."""

    min_cell: int
    strata_suppressed: tuple[str, ...]
    cells_suppressed: int

    def statement(self) -> str:
        """The rule as the hospital states it with its answer (no counts: they would leak)."""
        return f"cells of fewer than {self.min_cell} records set to 0 before noise"


def suppress_small_cells(exact: np.ndarray, query: StatsQuery) -> tuple[np.ndarray, Suppression]:
    """A copy of ``exact`` with small cells (and small strata) set to 0."""
    m = query.min_cell
    out = np.array(exact, dtype=np.float64, copy=True)
    small_strata: list[str] = []
    cut = 0
    gs = groups(query)
    for level in query.strata_levels:
        mine = [g for g in gs if g.stratum == level]
        n = out[mine[0].cells][0]
        if n < m:
            if n > 0:
                small_strata.append(level)
            for g in mine:
                cut += int(np.count_nonzero(out[g.cells]))
                out[g.cells] = 0.0
            continue
        for g in mine:
            if g.kind != "count":
                continue
            cells = out[g.cells]
            small = (cells > 0) & (cells < m)
            cut += int(small.sum())
            cells[small] = 0.0
            out[g.cells] = cells
    return out, Suppression(m, tuple(small_strata), cut)
