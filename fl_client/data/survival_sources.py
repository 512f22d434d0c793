"""The survival data sets that ship on disk with lifelines (no download), as pooled arrays.

Each source gives ``(X, time, event, site, feature names)``; ``X`` may hold NaN
(lung), filled later with each hospital's own training means. Only baseline
covariates are features: values measured after randomisation (ACTG 175's CD4
counts at weeks 20 and 96, off-treatment flag) would leak the outcome.

* ``actg175``: ACTG 175 HIV trial, 2,139 patients; time ``days``, event ``cens``
  (1 = AIDS-defining event, death or CD4 drop of 50 %); no site column.
* ``gbsg2``: German Breast Cancer Study Group 2, 686 women; time ``time``
  (days, recurrence-free survival), event ``cens`` (1 = event); no site column.
* ``lung``: NCCTG advanced lung cancer, 228 patients; time ``time`` (days),
  event ``status`` (1 = death); site ``inst`` (institution code). The one
  patient without an institution code is dropped (belongs to no center).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SurvivalSource:
    """One pooled survival data set, read-only."""

    X: np.ndarray
    time: np.ndarray
    event: np.ndarray
    site: np.ndarray | None
    feature_names: tuple[str, ...]
    site_column: str | None


def _read(filename: str) -> pd.DataFrame:
    return pd.read_csv(resources.files("lifelines") / "datasets" / filename, engine="python")


_ACTG_FEATURES = (
    "age", "wtkg", "hemo", "homo", "drugs", "karnof", "oprior", "z30", "preanti",
    "race", "gender", "str2", "strat", "symptom", "cd40", "cd80",
)  # fmt: skip
_LUNG_FEATURES = ("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss")


def _actg175() -> tuple[pd.DataFrame, str, str, str | None]:
    df = _read("ACTG175.csv")
    feats = df[list(_ACTG_FEATURES)].astype(np.float64)
    for arm in (1, 2, 3):  # treatment arm, zidovudine alone (arm 0) the reference
        feats[f"arm_{arm}"] = (df["arms"] == arm).astype(np.float64)
    return feats.assign(_time=df["days"], _event=df["cens"]), "_time", "_event", None


def _gbsg2() -> tuple[pd.DataFrame, str, str, str | None]:
    df = _read("gbsg2.csv")
    feats = df[["age", "tsize", "pnodes", "progrec", "estrec"]].astype(np.float64)
    feats["horTh"] = (df["horTh"] == "yes").astype(np.float64)
    feats["postmenopausal"] = (df["menostat"] == "Post").astype(np.float64)
    feats["tgrade"] = df["tgrade"].map({"I": 1.0, "II": 2.0, "III": 3.0})
    return feats.assign(_time=df["time"], _event=df["cens"]), "_time", "_event", None


def _lung() -> tuple[pd.DataFrame, str, str, str | None]:
    df = _read("lung.csv")
    df = df[df["inst"].notna()].reset_index(drop=True)
    feats = df[list(_LUNG_FEATURES)].astype(np.float64)
    return feats.assign(_time=df["time"], _event=df["status"], _site=df["inst"]), "_time", "_event", "inst"


_SOURCES = {"actg175": _actg175, "gbsg2": _gbsg2, "lung": _lung}
SURVIVAL_DATASETS: tuple[str, ...] = tuple(_SOURCES)


@lru_cache(maxsize=len(_SOURCES))
def survival_source(name: str) -> SurvivalSource:
    """The pooled data set ``name`` (one of :data:`SURVIVAL_DATASETS`)."""
    if name not in _SOURCES:
        raise ValueError(f"unknown survival data set {name!r}; choose one of {', '.join(SURVIVAL_DATASETS)}")
    df, time, event, site_column = _SOURCES[name]()
    names = tuple(c for c in df.columns if not c.startswith("_"))
    X = df[list(names)].to_numpy(np.float64)
    arrays = (X, df[time].to_numpy(np.float64), df[event].to_numpy(np.float64))
    site = df["_site"].to_numpy() if site_column else None
    for a in (*arrays, site):
        if a is not None:
            a.setflags(write=False)
    return SurvivalSource(*arrays, site=site, feature_names=names, site_column=site_column)
