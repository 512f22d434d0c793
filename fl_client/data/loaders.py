"""The two entry points the rest of FedLedger calls to load hospital data.

``load_hospitals(dataset_cfg, num_hospitals, seed)`` loads every hospital
(simulation, baselines); ``load_hospital(dataset_cfg, index, ...)`` loads one
(a Flower client next to its own data). For the same arguments,
``load_hospital(cfg, i, n, s)`` equals ``load_hospitals(cfg, n, s)[i]``.
``study_layout(dataset_cfg, num_hospitals)`` gives the hospitals and the model's
inputs from the configuration alone (a CSV study: its schema), reading no
hospital's rows: what a coordinator sets a study up with (``fedledger provision``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fedledger.tasks import parse_task_options, task_options_text

from .builtin import BUILTINS, builtin_layout, load_builtin_hospital, load_builtin_hospitals
from .csv_loader import csv_layout, load_csv_hospital_from_cfg, load_csv_hospitals
from .errors import ConfigError, SingleClassStudyError
from .hospital import HospitalData
from .own_loader import load_own_hospital, load_own_hospitals
from .survival_data import load_survival_hospital, load_survival_hospitals
from .survival_sources import SURVIVAL_DATASETS

DATASETS = ("breast_cancer", "diabetes", "csv", "own", *SURVIVAL_DATASETS)


def _plain(cfg: Any) -> dict:
    """Accept a dict, any Mapping or an OmegaConf DictConfig."""
    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"dataset config must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def _name(cfg: dict) -> str:
    name = cfg.get("name")
    if name not in DATASETS:
        raise ConfigError(f"dataset.name must be one of {', '.join(DATASETS)}; got {name!r}")
    return name


def load_hospitals(dataset_cfg: Mapping, num_hospitals: int, seed: int) -> list[HospitalData]:
    """Load every hospital of the study.

    Raises :class:`SingleClassStudyError` if the target has only one class
    across all hospitals together (a single hospital with one class only
    warns; see :func:`load_hospital`).
    """
    cfg = _plain(dataset_cfg)
    name = _name(cfg)
    if name in BUILTINS:
        hospitals = load_builtin_hospitals(name, cfg, num_hospitals, seed)
    elif name == "own":
        hospitals = load_own_hospitals(cfg, num_hospitals, seed)
    elif name in SURVIVAL_DATASETS:
        hospitals = load_survival_hospitals(cfg, num_hospitals, seed)
    else:
        hospitals = load_csv_hospitals(cfg, num_hospitals, seed)
    task = study_task(hospitals)
    classes = sorted({c for h in hospitals for c in h.classes_present}) if task["name"] != "regression" else [0, 1]
    if len(classes) < 2:
        raise SingleClassStudyError(
            f"the target has a single class ({classes}) across all {len(hospitals)} hospitals of the "
            "study; a classifier cannot be trained. Check the target column and its positive rule (or classes)."
        )
    return hospitals


def load_hospital(dataset_cfg: Mapping, index: int, num_hospitals: int, seed: int) -> HospitalData:
    """Load hospital ``index`` (0-based) only; same data as ``load_hospitals(...)[index]``.

    A lone client cannot see other hospitals, so the study-wide single-class
    check of :func:`load_hospitals` is not done here; a hospital whose own
    data holds one class gets a :class:`DataWarning` and still loads.
    """
    cfg = _plain(dataset_cfg)
    name = _name(cfg)
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < int(num_hospitals):
        raise ConfigError(f"hospital index must be in 0..{int(num_hospitals) - 1}, got {index!r}")
    if name in BUILTINS:
        return load_builtin_hospital(name, cfg, int(index), num_hospitals, seed)
    if name == "own":
        return load_own_hospital(cfg, int(index), num_hospitals, seed)
    if name in SURVIVAL_DATASETS:
        return load_survival_hospital(cfg, int(index), num_hospitals, seed)
    return load_csv_hospital_from_cfg(cfg, int(index), num_hospitals, seed)


def study_task(hospitals: list[HospitalData]) -> dict[str, Any]:
    """The study's task (``{"name", "num_outputs"}``, and ``"options"`` when it has any, e.g. survival's time
    grid, as the study spec records it): every hospital's, the same."""
    tasks = {(h.task, h.num_outputs, task_options_text(h.task_options)) for h in hospitals}
    if len(tasks) != 1:
        raise ConfigError(f"the hospitals' data are for different tasks: {sorted(tasks)}; a study has one task")
    name, num_outputs, options = tasks.pop()
    out: dict[str, Any] = {"name": name, "num_outputs": int(num_outputs)}
    return {**out, "options": parse_task_options(options)} if options else out


@dataclass(frozen=True)
class StudyLayout:
    """Who takes part, what the model reads and what it predicts, known before any hospital's data is read."""

    hospital_ids: tuple[str, ...]
    feature_names: tuple[str, ...]
    task: str = "binary"
    num_outputs: int = 1
    options: dict[str, Any] | None = None  # the task's options (survival: its time grid), as the study spec has them

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def study_layout(dataset_cfg: Mapping, num_hospitals: int) -> StudyLayout:
    """The study's hospital ids, feature layout and task from its configuration alone.

    A CSV study's layout is its schema's (numeric columns, then one one-hot block per
    categorical column; the target's type and classes): no hospital file is opened, so a
    coordinator without the hospitals' data can set the study up. Row counts and class
    presence are each hospital's own to report (``fedledger check-data``, its consent's cohort size).
    """
    cfg = _plain(dataset_cfg)
    name = _name(cfg)
    if name == "own":
        raise ConfigError(
            "dataset=own has no schema to set a study up from without reading data: its loader is the only "
            "description of the hospitals' data (provision a built-in or CSV study, or run it as a simulation)"
        )
    if name in SURVIVAL_DATASETS:  # public data shipped with lifelines: the layout is the loaded set's
        hospitals = load_survival_hospitals(cfg, int(num_hospitals), 0)
        task = study_task(hospitals)
        return StudyLayout(
            tuple(h.hospital_id for h in hospitals),
            tuple(hospitals[0].feature_names),
            task["name"],
            int(task["num_outputs"]),
            task.get("options"),
        )
    if name in BUILTINS:
        ids, names, kind, num_outputs = builtin_layout(name, cfg, int(num_hospitals))
        return StudyLayout(tuple(ids), tuple(names), kind, int(num_outputs))
    ids, names, kind, num_outputs, options = csv_layout(cfg, int(num_hospitals))
    return StudyLayout(tuple(ids), tuple(names), kind, int(num_outputs), options)
