"""The vector a hospital releases for a query: its cells, their groups and each group's sensitivity.

Per stratum, in this order: ``n`` (one cell); per numeric variable
``<v>:hist`` (missing count, then one count per bin), ``<v>:sum`` (sum of
``x - centre``), ``<v>:sumsq`` (sum of ``(x - centre)**2``); per categorical
variable ``<c>:freq`` (one count per category, then missing); with survival,
``surv`` (events per grid interval, censored per interval, then those still
followed at the grid's end, then missing). Each record falls in exactly one
cell of each group, so a group's L1 and L2 sensitivity is 1 for counts,
``(hi - lo) / 2`` for a sum and its square for a sum of squares (values
clipped to the declared range). Strata are disjoint (parallel composition).

Small-cell suppression before noise (min_cell = m > 1) makes a cell jump from
0 to m when one record is added, and a whole stratum from suppressed to
released: every sensitivity is multiplied by m (docs/PRIVACY.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedledger.stats.query import StatsQuery


@dataclass(frozen=True)
class Group:
    """Cells of one released statistic in one stratum: [start, start + size) of the vector."""

    stratum: str
    name: str
    kind: str  # count | sum | sumsq
    start: int
    size: int
    sensitivity: float  # L1 = L2 for one record (before the min_cell factor)

    @property
    def cells(self) -> slice:
        return slice(self.start, self.start + self.size)


def _group_specs(query: StatsQuery) -> list[tuple[str, str, int, float]]:
    specs: list[tuple[str, str, int, float]] = [("n", "count", 1, 1.0)]
    for v in query.numeric:
        specs.append((f"{v.name}:hist", "count", len(v.bins), 1.0))  # missing + (len(bins) - 1) bins
        specs.append((f"{v.name}:sum", "sum", 1, v.half_width))
        specs.append((f"{v.name}:sumsq", "sumsq", 1, v.half_width**2))
    for c in query.categorical:
        specs.append((f"{c.name}:freq", "count", len(c.categories) + 1, 1.0))
    if query.survival is not None:
        intervals = len(query.survival.grid) - 1
        specs.append(("surv", "count", 2 * intervals + 2, 1.0))
    return specs


def groups(query: StatsQuery) -> list[Group]:
    """Every group of the released vector, strata outermost."""
    out: list[Group] = []
    pos = 0
    for stratum in query.strata_levels:
        for name, kind, size, sens in _group_specs(query):
            out.append(Group(stratum, name, kind, pos, size, sens))
            pos += size
    return out


def vector_size(query: StatsQuery) -> int:
    return sum(g.size for g in groups(query))


def groups_per_stratum(query: StatsQuery) -> int:
    """How many groups share the query's epsilon (sequential composition within a stratum)."""
    return len(_group_specs(query))


def suppression_factor(query: StatsQuery) -> int:
    """The sensitivity multiplier small-cell suppression before noise costs (1 when min_cell is 1)."""
    return max(1, query.min_cell)


def group_by_name(query: StatsQuery, stratum: str, name: str) -> Group:
    for g in groups(query):
        if g.stratum == stratum and g.name == name:
            return g
    raise KeyError(f"no group {name!r} in stratum {stratum!r}")


def cell_units(query: StatsQuery) -> np.ndarray:
    """Each cell's unit on the wire: ``min_cell factor * sensitivity``. Hospitals encrypt ``value / unit``
    (every cell then moves by at most 1 per record, and sums of squares stay far inside CKKS's range);
    readers multiply back."""
    out = np.zeros(vector_size(query))
    m = suppression_factor(query)
    for g in groups(query):
        out[g.cells] = m * g.sensitivity
    return out
