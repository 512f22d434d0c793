"""Built-in real data that ships with scikit-learn (no download), partitioned into N hospitals.

* ``breast_cancer``: Wisconsin diagnostic breast cancer (569 patients, 30
  features), binary. Label: 1 = malignant, 0 = benign (sklearn's own target is the reverse).
* ``diabetes``: diabetes progression (Efron et al. 2004; 442 patients, 10
  baseline features: age, sex, BMI, blood pressure, six blood serum measures),
  regression on a quantitative measure of disease progression one year after
  baseline (25-346). Features are sklearn's raw ones (``scaled=False``); each
  hospital standardises features and target with its own training rows, and
  reports RMSE, MAE and R² in the target's units (fl_client/tasks.py). Its
  train/test split and the ``dirichlet`` partitioner work on the target's
  quintiles (outcome skew for ``dirichlet``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import ConfigError
from .hospital import HospitalData
from .partition import PARTITIONERS, bootstrap_rows, partition_with
from .preprocess import (
    RangeScaler,
    Standardizer,
    check_scaling,
    derive_seed,
    quintiles,
    split_train_test,
    split_validation,
    standardise_target,
    warn,
)

DEFAULTS = {
    "name": "breast_cancer",
    "partitioner": "iid",
    "alpha": 0.5,
    "quantity_alpha": 1.0,
    "min_rows": 10,
    "test_fraction": 0.2,
    "validation_fraction": 0.0,  # of the training rows, held out for best-round selection (0: none)
    "rows_per_hospital": 40,  # bootstrap partitioner only (scale benchmarks)
    "scaling": "site",  # site: each hospital's own training mean/SD; declared: the set's published ranges
}

# The Wisconsin set's published per-feature ranges (Min, Max), in sklearn's feature order: the table
# "Summary Statistics" of load_breast_cancer().DESCR (UCI WDBC documentation). Public constants agreed
# before any hospital reads a row, they are what `scaling: declared` maps onto [-1, 1].
BREAST_CANCER_RANGES = (
    (6.981, 28.11), (9.71, 39.28), (43.79, 188.5), (143.5, 2501.0), (0.053, 0.163),
    (0.019, 0.345), (0.0, 0.427), (0.0, 0.201), (0.106, 0.304), (0.05, 0.097),
    (0.112, 2.873), (0.36, 4.885), (0.757, 21.98), (6.802, 542.2), (0.002, 0.031),
    (0.002, 0.135), (0.0, 0.396), (0.0, 0.053), (0.008, 0.079), (0.001, 0.03),
    (7.93, 36.04), (12.02, 49.54), (50.41, 251.2), (185.2, 4254.0), (0.071, 0.223),
    (0.027, 1.058), (0.0, 1.252), (0.0, 0.291), (0.156, 0.664), (0.055, 0.208),
)  # fmt: skip

Pooled = tuple[np.ndarray, np.ndarray, tuple[str, ...]]


@lru_cache(maxsize=1)
def _breast_cancer() -> Pooled:
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    X = np.asarray(ds.data, dtype=np.float64)
    y = (np.asarray(ds.target) == 0).astype(np.float32)  # malignant = 1
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, tuple(str(f) for f in ds.feature_names)


@lru_cache(maxsize=1)
def _diabetes() -> Pooled:
    from sklearn.datasets import load_diabetes

    ds = load_diabetes(scaled=False)
    X = np.asarray(ds.data, dtype=np.float64)
    y = np.asarray(ds.target, dtype=np.float32)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, tuple(str(f) for f in ds.feature_names)


@dataclass(frozen=True)
class Builtin:
    """One built-in data set: its rows, its task and the labels its splits stratify on."""

    name: str
    pooled: Callable[[], Pooled]
    task: str
    ranges: tuple[tuple[float, float], ...] | None = None  # published ranges for `scaling: declared`

    def strata(self, y: np.ndarray) -> np.ndarray:
        return quintiles(y) if self.task == "regression" else y


BUILTINS = {
    "breast_cancer": Builtin("breast_cancer", _breast_cancer, "binary", BREAST_CANCER_RANGES),
    "diabetes": Builtin("diabetes", _diabetes, "regression"),
}


def builtin_options(name: str, cfg: dict, defaults: dict) -> dict:
    """A built-in data set's options: ``defaults`` overlaid with the set keys; an unknown key is refused.

    Keys of the csv kind are tolerated when unset (a structured config that
    merges both kinds fills them with null / []).
    """
    cfg = {k: v for k, v in cfg.items() if not (k in ("schema", "base_dir", "hospitals") and not v)}
    unknown = sorted(k for k in cfg if k not in defaults and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in dataset config (name: {name}); allowed: {sorted(defaults)}")
    return {**defaults, **{k: v for k, v in cfg.items() if v is not None}}


def _options(data: Builtin, cfg: dict) -> dict:
    opts = builtin_options(data.name, cfg, DEFAULTS)
    try:
        check_scaling(opts["scaling"], "dataset.scaling")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if opts["scaling"] == "declared" and data.ranges is None:
        raise ConfigError(
            f"dataset.scaling=declared needs published value ranges, and {data.name} has none in FedLedger: "
            "use scaling=site"
        )
    if opts["partitioner"] not in PARTITIONERS:
        raise ConfigError(f"dataset.partitioner must be one of {', '.join(PARTITIONERS)}; got {opts['partitioner']!r}")
    return opts


def _partition(data: Builtin, opts: dict, num_hospitals: int, seed: int) -> list[np.ndarray]:
    _, y, _ = data.pooled()
    return partition_with(data.strata(y), num_hospitals, seed, opts)


def _scaler(data: Builtin, opts: dict) -> Standardizer | RangeScaler:
    """The features' scaling: the hospital's own training rows (site) or the set's published ranges."""
    if opts["scaling"] == "declared" and data.ranges is not None:
        lo, hi = np.array(data.ranges).T
        return RangeScaler(lo, hi)
    return Standardizer()


