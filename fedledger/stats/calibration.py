"""Noise scales of a query's released cells: a public function of the query (hospital and reader agree).

Pure epsilon (Laplace): the query's epsilon is split evenly over the G
groups of a stratum (sequential composition; strata are disjoint, parallel
composition), so a group of sensitivity D gets Laplace scale
``b = m * D * G / epsilon`` (m: the small-cell factor). (epsilon, delta)
(Gaussian): every group is divided by its ``m * D``, which gives the whole
vector L2 sensitivity ``sqrt(G)``; one Gaussian mechanism of noise multiplier
``z`` (the smallest the PRV accountant finds for (epsilon, delta) in one step
of sample rate 1) then takes ``sigma = z * sqrt(G) * m * D`` per group. The
hospital's accountant records it as the history entry ``(z, 1.0, 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedledger.dp.epsilon import derive_noise_multiplier
from fedledger.stats.layout import groups, groups_per_stratum, suppression_factor, vector_size
from fedledger.stats.query import StatsQuery

#: The accountant a Gaussian query is calibrated with (its entry then composes under the hospital's own).
GAUSSIAN_CALIBRATION_ACCOUNTANT = "prv"


@dataclass(frozen=True)
class NoiseCalibration:
    """Per-cell noise scale: Laplace ``b`` or Gaussian ``sigma``; ``noise_multiplier`` for the accountant."""

    mechanism: str
    scales: np.ndarray
    noise_multiplier: float | None  # Gaussian only: the (z, 1.0, 1) accountant entry

    def noise_sd(self) -> np.ndarray:
        """Standard deviation of each cell's noise (Laplace: sqrt(2) * b)."""
        return self.scales * math.sqrt(2.0) if self.mechanism == "laplace" else self.scales


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """z of a single, unsampled Gaussian mechanism at (epsilon, delta)."""
    return derive_noise_multiplier(epsilon, delta, 1.0, 1, GAUSSIAN_CALIBRATION_ACCOUNTANT)


def calibrate(query: StatsQuery) -> NoiseCalibration:
    """The scale of every released cell of ``query`` (see the module docstring)."""
    n_groups = groups_per_stratum(query)
    m = suppression_factor(query)
    scales = np.zeros(vector_size(query))
    if query.mechanism == "laplace":
        for g in groups(query):
            scales[g.cells] = m * g.sensitivity * n_groups / query.epsilon
        return NoiseCalibration("laplace", scales, None)
    z = gaussian_noise_multiplier(query.epsilon, query.delta)
    for g in groups(query):
        scales[g.cells] = z * math.sqrt(n_groups) * m * g.sensitivity
    return NoiseCalibration("gaussian", scales, z)
