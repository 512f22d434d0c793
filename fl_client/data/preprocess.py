"""Per-hospital train/test split and normalisation.

Everything here uses one hospital's own rows only: the split is stratified
within the hospital, and standardisation / mean imputation use statistics of
that hospital's *training* rows, never its test rows or other hospitals.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np

from .errors import DataWarning, TooFewRowsError

log = logging.getLogger(__name__)


def derive_seed(seed: int, index: int, stream: int = 0) -> int:
    """Deterministic per-hospital seed (independent of how many are loaded); ``stream`` > 0 gives an
    independent one for another draw of the same hospital (its validation split)."""
    entropy = [int(seed) & 0xFFFFFFFF, int(index)] + ([int(stream)] if stream else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def warn(message: str) -> None:
    """Log and ``warnings.warn`` a :class:`DataWarning`."""
    log.warning(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def split_train_test(y: np.ndarray, test_fraction: float, seed: int, hospital_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of one hospital's rows, stratified by label.

    Falls back to a plain random split, with a :class:`DataWarning`, when a
    class has fewer than 2 rows or the hospital holds only one class.
    """
    y = np.asarray(y)
    n = len(y)
    if not 0.0 < float(test_fraction) < 1.0:
        raise TooFewRowsError(f"{hospital_id}: test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise TooFewRowsError(f"{hospital_id}: only {n} usable row(s); at least 2 are needed for a train/test split")
    n_test = min(max(1, int(math.ceil(n * float(test_fraction)))), n - 1)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    stratify = len(classes) >= 2 and counts.min() >= 2 and n_test >= len(classes) and n - n_test >= len(classes)
    if len(classes) >= 2 and not stratify:
        warn(
            f"{hospital_id}: too few rows per class for a stratified split with test_fraction="
            f"{test_fraction} (class counts {dict(zip(classes.tolist(), counts.tolist()))}); using a random split"
        )
    if not stratify:
        perm = rng.permutation(n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    # Stratified: per-class test counts by largest remainder, each class >= 1
    # in train and test.
    exact = counts * n_test / n
    k = np.clip(np.floor(exact).astype(int), 1, counts - 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while k.sum() < n_test and i < 10 * len(k):
        c = order[i % len(k)]
        if k[c] < counts[c] - 1:
            k[c] += 1
        i += 1
    while k.sum() > n_test:
        c = int(np.argmax(k - exact))
        if k[c] <= 1:
            break
        k[c] -= 1
    test_parts, train_parts = [], []
    for c, kc in zip(classes, k):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_parts.append(idx[:kc])
        train_parts.append(idx[kc:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def check_validation_fraction(value: object) -> float:
    """``dataset.validation_fraction`` in [0, 1): 0 keeps every non-test row for training (the default)."""
    try:
        fraction = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TooFewRowsError(f"dataset.validation_fraction must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise TooFewRowsError(f"dataset.validation_fraction must be in [0, 1), got {value!r}")
    return fraction


def split_validation(
    y: np.ndarray, train: np.ndarray, fraction: float, seed: int, hospital_id: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) out of the training indices ``train``: the validation rows never
    enter DP-SGD nor the standardisation statistics; 0 returns ``train`` and no validation row."""
    if check_validation_fraction(fraction) == 0.0:
        return train, np.zeros(0, dtype=train.dtype)
    tr, va = split_train_test(np.asarray(y)[train], fraction, seed, f"{hospital_id} (validation split)")
    return train[tr], train[va]


class Standardizer:
    """Column-wise (x - mean) / std with statistics from training rows only.

    NaNs are ignored when fitting; zero-variance (or all-NaN) columns get
    std = 1 so they map to 0 instead of inf/nan.
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
            std = np.nanstd(X, axis=0) if len(X) else np.ones(X.shape[1])
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.mean_, self.std_ = mean, std
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.std_ is not None, "fit first"
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.std_


class RangeScaler:
    """Column-wise map of a declared range [lo, hi] onto [-1, 1], values clipped to it.

    The ranges are agreed study-wide before any data is read (the CSV schema's
    ``ranges``, or a built-in set's published ones), so every hospital scales
    alike and no statistic of any hospital's rows enters it: under label or
    case-mix skew, per-site standardisation moves each site's features by its
    own mean and can erase the very signal the study looks for. NaN stays NaN.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        if lo.shape != hi.shape or not np.all(hi > lo):
            raise ValueError(f"declared ranges must have hi > lo for every column, got lo={lo}, hi={hi}")
        self.lo_, self.hi_ = lo, hi

    def fit(self, X: np.ndarray) -> "RangeScaler":
        """Nothing to learn from the rows: the ranges are declared."""
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return 2.0 * (np.clip(X, self.lo_, self.hi_) - self.lo_) / (self.hi_ - self.lo_) - 1.0


SCALINGS = ("site", "declared")


def check_scaling(value: object, where: str) -> str:
    """``site`` (each hospital's own training mean and SD) or ``declared`` (study-wide declared ranges)."""
    if value not in SCALINGS:
        raise ValueError(f"{where} must be one of {', '.join(SCALINGS)}; got {value!r}")
    return str(value)


def standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both with the training rows' mean/std; returns float32."""
    s = Standardizer().fit(X_train)
    return s.transform(X_train).astype(np.float32), s.transform(X_test).astype(np.float32)


def quintiles(y: np.ndarray) -> np.ndarray:
    """A regression target's quintile (0-4) per row: the strata of its splits and outcome-skew partitions."""
    edges = np.quantile(np.asarray(y, dtype=np.float64), [0.2, 0.4, 0.6, 0.8])
    return np.searchsorted(edges, y, side="right").astype(np.float32)


def standardise_target(y: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """A regression target in standard units of the hospital's training rows, and (mean, std) to undo it."""
    t = Standardizer().fit(np.asarray(y)[train].reshape(-1, 1))
    mean, std = float(t.mean_[0]), float(t.std_[0])  # type: ignore[index]
    return ((np.asarray(y, dtype=np.float64) - mean) / std).astype(np.float32), (mean, std)