def _build(data: Builtin, opts: dict, rows: np.ndarray, index: int, seed: int) -> HospitalData:
    X, y, names = data.pooled()
    hid = f"hospital_{index}"
    Xh, yh = X[rows], y[rows]
    strata = data.strata(yh)
    if data.task != "regression" and len(np.unique(yh)) < 2:
        warn(f"{hid}: its data holds a single class ({int(yh[0])}); it still takes part")
    tr, te = split_train_test(strata, float(opts["test_fraction"]), derive_seed(seed, index), hid)
    tr, va = split_validation(strata, tr, opts["validation_fraction"], derive_seed(seed, index, stream=1), hid)
    s = _scaler(data, opts).fit(Xh[tr])
    X_train, X_test, X_val = (s.transform(Xh[rows]).astype(np.float32) for rows in (tr, te, va))
    if data.task != "regression":
        return HospitalData(hid, X_train, yh[tr], X_test, yh[te], list(names), X_val, yh[va])
    z, scale = standardise_target(yh, tr)
    return HospitalData(
        hid, X_train, z[tr], X_test, z[te], list(names), X_val, z[va], task="regression", target_scale=scale
    )


def load_builtin_hospitals(name: str, cfg: dict, num_hospitals: int, seed: int) -> list[HospitalData]:
    data = BUILTINS[name]
    opts = _options(data, cfg)
    parts = _partition(data, opts, num_hospitals, seed)
    return [_build(data, opts, rows, i, seed) for i, rows in enumerate(parts)]


def load_builtin_hospital(name: str, cfg: dict, index: int, num_hospitals: int, seed: int) -> HospitalData:
    data = BUILTINS[name]
    opts = _options(data, cfg)
    if opts["partitioner"] == "bootstrap" and 0 <= index < num_hospitals:
        # each hospital's rows are independent of the others': no need to draw all N
        if int(opts["rows_per_hospital"]) < max(1, int(opts["min_rows"])):
            _partition(data, opts, 1, seed)  # raises the partitioner's error
        rows = bootstrap_rows(len(data.pooled()[1]), index, seed, int(opts["rows_per_hospital"]))
        return _build(data, opts, rows, index, seed)
    parts = _partition(data, opts, num_hospitals, seed)
    return _build(data, opts, parts[index], index, seed)


def builtin_layout(name: str, cfg: dict, num_hospitals: int) -> tuple[list[str], list[str], str, int]:
    """Hospital ids, feature names, task and output count, without partitioning any rows (the set is public)."""
    data = BUILTINS[name]
    _options(data, cfg)
    if int(num_hospitals) < 1:
        raise ConfigError(f"num_hospitals must be at least 1, got {num_hospitals}")
    return [f"hospital_{i}" for i in range(int(num_hospitals))], list(data.pooled()[2]), data.task, 1
