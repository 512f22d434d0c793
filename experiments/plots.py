"""PNG plots of a finished study, drawn from results.json alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedledger.tasks import lower_is_better, task_kind
from fl_server.intervals import wilson


def new_axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """One figure with one set of axes, drawn off-screen (Agg)."""
    return plt.subplots(figsize=figsize)


def save_png(fig: Figure, path: Path) -> Path:
    """Every plot of a study is written alike (tight layout, 110 dpi) and its figure freed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", (0, (3, 1, 1, 1, 1, 1)))
BUDGET_STYLE = {"color": "black", "linestyle": (0, (1, 2)), "linewidth": 1.6}
# Accuracy and AUC axes start no higher than this, so one patient of a 20-patient test set is not a cliff.
SCORE_FLOOR = 0.5
SCORES = ("accuracy", "auc", "macro-f1", "c-index")  # metrics in [0, 1], drawn on [floor, 1]
DODGE = 0.5  # rounds over which the privacy plot spreads the hospitals' points of one round


def hospital_style(i: int) -> dict[str, Any]:
    """Colour, marker and line style differ per hospital, so overlapping curves stay distinguishable."""
    return {
        "color": f"C{i % 10}",
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "markerfacecolor": "none" if i % 2 else f"C{i % 10}",
        "markersize": 7 - (i % 3),
    }


def score_limits(values: list[float | None]) -> tuple[float, float]:
    """[floor, 1] for a score in [0, 1]: the floor is SCORE_FLOOR or lower, in steps of 0.1, never auto-zoomed."""
    low = min([v for v in values if v is not None] + [SCORE_FLOOR])
    return max(0.0, math.floor(low * 10) / 10), 1.02


def test_sizes(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each hospital's test-set size, from the last round it was evaluated in."""
    sizes: dict[str, Any] = {}
    for r in rounds:
        for h, m in r["per_hospital"].items():
            sizes[h] = m.get("num-examples")
    return sizes


def spread(xs: list[int], i: int, k: int) -> list[float]:
    """Hospital i of k drawn slightly apart from the others, so equal curves sit side by side, not on top."""
    shift = min(0.15, DODGE / k) * (i - (k - 1) / 2)
    return [x + shift for x in xs]


def sum_tested(r: dict[str, Any]) -> int:
    """Patients evaluated in round ``r``, over every hospital."""
    return sum(int(m.get("num-examples") or 0) for m in r["per_hospital"].values())


def plotted_metrics(results: dict[str, Any]) -> list[str]:
    """The study task's metrics, then the loss (binary: accuracy, auc, loss; regression: rmse, mae, r2, loss)."""
    task = (results.get("protocol") or {}).get("task") or "binary"
    return [*task_kind(task).metrics[1:], "loss"]


def plot_metrics(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Overall and per-hospital metrics of the study's task per round (binary: accuracy / AUC / loss;
    regression: RMSE / MAE / R² / loss in the target's units), baselines as reference lines,
    each hospital's 95% interval as a band where it has one, its test-set size in the legend."""
    rounds = results.get("rounds", [])
    if not rounds:
        return []
    task = (results.get("protocol") or {}).get("task") or "binary"
    xs = [r["round"] for r in rounds]
    hospitals = sorted({h for r in rounds for h in r["per_hospital"]})
    sizes = test_sizes(rounds)
    baselines = results.get("baselines") or {}
    paths = []
    for metric in plotted_metrics(results):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        shown: list[float | None] = [r["metrics"].get(metric) for r in rounds]
        ax1.plot(xs, shown, marker="o", label="federated (weighted)")
        if metric == "accuracy":  # the weighted accuracy is correct / all evaluated patients: Wilson applies
            cis = [wilson(r["metrics"].get(metric), sum_tested(r)) for r in rounds]
            ax1.fill_between(xs, *zip(*[c or (math.nan, math.nan) for c in cis]), alpha=0.15, label="95% interval")
            shown += [c[0] for c in cis if c]
        for name, style in (("pooled", "--"), ("local", ":")):
            value = (baselines.get(name) or {}).get(metric)
            if value is not None:
                shown.append(value)
                ax1.axhline(
                    value, linestyle=style, color="gray" if name == "pooled" else "black", label=f"{name} baseline"
                )
        ax1.set(title=f"overall {metric}", xlabel="round", ylabel=metric)
        ax1.legend(fontsize=8)
        for i, h in enumerate(hospitals):
            rows = [r["per_hospital"].get(h, {}) for r in rounds]
            ys = [m.get(metric) for m in rows]
            shown += ys
            style = hospital_style(i)
            ax2.plot(spread(xs, i, len(hospitals)), ys, label=f"{h} (test n={sizes.get(h)})", **style)
            cis = [m.get(f"{metric}-ci") for m in rows]
            if any(cis):
                low = [c[0] if c else math.nan for c in cis]
                ax2.fill_between(xs, low, [c[1] if c else math.nan for c in cis], color=style["color"], alpha=0.1)
                shown += [v for v in low if not math.isnan(v)]
        note = ", bands: 95% intervals" if metric in ("accuracy", "auc") else ""
        ax2.set(title=f"{metric} per hospital{note}", xlabel="round (hospitals drawn slightly apart)")
        ax2.legend(fontsize=7, ncol=2)
        for ax in (ax1, ax2):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric in SCORES:
            ax1.set_ylim(*score_limits(shown))
        elif lower_is_better(task, metric):  # loss, RMSE, MAE, IBS: from 0
            ax1.set_ylim(bottom=0.0)
        paths.append(save_png(fig, out_dir / f"{metric}.png"))
    return paths


def plot_privacy(results: dict[str, Any], out_dir: Path) -> Path | None:
    """Cumulative epsilon against round, one style per hospital; budgets in their own black dotted style; delta given."""
    privacy = results.get("privacy") or {}
    if not privacy:
        return None
    fig, ax = new_axes((7, 4))
    budgets: dict[float, list[str]] = {}
    deltas = {p.get("delta") for p in privacy.values()}
    for i, (hospital, p) in enumerate(privacy.items()):
        label = hospital if len(deltas) == 1 else f"{hospital} (δ={p.get('delta'):.0e})"
        ax.plot(spread(p["rounds"], i, len(privacy)), p["epsilon"], label=label, **hospital_style(i))
        if p.get("budget") is not None:
            budgets.setdefault(float(p["budget"]), []).append(hospital)
    for budget, names in sorted(budgets.items()):
        who = "" if len(budgets) == 1 else f" ({', '.join(names)})"
        ax.axhline(budget, label=f"budget ε={budget:g}{who}", **BUDGET_STYLE)
    delta = next(iter(deltas)) if len(deltas) == 1 else None
    title = "privacy spent: cumulative ε" + (f" at δ={delta:.0e}" if delta is not None else "")
    ax.set(title=title, xlabel="round (hospitals drawn slightly apart)", ylabel="ε")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=8)
    return save_png(fig, out_dir / "privacy.png")


def plot_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = plot_metrics(results, out_dir)
    p = plot_privacy(results, out_dir)
    return paths + ([p] if p else [])
