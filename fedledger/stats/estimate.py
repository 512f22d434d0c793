"""Table 1 figures from a pooled noisy vector, each with the noise interval it carries.

Every figure is post-processing of released cells: counts clipped at 0;
mean ``centre + S1 / n`` and SD from the centred sums, ``n`` the stratum's
count less the missing (the stratum count is never suppressed in a released
stratum, small histogram bins may be); median and quartiles
read off the noisy histogram (negative bins at 0, linear within a bin);
category percentages of the non-missing count. Each figure's 95% noise
interval is found by simulation: the released noise distribution is public
(the calibration), so the figure is recomputed on ``R`` copies of the
vector with fresh noise of the same law and the 95th percentile of the
absolute change is stated as ``+/-``. This is the DP error only (not the
sampling error of the cohort).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedledger.stats.layout import Group, groups
from fedledger.stats.query import NumericVar, StatsQuery

Figures = dict[tuple[str, str], float]  # (row, column) -> value


@dataclass(frozen=True)
class Figure:
    """One Table 1 figure: its value, the 95% noise interval half-width and the noise SD of its cells."""

    value: float
    pm95: float
    cell_noise_sd: float


def by_stratum(vec: np.ndarray, query: StatsQuery) -> dict[str, np.ndarray]:
    """One stratum-sized vector per stratum, plus ``overall`` (their sum: the strata are disjoint)."""
    levels = query.strata_levels
    blocks = np.asarray(vec, dtype=np.float64).reshape(len(levels), -1)
    out = {level: blocks[i] for i, level in enumerate(levels)}
    if len(levels) > 1:
        out["overall"] = blocks.sum(axis=0)
    return out


def _stratum_groups(query: StatsQuery) -> dict[str, Group]:
    first = query.strata_levels[0]
    return {g.name: g for g in groups(query) if g.stratum == first}


def histogram_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float:
    """Quantile ``q`` of a histogram (negative counts at 0), linear within the bin; NaN when empty."""
    c = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    total = float(c.sum())
    if total <= 0:
        return float("nan")
    cum = np.concatenate([[0.0], np.cumsum(c)]) / total
    i = int(np.clip(np.searchsorted(cum, q, side="left"), 1, len(c)))
    lo_c, hi_c = cum[i - 1], cum[i]
    frac = 0.0 if hi_c <= lo_c else (q - lo_c) / (hi_c - lo_c)
    return float(edges[i - 1] + frac * (edges[i] - edges[i - 1]))


def _present(blk: np.ndarray, g: dict[str, Group], missing: float) -> float:
    """Records with a value: the stratum's count less the missing ones. Not the sum of the bins: small
    bins are suppressed (0) before noise, the stratum's count never is (a stratum under min_cell is all 0)."""
    return max(float(blk[g["n"].cells][0]) - max(missing, 0.0), 1.0)


def _numeric(out: Figures, col: str, blk: np.ndarray, g: dict[str, Group], v: NumericVar) -> None:
    hist = blk[g[f"{v.name}:hist"].cells]
    n_present = _present(blk, g, float(hist[0]))
    s1, s2 = float(blk[g[f"{v.name}:sum"].cells][0]), float(blk[g[f"{v.name}:sumsq"].cells][0])
    mean_c = float(np.clip(s1 / n_present, -v.half_width, v.half_width))
    var = (s2 / n_present - mean_c**2) * n_present / max(n_present - 1.0, 1.0)  # <= 0 under noise: not stated
    edges = np.asarray(v.bins)
    out[(f"{v.name} mean", col)] = v.centre + mean_c
    out[(f"{v.name} sd", col)] = float(np.sqrt(var)) if var > 0 else float("nan")
    for label, q in (("q1", 0.25), ("median", 0.5), ("q3", 0.75)):
        out[(f"{v.name} {label}", col)] = histogram_quantile(hist[1:], edges, q)
    out[(f"{v.name} missing", col)] = max(float(hist[0]), 0.0)


def table_figures(vec: np.ndarray, query: StatsQuery) -> Figures:
    """Every Table 1 figure of a (pooled or one site's) released vector, in table order."""
    g = _stratum_groups(query)
    out: Figures = {}
    for col, blk in by_stratum(vec, query).items():
        out[("N", col)] = max(float(blk[g["n"].cells][0]), 0.0)
        for v in query.numeric:
            _numeric(out, col, blk, g, v)
        for c in query.categorical:
            freq = np.clip(blk[g[f"{c.name}:freq"].cells], 0.0, None)
            present = _present(blk, g, float(freq[-1]))
            for i, cat in enumerate(c.categories):
                out[(f"{c.name}={cat} n", col)] = float(freq[i])
                out[(f"{c.name}={cat} %", col)] = 100.0 * float(freq[i]) / present
            out[(f"{c.name} missing", col)] = float(freq[-1])
    return out


def cell_noise(query: StatsQuery, row: str, sd: np.ndarray) -> float:
    """The per-cell noise scale behind a row (the largest of its group's cells, first stratum)."""
    g = _stratum_groups(query)
    if row == "N":
        return float(sd[g["n"].cells].max())
    for v in query.numeric:
        if row.startswith(v.name + " "):
            stat = row[len(v.name) + 1 :]
            key = f"{v.name}:sum" if stat in ("mean", "sd") else f"{v.name}:hist"
            return float(sd[g[key].cells].max())
    for c in query.categorical:
        if row.startswith((c.name + "=", c.name + " missing")):
            return float(sd[g[f"{c.name}:freq"].cells].max())
    raise KeyError(f"no released group behind the row {row!r}")


def with_intervals(
    vec: np.ndarray,
    figures_of: Callable[[np.ndarray], Figures],
    draw_noise: Callable[[np.random.Generator], np.ndarray],
    rng: np.random.Generator,
    repeats: int = 200,
) -> tuple[Figures, Figures]:
    """Figures of ``vec`` and each one's 95% half-width under ``repeats`` fresh draws of the released noise."""
    base = figures_of(vec)
    keys = list(base)
    sims = np.array([[figures_of(vec + draw_noise(rng))[k] for k in keys] for _ in range(repeats)])
    ref = np.array([base[k] for k in keys])
    dev = np.abs(sims - ref)
    half = np.nanpercentile(np.where(np.isfinite(dev), dev, np.nan), 95, axis=0)
    return base, {k: float(h) for k, h in zip(keys, half)}


def pooled_noise_drawer(mechanism: str, scales: np.ndarray, sites: int) -> Callable[[np.random.Generator], np.ndarray]:
    """Noise of a sum over ``sites`` hospitals, each adding its own calibrated noise."""

    def draw(rng: np.random.Generator) -> np.ndarray:
        if mechanism == "laplace":
            return np.asarray(rng.laplace(0.0, scales, size=(sites, scales.size)).sum(axis=0))
        return np.asarray(rng.normal(0.0, scales * np.sqrt(sites)))

    return draw
