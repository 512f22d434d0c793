"""Draw the calibrated DP noise for a released vector (scales: fedledger.stats.calibration)."""

from __future__ import annotations

import os

import numpy as np

from fedledger.stats.calibration import NoiseCalibration


def add_noise(values: np.ndarray, calibration: NoiseCalibration, rng: np.random.Generator) -> np.ndarray:
    """``values`` plus Laplace(b) or Normal(0, sigma) noise per cell, from ``rng``.

    The product path seeds ``rng`` from the operating system (``fresh_rng``);
    tests pass a seeded one.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.shape != calibration.scales.shape:
        raise ValueError(f"vector of {x.size} cells, calibration for {calibration.scales.size}")
    if calibration.mechanism == "laplace":
        return x + rng.laplace(0.0, calibration.scales)
    return x + rng.normal(0.0, calibration.scales)


def fresh_rng() -> np.random.Generator:
    """A generator seeded with 256 bits from the OS: a hospital's noise must not be reproducible by others."""
    return np.random.default_rng(np.random.SeedSequence(int.from_bytes(os.urandom(32), "big")))
