"""Survival studies on the data sets lifelines ships (ACTG 175, GBSG2, NCCTG lung), split into hospitals.

A hospital's target is ``y`` of shape ``(n, 2)``: follow-up time and event
flag (1 = event, 0 = censored); its task is ``survival`` with one model output
per interval of the study's fixed time grid (``dataset.time_grid``, part of
the study protocol). Partitioners: ``iid``, ``dirichlet`` (skew of the event
flag), ``quantity`` (fl_client/data/partition.py) and ``by_column``: one
hospital per value of a column (lung: ``inst``, its real institutions;
centers under ``min_site_rows`` merged into one), ``num_hospitals`` following
from the column. Per hospital, as for every data set: a train/test split
stratified by the event flag, standardisation with the hospital's own
training statistics, and a missing value (lung) filled with that hospital's
training mean (0 after standardising).
"""

from __future__ import annotations

import numpy as np

from .builtin import builtin_options
from .errors import ConfigError
from .hospital import HospitalData
from .partition import PARTITIONERS, partition_by_column, partition_with
from .preprocess import Standardizer, derive_seed, split_train_test, split_validation
from .survival_sources import SURVIVAL_DATASETS, SurvivalSource, survival_source

SURVIVAL_PARTITIONERS = tuple(p for p in PARTITIONERS if p != "bootstrap") + ("by_column",)

DEFAULTS = {
    "name": None,
    "partitioner": "iid",
    "alpha": 0.5,
    "quantity_alpha": 1.0,
    "min_rows": 10,
    "test_fraction": 0.2,
    "validation_fraction": 0.0,
    "time_grid": None,  # upper interval edges, in the data's time unit (days): required
    "survival_loss": "discrete_hazard",  # or cox (refused under DP): fl_client/survival/loss.py
    "column": None,  # by_column: the column to split by; None: the data set's site column (lung: inst)
    "min_site_rows": 10,  # by_column: centers with fewer rows are merged into one hospital
    "num_sites": None,  # by_column: the hospitals it gives (num_hospitals follows it in conf/config.yaml)
}


def _options(cfg: dict) -> dict:
    opts = builtin_options(str(cfg.get("name")), cfg, DEFAULTS)
    if opts["name"] not in SURVIVAL_DATASETS:
        raise ConfigError(f"dataset.name must be one of {', '.join(SURVIVAL_DATASETS)}; got {opts['name']!r}")
    if opts["partitioner"] not in SURVIVAL_PARTITIONERS:
        raise ConfigError(
            f"dataset.partitioner must be one of {', '.join(SURVIVAL_PARTITIONERS)} for a survival data set; "
            f"got {opts['partitioner']!r}"
        )
    from fl_client.survival.grid import TimeGridError, check_time_grid
    from fl_client.survival.loss import SURVIVAL_LOSSES

    if opts["survival_loss"] not in SURVIVAL_LOSSES:
        raise ConfigError(
            f"dataset.survival_loss must be one of {', '.join(SURVIVAL_LOSSES)}; got {opts['survival_loss']!r}"
        )

    try:
        opts["time_grid"] = tuple(float(v) for v in check_time_grid(opts["time_grid"]))
    except TimeGridError as exc:
        raise ConfigError(str(exc)) from None
    return opts


def _column(src: SurvivalSource, opts: dict) -> tuple[str, np.ndarray]:
    column = opts["column"] or src.site_column
    if column is None:
        raise ConfigError(
            f"dataset {opts['name']!r} has no site column: partitioner=by_column needs dataset.column "
            f"(one of {list(src.feature_names)})"
        )
    if column == src.site_column and src.site is not None:
        return str(column), src.site
    if column not in src.feature_names:
        raise ConfigError(f"dataset.column={column!r} is not a column of {opts['name']!r}: {list(src.feature_names)}")
    return str(column), src.X[:, src.feature_names.index(column)]


def _partition(src: SurvivalSource, opts: dict, num_hospitals: int, seed: int) -> tuple[list[str], list[np.ndarray]]:
    if opts["partitioner"] != "by_column":
        parts = partition_with(src.event, num_hospitals, seed, opts)
        return [f"hospital_{i}" for i in range(len(parts))], parts
    column, values = _column(src, opts)
    ids, parts = partition_by_column(values, int(opts["min_site_rows"]), prefix=column.replace(".", "_"))
    declared = opts["num_sites"]
    if declared is not None and int(declared) != len(ids):
        raise ConfigError(
            f"dataset.num_sites={declared} but {column!r} gives {len(ids)} hospitals ({', '.join(ids)}) with "
            f"min_site_rows={opts['min_site_rows']}; set dataset.num_sites={len(ids)}"
        )
    if int(num_hospitals) != len(ids):
        raise ConfigError(
            f"num_hospitals={num_hospitals} but partitioner=by_column on {column!r} gives {len(ids)} hospitals "
            f"({', '.join(ids)}); set num_hospitals={len(ids)} (or dataset.num_sites={len(ids)})"
        )
    return ids, parts


def _build(src: SurvivalSource, opts: dict, hid: str, rows: np.ndarray, index: int, seed: int) -> HospitalData:
    X, y = src.X[rows], np.column_stack([src.time[rows], src.event[rows]])
    event = y[:, 1]
    tr, te = split_train_test(event, float(opts["test_fraction"]), derive_seed(seed, index), hid)
    tr, va = split_validation(event, tr, opts["validation_fraction"], derive_seed(seed, index, stream=1), hid)
    s = Standardizer().fit(X[tr])
    X_train, X_test, X_val = (np.nan_to_num(s.transform(X[r]), nan=0.0).astype(np.float32) for r in (tr, te, va))
    return HospitalData(
        hid,
        X_train,
        y[tr],
        X_test,
        y[te],
        list(src.feature_names),
        X_val,
        y[va],
        task="survival",
        num_outputs=1 if opts["survival_loss"] == "cox" else len(opts["time_grid"]),
        task_options={"time_grid": list(opts["time_grid"]), "survival_loss": opts["survival_loss"]},
    )


def load_survival_hospitals(cfg: dict, num_hospitals: int, seed: int) -> list[HospitalData]:
    """Every hospital of a survival study (``dataset.name`` one of :data:`SURVIVAL_DATASETS`)."""
    opts = _options(cfg)
    src = survival_source(opts["name"])
    ids, parts = _partition(src, opts, num_hospitals, seed)
    return [_build(src, opts, hid, rows, i, seed) for i, (hid, rows) in enumerate(zip(ids, parts))]


def load_survival_hospital(cfg: dict, index: int, num_hospitals: int, seed: int) -> HospitalData:
    """Hospital ``index`` alone; the same data as ``load_survival_hospitals(...)[index]``."""
    opts = _options(cfg)
    src = survival_source(opts["name"])
    ids, parts = _partition(src, opts, num_hospitals, seed)
    return _build(src, opts, ids[index], parts[index], index, seed)
