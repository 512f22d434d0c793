"""The error each epsilon buys: `python -m experiments.stats_error` (the table in docs/STATS.md).

For the table1 query (conf/stats/gbsg2.yaml) over 4 hospitals, at several
epsilons, the median absolute error of a few Table 1 figures and of the
Kaplan-Meier curve against the exact pooled figures, over independent noise
draws (hospital-side functions only: CKKS adds under 1e-4 to any figure,
docs/ENCRYPTION.md). Simulation: the exact figures exist only here.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
from omegaconf import OmegaConf

from experiments.stats_figures import exact_frame_figures, km_curves
from experiments.stats_study import REPO_ROOT
from fedledger.stats.calibration import calibrate
from fedledger.stats.estimate import table_figures
from fedledger.stats.query import StatsQuery
from fl_client.stats.data import builtin_hospitals
from fl_client.stats.local import local_statistics
from fl_client.stats.noise import add_noise
from fl_client.stats.suppress import suppress_small_cells

FIGURES = (("N", "overall"), ("age mean", "overall"), ("age median", "overall"), ("tgrade=II %", "overall"))


def error_table(epsilons: list[float], draws: int, min_cell: int, seed: int = 0) -> str:
    """Markdown: one row per epsilon, the median |noisy - exact| of each figure and of the KM curve."""
    st = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "stats" / "gbsg2.yaml"), resolve=True)
    assert isinstance(st, dict)
    base = StatsQuery.from_mapping(st["query"])
    sites = builtin_hospitals("gbsg2", 4, seed, "cens")
    rng = np.random.default_rng(seed)
    lines = [
        "| epsilon | " + " | ".join(f"{r} ({c})" for r, c in FIGURES) + " | KM S(1500 d) | KM max over grid |",
        "|---|" + "---|" * (len(FIGURES) + 2),
    ]
    for eps in epsilons:
        q = replace(base, epsilon=eps, min_cell=min_cell)
        exact_vec = exact_frame_figures(dict(sites), q)
        exact, exact_km = table_figures(exact_vec, q), km_curves(exact_vec, q)["overall"].survival
        released = [suppress_small_cells(local_statistics(df, q), q)[0] for _, df in sites]
        cal = calibrate(q)
        errs: dict[str, list[float]] = {f"{r}|{c}": [] for r, c in FIGURES} | {"km": [], "km1500": []}
        at = list(q.survival.grid).index(1500.0) if q.survival else 0
        for _ in range(draws):
            pooled = np.sum([add_noise(v, cal, rng) for v in released], axis=0)
            figs = table_figures(pooled, q)
            for r, c in FIGURES:
                errs[f"{r}|{c}"].append(abs(figs[(r, c)] - exact[(r, c)]))
            curve = km_curves(pooled, q)["overall"].survival
            errs["km"].append(float(np.max(np.abs(curve - exact_km))))
            errs["km1500"].append(float(abs(curve[at] - exact_km[at])))
        cells = [f"{np.nanmedian(errs[f'{r}|{c}']):.3g}" for r, c in FIGURES]
        cells += [f"{np.median(errs['km1500']):.3f}", f"{np.median(errs['km']):.3f}"]
        lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilons", default="1,2,4,8,16,32")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--min-cell", type=int, default=5)
    a = p.parse_args()
    print(error_table([float(e) for e in a.epsilons.split(",")], a.draws, a.min_cell))


if __name__ == "__main__":
    main()
