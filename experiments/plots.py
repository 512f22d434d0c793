"""PNG plots of a finished study, drawn from results.json alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def new_axes(figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """One figure with one set of axes, drawn off-screen (Agg)."""
    return plt.subplots(figsize=figsize)


def save_png(fig: Figure, path: Path) -> Path:
    """Every plot of a study is written alike (tight layout, 110 dpi) and its figure freed."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_metrics(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Overall and per-hospital accuracy / AUC / loss per round, baselines as reference lines."""
    rounds = results.get("rounds", [])
    if not rounds:
        return []
    xs = [r["round"] for r in rounds]
    hospitals = sorted({h for r in rounds for h in r["per_hospital"]})
    baselines = results.get("baselines") or {}
    paths = []
    for metric in ("accuracy", "auc", "loss"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        ax1.plot(xs, [r["metrics"].get(metric) for r in rounds], marker="o", label="federated (weighted)")
        for name, style in (("pooled", "--"), ("local", ":")):
            value = (baselines.get(name) or {}).get(metric)
            if value is not None:
                ax1.axhline(
                    value, linestyle=style, color="gray" if name == "pooled" else "black", label=f"{name} baseline"
                )
        ax1.set(title=f"overall {metric}", xlabel="round", ylabel=metric)
        ax1.legend(fontsize=8)
        for h in hospitals:
            ax2.plot(xs, [r["per_hospital"].get(h, {}).get(metric) for r in rounds], marker=".", label=h)
        ax2.set(title=f"{metric} per hospital", xlabel="round")
        ax2.legend(fontsize=7, ncol=2)
        paths.append(save_png(fig, out_dir / f"{metric}.png"))
    return paths


def plot_privacy(results: dict[str, Any], out_dir: Path) -> Path | None:
    """Cumulative epsilon against round, one line per hospital, its budget as a dashed line."""
    privacy = results.get("privacy") or {}
    if not privacy:
        return None
    fig, ax = new_axes((7, 4))
    for i, (hospital, p) in enumerate(privacy.items()):
        color = f"C{i % 10}"
        ax.plot(p["rounds"], p["epsilon"], marker="o", color=color, label=hospital)
        if p.get("budget") is not None:
            ax.axhline(p["budget"], linestyle="--", color=color, linewidth=0.8)
    ax.set(title="privacy spent (cumulative epsilon; dashed: budgets)", xlabel="round", ylabel="epsilon")
    ax.legend(fontsize=8)
    return save_png(fig, out_dir / "privacy.png")


def plot_all(results: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = plot_metrics(results, out_dir)
    p = plot_privacy(results, out_dir)
    return paths + ([p] if p else [])
