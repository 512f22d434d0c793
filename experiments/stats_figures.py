"""From a pooled noisy vector to Table 1 and the Kaplan-Meier curve, each figure with its noise interval."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from experiments.table1 import Table, TableCell
from fedledger.stats.calibration import NoiseCalibration
from fedledger.stats.estimate import by_stratum, cell_noise, pooled_noise_drawer, table_figures, with_intervals
from fedledger.stats.km import KMCurve, km_from_cells
from fedledger.stats.layout import group_by_name
from fedledger.stats.query import StatsQuery


def noisy_table(
    vec: np.ndarray,
    query: StatsQuery,
    cal: NoiseCalibration,
    sites: int,
    rng: np.random.Generator,
    exact: np.ndarray | None = None,
    prefix: str = "",
    repeats: int = 200,
) -> Table:
    """Table 1 of one released vector (pooled over ``sites`` hospitals, or one site's with ``sites=1``)."""
    draw = pooled_noise_drawer(cal.mechanism, cal.scales, sites)
    figs, pm = with_intervals(vec, lambda v: table_figures(v, query), draw, rng, repeats)
    exact_figs = table_figures(exact, query) if exact is not None else {}
    table: Table = {}
    for (row, col), value in figs.items():
        scale = cell_noise(query, row, cal.scales)
        table.setdefault(row, {})[prefix + col] = TableCell(value, pm[(row, col)], scale, exact_figs.get((row, col)))
    return table


def merge_tables(*tables: Table) -> Table:
    out: Table = {}
    for t in tables:
        for row, cells in t.items():
            out.setdefault(row, {}).update(cells)
    return out


def km_curves(vec: np.ndarray, query: StatsQuery) -> dict[str, KMCurve]:
    """One curve per stratum and overall, from the ``surv`` cells of the released vector."""
    if query.survival is None:
        return {}
    grid = np.asarray(query.survival.grid)
    g = group_by_name(query, query.strata_levels[0], "surv")
    return {col: km_from_cells(blk[g.cells], grid) for col, blk in by_stratum(vec, query).items()}


def km_dp_band(
    vec: np.ndarray, query: StatsQuery, cal: NoiseCalibration, sites: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """95% DP-noise half-width of each curve at each grid time (simulated like Table 1's intervals)."""

    def figures(v: np.ndarray) -> dict[tuple[str, str], float]:
        return {(str(i), col): float(s) for col, c in km_curves(v, query).items() for i, s in enumerate(c.survival)}

    _, pm = with_intervals(vec, figures, pooled_noise_drawer(cal.mechanism, cal.scales, sites), rng)
    n = len(query.survival.grid) if query.survival else 0
    cols = {col for _, col in pm}
    return {col: np.array([pm[(str(i), col)] for i in range(n)]) for col in cols}


def exact_frame_figures(frames: Mapping[str, pd.DataFrame], query: StatsQuery) -> np.ndarray:
    """The exact pooled vector (no suppression, no noise): what the docs and tests compare with."""
    from fl_client.stats.local import local_statistics

    return np.sum([local_statistics(df, query) for df in frames.values()], axis=0)
