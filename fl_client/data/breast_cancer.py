"""Built-in real data: Wisconsin diagnostic breast cancer (569 patients, 30
features), shipped with scikit-learn, partitioned into N hospitals.

Label: 1 = malignant, 0 = benign (sklearn's own target is the reverse).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .errors import ConfigError
from .hospital import HospitalData
from .partition import PARTITIONERS, bootstrap_rows, partition_with
from .preprocess import Standardizer, derive_seed, split_train_test, split_validation, warn

DEFAULTS = {
    "name": "breast_cancer",
    "partitioner": "iid",
    "alpha": 0.5,
    "quantity_alpha": 1.0,
    "min_rows": 10,
    "test_fraction": 0.2,
    "validation_fraction": 0.0,  # of the training rows, held out for best-round selection (0: none)
    "rows_per_hospital": 40,  # bootstrap partitioner only (scale benchmarks)
}


@lru_cache(maxsize=1)
def _pooled() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    X = np.asarray(ds.data, dtype=np.float64)
    y = (np.asarray(ds.target) == 0).astype(np.float32)  # malignant = 1
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y, tuple(str(f) for f in ds.feature_names)


def builtin_options(cfg: dict, defaults: dict) -> dict:
    """A built-in data set's options: ``defaults`` overlaid with the set keys; an unknown key is refused.

    Keys of the csv kind are tolerated when unset (a structured config that
    merges both kinds fills them with null / []).
    """
    cfg = {k: v for k, v in cfg.items() if not (k in ("schema", "base_dir", "hospitals") and not v)}
    unknown = sorted(k for k in cfg if k not in defaults and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in dataset config (name: {cfg.get('name')}); allowed: {sorted(defaults)}"
        )
    return {**defaults, **{k: v for k, v in cfg.items() if v is not None}}


def _options(cfg: dict) -> dict:
    opts = builtin_options(cfg, DEFAULTS)
    if opts["partitioner"] not in PARTITIONERS:
        raise ConfigError(f"dataset.partitioner must be one of {', '.join(PARTITIONERS)}; got {opts['partitioner']!r}")
    return opts


def _partition(opts: dict, num_hospitals: int, seed: int) -> list[np.ndarray]:
    _, y, _ = _pooled()
    return partition_with(y, num_hospitals, seed, opts)


def _build(opts: dict, rows: np.ndarray, index: int, seed: int) -> HospitalData:
    X, y, names = _pooled()
    hid = f"hospital_{index}"
    Xh, yh = X[rows], y[rows]
    if len(np.unique(yh)) < 2:
        warn(f"{hid}: its data holds a single class ({int(yh[0])}); it still takes part")
    tr, te = split_train_test(yh, float(opts["test_fraction"]), derive_seed(seed, index), hid)
    tr, va = split_validation(yh, tr, opts["validation_fraction"], derive_seed(seed, index, stream=1), hid)
    s = Standardizer().fit(Xh[tr])
    X_train, X_test, X_val = (s.transform(Xh[rows]).astype(np.float32) for rows in (tr, te, va))
    return HospitalData(hid, X_train, yh[tr], X_test, yh[te], list(names), X_val, yh[va])


def load_breast_cancer_hospitals(cfg: dict, num_hospitals: int, seed: int) -> list[HospitalData]:
    opts = _options(cfg)
    parts = _partition(opts, num_hospitals, seed)
    return [_build(opts, rows, i, seed) for i, rows in enumerate(parts)]


def load_breast_cancer_hospital(cfg: dict, index: int, num_hospitals: int, seed: int) -> HospitalData:
    opts = _options(cfg)
    if opts["partitioner"] == "bootstrap" and 0 <= index < num_hospitals:
        # each hospital's rows are independent of the others': no need to draw all N
        if int(opts["rows_per_hospital"]) < max(1, int(opts["min_rows"])):
            _partition(opts, 1, seed)  # raises the partitioner's error
        return _build(opts, bootstrap_rows(len(_pooled()[1]), index, seed, int(opts["rows_per_hospital"])), index, seed)
    parts = _partition(opts, num_hospitals, seed)
    return _build(opts, parts[index], index, seed)
