"""A researcher's own data loader (``dataset=own dataset._target_=package.module.function``), held to the contract.

The function is called once per hospital as
``function(index=i, num_hospitals=n, seed=s, **kwargs)`` and returns that
hospital's :class:`HospitalData`, or a mapping with the same keys
(``hospital_id``, ``X_train``, ``y_train``, ``X_test``, ``y_test``,
``feature_names``; optional ``X_val``, ``y_val`` and the task's ``task``,
``num_outputs``, ``target_scale``, ``class_labels``, binary by default). What
it returns is checked here, every problem naming the field: features finite
numbers of shape ``(n, d)`` with ``d`` the number of feature names, one target
per row (binary: 0/1; multiclass: class indices 0..K-1), at least one
training row (docs/DATA.md, "Your own data loader").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ConfigError, DataError
from .hospital import HospitalData

KEYS = ("name", "_target_", "kwargs", "validation_fraction")
REQUIRED = ("hospital_id", "X_train", "y_train", "X_test", "y_test", "feature_names")
OPTIONAL = ("X_val", "y_val", "task", "num_outputs", "target_scale", "class_labels")
TASK_KEYS = OPTIONAL[2:]


class LoaderContractError(DataError):
    """An own loader returned something that is not a hospital's data; the message names the field."""


def _function(cfg: Mapping[str, Any]) -> Any:
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ConfigError(f"dataset=own takes {', '.join(KEYS)}; unknown key(s) {unknown}")
    if float(cfg.get("validation_fraction") or 0.0) != 0.0:
        raise ConfigError("dataset=own: your loader returns X_val/y_val itself; leave dataset.validation_fraction 0")
    target = cfg.get("_target_")
    module_name, _, name = str(target or "").rpartition(".")
    if not module_name:
        raise ConfigError(f"dataset=own needs dataset._target_=package.module.function, got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"dataset._target_={target!r}: module {module_name!r} is not importable ({exc}); put its folder on PYTHONPATH"
        ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"dataset._target_={target!r}: {module_name!r} has no function {name!r}")
    return fn


def _array(where: str, key: str, value: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise LoaderContractError(f"{where}: {key} is not numeric ({exc})") from None
    if arr.ndim != ndim:
        want = "(n, d): one row per record, one column per feature name" if ndim == 2 else "(n,): one label per row"
        raise LoaderContractError(f"{where}: {key} has shape {arr.shape}, expected {want}")
    if not np.isfinite(arr).all():
        raise LoaderContractError(f"{where}: {key} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def check_hospital(returned: Any, where: str) -> HospitalData:
    """The hospital's data from what a loader returned, or :class:`LoaderContractError` naming the field."""
    if isinstance(returned, HospitalData):
        fields = {k: getattr(returned, k) for k in REQUIRED + OPTIONAL}
    elif isinstance(returned, Mapping):
        missing = [k for k in REQUIRED if k not in returned]
        extra = sorted(str(k) for k in returned if k not in REQUIRED + OPTIONAL)
        if missing or extra:
            raise LoaderContractError(f"{where}: returned mapping lacks {missing}, has unknown keys {extra}")
        fields = dict(returned)
    else:
        raise LoaderContractError(f"{where}: returned {type(returned).__name__}, expected HospitalData or a mapping")
    hid, names = fields["hospital_id"], fields["feature_names"]
    if not isinstance(hid, str) or not hid:
        raise LoaderContractError(f"{where}: hospital_id must be a non-empty string, got {hid!r}")
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in (names or [])) or not names:
        raise LoaderContractError(f"{where}: feature_names must be a non-empty list of names, got {names!r}")
    d = len(names)
    out: dict[str, Any] = {"hospital_id": hid, "feature_names": list(names)}
    out |= {k: fields[k] for k in TASK_KEYS if fields.get(k) is not None}
    task, k_out = str(out.get("task", "binary")), int(out.get("num_outputs", 1))
    for split in ("train", "test", "val"):
        X, y = fields.get(f"X_{split}"), fields.get(f"y_{split}")
        if split == "val" and X is None and y is None:
            continue
        X, y = _array(where, f"X_{split}", X, 2), _array(where, f"y_{split}", y, 1)
        if X.shape[1] != d:
            raise LoaderContractError(f"{where}: X_{split} has {X.shape[1]} columns, feature_names names {d}")
        if X.shape[0] != y.shape[0]:
            raise LoaderContractError(f"{where}: X_{split} has {X.shape[0]} rows, y_{split} {y.shape[0]} labels")
        _check_targets(where, split, y, task, k_out)
        out[f"X_{split}"], out[f"y_{split}"] = X, y
    if out["X_train"].shape[0] < 1:
        raise LoaderContractError(f"{where}: X_train has no rows")
    try:
        return HospitalData(**out)
    except ValueError as exc:  # the task's fields (fedledger/tasks.py: an unknown task, a wrong output count)
        raise LoaderContractError(f"{where}: {exc}") from None


def _check_targets(where: str, split: str, y: np.ndarray, task: str, n_outputs: int) -> None:
    """Binary labels 0/1, multiclass class indices 0..K-1; a regression target any finite number."""
    allowed = {0.0, 1.0} if task == "binary" else set(map(float, range(n_outputs))) if task == "multiclass" else None
    if allowed is None:
        return
    bad = sorted({float(v) for v in np.unique(y)} - allowed)
    if bad:
        want = "labels 0 and 1" if task == "binary" else f"class indices 0..{n_outputs - 1} (num_outputs {n_outputs})"
        raise LoaderContractError(f"{where}: y_{split} must hold {want}, also holds {bad[:5]}")


def load_own_hospital(cfg: Mapping[str, Any], index: int, num_hospitals: int, seed: int) -> HospitalData:
    """Hospital ``index`` from the researcher's loader, checked against the contract."""
    fn = _function(cfg)
    kwargs = dict(cfg.get("kwargs") or {})
    where = f"dataset._target_={cfg['_target_']!r} for hospital {index}"
    try:
        returned = fn(index=int(index), num_hospitals=int(num_hospitals), seed=int(seed), **kwargs)
    except DataError:
        raise
    except TypeError as exc:
        raise ConfigError(
            f"{where}: {exc}; the loader must take index, num_hospitals, seed and the keys of dataset.kwargs"
        ) from None
    return check_hospital(returned, where)


def load_own_hospitals(cfg: Mapping[str, Any], num_hospitals: int, seed: int) -> list[HospitalData]:
    """Every hospital from the researcher's loader: distinct ids, one feature layout."""
    hospitals = [load_own_hospital(cfg, i, num_hospitals, seed) for i in range(int(num_hospitals))]
    ids = [h.hospital_id for h in hospitals]
    if len(set(ids)) != len(ids):
        raise LoaderContractError(f"dataset._target_={cfg['_target_']!r}: hospital ids repeat: {ids}")
    for h in hospitals[1:]:
        if h.feature_names != hospitals[0].feature_names:
            raise LoaderContractError(
                f"dataset._target_={cfg['_target_']!r}: hospital {h.hospital_id}'s feature_names differ from "
                f"{hospitals[0].hospital_id}'s; every hospital must give the same features in the same order"
            )
    return hospitals
