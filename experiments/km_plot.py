"""The Kaplan-Meier PNG: DP curves from pooled noisy cells, their DP-noise band and the Greenwood band."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fedledger.stats.km import KMCurve


def plot_km(
    path: Path,
    curves: Mapping[str, KMCurve],
    dp_band: Mapping[str, np.ndarray],
    title: str,
    exact: Mapping[str, KMCurve] | None = None,
) -> Path:
    """Step curves with a shaded 95% band (DP noise and Greenwood sampling error combined in quadrature)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, c) in enumerate(curves.items()):
        colour = f"C{i}"
        half = np.sqrt(dp_band[name] ** 2 + (1.96 * c.greenwood_se) ** 2)
        ax.step(c.times, c.survival, where="post", color=colour, label=f"{name} (DP)")
        ax.fill_between(
            c.times,
            np.clip(c.survival - half, 0, 1),
            np.clip(c.survival + half, 0, 1),
            step="post",
            color=colour,
            alpha=0.18,
        )
        if exact and name in exact:
            ax.step(exact[name].times, exact[name].survival, where="post", color=colour, ls=":", label=f"{name} exact")
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
