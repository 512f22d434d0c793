"""A hospital's exact sufficient statistics for a query, in the released layout (fedledger.stats.layout).

Values are clipped to the declared range before they are summed; a value
outside the stratum's categories, or NaN, counts as missing. Rows whose
stratum value is missing or not a declared category are left out of every
stratum (the query's strata are the declared categories only).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedledger.stats.layout import Group, groups, vector_size
from fedledger.stats.query import CategoricalVar, NumericVar, StatsQuery, Survival
from fl_client.data.csv_schema import canon


class StatsDataError(ValueError):
    """The hospital's rows lack a column the query names."""


def _check_columns(df: pd.DataFrame, query: StatsQuery) -> None:
    needed = [v.name for v in query.numeric] + [c.name for c in query.categorical] + [f.column for f in query.cohort]
    if query.strata is not None:
        needed.append(query.strata.name)
    if query.survival is not None:
        needed += [query.survival.time, query.survival.event]
    missing = sorted({c for c in needed if c not in df.columns})
    if missing:
        raise StatsDataError(f"the query names column(s) {missing} that this hospital's data lacks")


def cohort_rows(df: pd.DataFrame, query: StatsQuery) -> pd.DataFrame:
    """The rows the query's cohort filter keeps (inclusive bounds; a missing value is left out)."""
    _check_columns(df, query)
    keep = np.ones(len(df), dtype=bool)
    for f in query.cohort:
        x = pd.to_numeric(df[f.column], errors="coerce").to_numpy(dtype=np.float64)
        keep &= (x >= f.lo) & (x <= f.hi)
    return df.loc[keep]


def _category_index(values: pd.Series, var: CategoricalVar) -> np.ndarray:
    """Index of each value's category, -1 when missing or undeclared."""
    keys = {canon(c): i for i, c in enumerate(var.categories)}
    out = np.full(len(values), -1, dtype=np.int64)
    for j, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        out[j] = keys.get(canon(v), -1)
    return out


def _numeric_cells(values: pd.Series, var: NumericVar) -> tuple[np.ndarray, float, float]:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    present = x[np.isfinite(x)]
    clipped = np.clip(present, var.lo, var.hi)
    hist, _ = np.histogram(clipped, bins=np.asarray(var.bins))
    counts = np.concatenate([[len(x) - len(present)], hist]).astype(np.float64)
    centred = clipped - var.centre
    return counts, float(centred.sum()), float((centred**2).sum())


def _survival_cells(rows: pd.DataFrame, surv: Survival) -> np.ndarray:
    t = pd.to_numeric(rows[surv.time], errors="coerce").to_numpy(dtype=np.float64)
    e = pd.to_numeric(rows[surv.event], errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(e)
    k = len(surv.grid) - 1
    cells = np.zeros(2 * k + 2)
    tt, ee = np.maximum(t[ok], 0.0), e[ok] != 0
    # interval i is (grid[i], grid[i+1]]; time 0 falls in the first one
    idx = np.searchsorted(np.asarray(surv.grid), tt, side="left") - 1
    idx = np.maximum(idx, 0)
    inside = tt <= surv.grid[-1]
    np.add.at(cells, idx[inside & ee], 1.0)
    np.add.at(cells, k + idx[inside & ~ee], 1.0)
    cells[2 * k] = float((~inside).sum())
    cells[2 * k + 1] = float((~ok).sum())
    return cells


def _fill_stratum(out: np.ndarray, gs: list[Group], rows: pd.DataFrame, query: StatsQuery) -> None:
    by_name = {g.name: g for g in gs}
    out[by_name["n"].cells] = float(len(rows))
    for v in query.numeric:
        counts, s1, s2 = _numeric_cells(rows[v.name], v)
        out[by_name[f"{v.name}:hist"].cells] = counts
        out[by_name[f"{v.name}:sum"].cells] = s1
        out[by_name[f"{v.name}:sumsq"].cells] = s2
    for c in query.categorical:
        idx = _category_index(rows[c.name], c)
        freq = np.bincount(np.where(idx < 0, len(c.categories), idx), minlength=len(c.categories) + 1)
        out[by_name[f"{c.name}:freq"].cells] = freq.astype(np.float64)
    if query.survival is not None:
        out[by_name["surv"].cells] = _survival_cells(rows, query.survival)


def local_statistics(df: pd.DataFrame, query: StatsQuery) -> np.ndarray:
    """The exact (un-noised, unsuppressed) released vector of this hospital's rows."""
    rows = cohort_rows(df, query)
    out = np.zeros(vector_size(query))
    all_groups = groups(query)
    if query.strata is None:
        _fill_stratum(out, all_groups, rows, query)
        return out
    stratum_idx = _category_index(rows[query.strata.name], query.strata)
    for i, level in enumerate(query.strata.categories):
        _fill_stratum(out, [g for g in all_groups if g.stratum == level], rows.loc[stratum_idx == i], query)
    return out
