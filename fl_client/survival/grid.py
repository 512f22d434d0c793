"""The study's fixed time grid and each patient's discrete-time targets on it.

The grid is part of the study protocol (declared in config, never fitted to the
data): upper interval edges ``tau_1 < ... < tau_K``, with ``tau_0 = 0``, so
interval ``k`` (1-based) is ``(tau_{k-1}, tau_k]``.

A patient with follow-up time ``t`` and event flag ``e`` contributes, per interval:

* an event (``e = 1``, ``t <= tau_K``): "survived" terms for every interval whose
  upper edge is ``< t`` and one "event" term for the interval holding ``t``;
* a censored patient (``e = 0``), or an event after ``tau_K``: "survived" terms
  for every interval whose upper edge is ``<= t`` (intervals completed before
  censoring); nothing for the interval it was censored in.

Everything here depends on one patient's own ``(t, e)`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class TimeGridError(ValueError):
    """The declared time grid or a patient's time/event cannot be used."""


def check_time_grid(edges: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """The grid's upper edges as float64: at least 1, finite, > 0 and strictly increasing."""
    if edges is None:
        raise TimeGridError(
            "a survival study needs a fixed time grid: set dataset.time_grid to the upper interval edges "
            "(e.g. [200, 400, 600, 800, 1000]); it is part of the study protocol, never fitted to the data"
        )
    try:
        grid = np.asarray(list(edges), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TimeGridError(f"dataset.time_grid must be a list of numbers, got {edges!r}") from None
    if grid.size < 1:
        raise TimeGridError("dataset.time_grid must hold at least one interval edge")
    if not np.isfinite(grid).all() or not (grid > 0).all():
        raise TimeGridError(f"dataset.time_grid edges must be finite and > 0, got {grid.tolist()}")
    if not (np.diff(grid) > 0).all():
        raise TimeGridError(f"dataset.time_grid edges must be strictly increasing, got {grid.tolist()}")
    return grid


def check_time_event(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Times as float64 (finite, >= 0) and events as 0/1, of the same length."""
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    e = np.asarray(event, dtype=np.float64).reshape(-1)
    if t.shape != e.shape:
        raise TimeGridError(f"{t.size} times but {e.size} event flags")
    if not np.isfinite(t).all() or (t < 0).any():
        raise TimeGridError("survival times must be finite and >= 0")
    if not np.isin(e, (0.0, 1.0)).all():
        raise TimeGridError("event flags must be 0 (censored) or 1 (event)")
    return t, e


def interval_targets(time: np.ndarray, event: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per patient, ``(2, K)`` float32: row 0 the at-risk mask (terms in the likelihood), row 1 the event target.

    Shape ``(n, 2, K)``; see the module docstring for which intervals count.
    """
    grid = check_time_grid(edges)
    t, e = check_time_event(time, event)
    upper = grid[None, :]
    is_event = (e[:, None] == 1.0) & (t[:, None] <= grid[-1])
    survived = np.where(is_event, upper < t[:, None], upper <= t[:, None])
    # the interval holding an event time: lower edge < t <= upper edge (lower edge of the first is 0, t >= 0)
    lower = np.concatenate([[-np.inf], grid[:-1]])[None, :]
    event_here = is_event & (lower < t[:, None]) & (t[:, None] <= upper)
    mask = survived | event_here
    return np.stack([mask, event_here], axis=1).astype(np.float32)


def survival_target(y: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """A survival study's ``y`` (``(n, 2)``: time, event) as the tensor its task trains on, ``(n, 2, K + 1)``.

    ``[:, :, :K]`` is :func:`interval_targets` (at-risk mask, event per interval),
    what the loss reads; ``[:, 0, K]`` the time and ``[:, 1, K]`` the event flag,
    what the metrics read. One patient per row, so DP-SGD's Poisson sampling
    picks a patient's whole target with its features.
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise TimeGridError(f"a survival target has two columns (time, event), got shape {arr.shape}")
    targets = interval_targets(arr[:, 0], arr[:, 1], edges)
    raw = np.stack([arr[:, 0], arr[:, 1]], axis=1)[:, :, None].astype(np.float32)
    return np.concatenate([targets, raw], axis=2)
