"""Calibration of a survival study's final model: its mean predicted survival curve against Kaplan-Meier.

Drawn from the last released checkpoint and every hospital's test split (the
rows no model trained on): the Kaplan-Meier estimate of those rows pooled
(lifelines), and the mean over them of the model's ``S(tau_k)`` at each grid
edge. A calibrated model's points sit on the Kaplan-Meier curve; ``ibs``
(docs/TASKS.md) measures the same per patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.plots import new_axes, save_png
from fedledger.files import load_npz
from fl_client.data import HospitalData
from fl_client.models import build_model, set_arrays
from fl_client.survival.metrics import survival_curves


def plot_survival_calibration(run_dir: Path, hospitals: list[HospitalData], cfg: dict[str, Any]) -> Path | None:
    """``survival.png`` in ``run_dir``; None when the study released no checkpoint."""
    checkpoints = sorted((Path(run_dir) / "checkpoints").glob("round_*.npz"))
    if not checkpoints:
        return None
    from lifelines import KaplanMeierFitter

    h0 = hospitals[0]
    grid = np.asarray(h0.task_options["time_grid"], dtype=np.float64)
    model = build_model(cfg["model"]["name"], h0.n_features, int(cfg["model"]["hidden"]), 0, h0.num_outputs)
    set_arrays(model, load_npz(checkpoints[-1]))
    model.eval()
    X = np.concatenate([h.X_test for h in hospitals])
    y = np.concatenate([h.y_test for h in hospitals])
    with torch.no_grad():
        mean_curve = survival_curves(model(torch.from_numpy(X))).mean(axis=0)
    km = KaplanMeierFitter().fit(y[:, 0], y[:, 1])
    fig, ax = new_axes((6.4, 4.2))
    ax.step(
        km.timeline, km.survival_function_.iloc[:, 0], where="post", color="black", label="Kaplan-Meier (test rows)"
    )
    ax.plot(np.concatenate([[0.0], grid]), np.concatenate([[1.0], mean_curve]), "o--", color="C0",
            label=f"model, mean predicted S(t) ({checkpoints[-1].stem})")  # fmt: skip
    ax.set_xlabel("time (days)")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"calibration on {len(y)} test patients of {len(hospitals)} hospitals")
    ax.legend(loc="lower left")
    return save_png(fig, Path(run_dir) / "survival.png")
