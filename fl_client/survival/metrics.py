"""Survival curves from hazard logits, and the two metrics a survival study reports.

* C-index: Harrell's concordance of the predicted restricted mean survival time
  over the grid with the observed times (lifelines' ``concordance_index``:
  comparable pairs only, tied predictions count 1/2).
* Integrated Brier score: torchsurv's IPCW Brier score (Graf 1999; censoring
  weights from the Kaplan-Meier estimate of the censoring distribution of the
  rows scored) at the grid edges inside their follow-up, integrated by the
  trapezoidal rule and divided by the time span. 0 is perfect; 0.25 is what a
  constant S = 0.5 scores.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .grid import check_time_event, check_time_grid


def survival_curves(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """``S(tau_k) = prod_{j <= k} (1 - h_j)`` per patient, shape ``(n, K)``, from hazard logits ``(n, K)``."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64) if isinstance(logits, np.ndarray) else logits.double())
    # log(1 - sigmoid(z)) = logsigmoid(-z), stable for large |z|
    return torch.exp(torch.cumsum(torch.nn.functional.logsigmoid(-z), dim=1)).numpy()


def restricted_mean_survival(curves: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Expected survival time up to ``tau_K`` with S constant on each interval at its right-edge value
    (a lower bound): ``sum_k S(tau_k) (tau_k - tau_{k-1})``. Higher = longer predicted survival."""
    grid = check_time_grid(edges)
    widths = np.diff(np.concatenate([[0.0], grid]))
    return np.asarray(curves, dtype=np.float64) @ widths


def concordance(time: np.ndarray, event: np.ndarray, predicted_time: np.ndarray) -> float | None:
    """Harrell's C of ``predicted_time`` (higher = longer survival); None without a comparable pair."""
    from lifelines.utils import concordance_index

    t, e = check_time_event(time, event)
    try:
        return float(concordance_index(t, np.asarray(predicted_time, dtype=np.float64), e))
    except ZeroDivisionError:  # lifelines: no admissible pairs (no event, or all tied)
        return None


def integrated_brier(curves: np.ndarray, time: np.ndarray, event: np.ndarray, edges: np.ndarray) -> float | None:
    """IPCW integrated Brier score over the grid edges strictly inside the rows' follow-up.

    None when fewer than one edge lies before the last observed time or no row has an event.
    """
    grid = check_time_grid(edges)
    t, e = check_time_event(time, event)
    S = np.asarray(curves, dtype=np.float64)
    if S.shape != (t.size, grid.size):
        raise ValueError(f"curves have shape {S.shape}, expected ({t.size}, {grid.size})")
    inside = (grid >= t.min()) & (grid < t.max())
    if not inside.any() or e.sum() == 0:
        return None
    from torchsurv.metrics.brier_score import BrierScore
    from torchsurv.stats.ipcw import get_ipcw

    tt, ee = torch.as_tensor(t), torch.as_tensor(e).bool()
    new_time = torch.as_tensor(grid[inside])
    brier = BrierScore()
    brier(
        torch.as_tensor(S[:, inside]),
        ee,
        tt,
        new_time=new_time,
        weight=get_ipcw(ee, tt),
        weight_new_time=get_ipcw(ee, tt, new_time),
    )
    value = float(brier.integral())
    return value if math.isfinite(value) else None
