"""A sweep's runs and the mean ± sd the summaries report (experiments/summary.py, experiments/algorithms.py)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every run's results.json under the sweep directory, with its folder as ``_dir``."""
    runs = []
    for path in sorted(sweep_dir.glob("*/results.json")):
        results = json.loads(path.read_text())
        results["_dir"] = str(path.parent)
        runs.append(results)
    return runs


def run_stats(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample sd (0 for one run), min, max and count of the values given (None values dropped)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }
