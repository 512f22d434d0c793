"""The raw rows a hospital describes (Table 1 needs values in their units, not the standardised features).

Built-in: ``breast_cancer`` (Wisconsin diagnostic, scikit-learn; ``diagnosis``
is malignant/benign) and ``gbsg2`` (German Breast Cancer Study Group 2,
686 patients with recurrence-free survival, shipped with lifelines), each
partitioned into hospitals by the same partitioners as training. CSV: each
hospital's own file, read with the schema's missing-value tokens, with an
``outcome`` column (``positive`` / ``negative`` by the schema's target rule,
missing when the target is) so a query can be stratified by outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fl_client.data.csv_schema import load_schema
from fl_client.data.partition import partition

BUILTIN = ("breast_cancer", "gbsg2")


def builtin_frame(name: str) -> pd.DataFrame:
    """The whole built-in data set as one frame."""
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        ds = load_breast_cancer()
        df = pd.DataFrame(np.asarray(ds.data, dtype=np.float64), columns=[str(f) for f in ds.feature_names])
        df["diagnosis"] = np.where(np.asarray(ds.target) == 0, "malignant", "benign")
        return df
    if name == "gbsg2":
        from lifelines.datasets import load_gbsg2

        return load_gbsg2()
    raise ValueError(f"unknown built-in data set {name!r}; choose one of {BUILTIN} or a CSV study")


def builtin_hospitals(name: str, num_hospitals: int, seed: int, label: str) -> list[tuple[str, pd.DataFrame]]:
    """The built-in set split into ``num_hospitals`` hospitals (iid partition, stratified report by ``label``)."""
    df = builtin_frame(name)
    parts = partition(df[label].astype(str).to_numpy(), int(num_hospitals), int(seed), method="iid", min_rows=10)
    return [(f"hospital_{i}", df.iloc[rows].reset_index(drop=True)) for i, rows in enumerate(parts)]


def csv_hospitals(schema_path: str | Path, hospitals: Sequence[Mapping[str, str]]) -> list[tuple[str, pd.DataFrame]]:
    """Each hospital's CSV as raw values (missing tokens as NaN); ``hospitals``: ``{id, path}`` entries."""
    schema = load_schema(schema_path)
    out = []
    for h in hospitals:
        path = Path(str(h["path"]))
        if not path.is_file():
            raise FileNotFoundError(f"hospital {h.get('id')!r}: CSV file {str(path)!r} does not exist")
        df = pd.read_csv(path, sep=schema.delimiter, na_values=schema.missing_values, keep_default_na=False, dtype=str)
        if schema.target.column in df.columns:
            df["outcome"] = [_outcome(schema.target.positive, v) for v in df[schema.target.column]]
        for col in df.columns:
            num = pd.to_numeric(df[col], errors="coerce")
            if num.notna().sum() == df[col].notna().sum():
                df[col] = num
        out.append((str(h["id"]), df))
    return out


def _outcome(positive: Callable[[str], bool], raw: object) -> str | None:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    try:
        return "positive" if positive(str(raw)) else "negative"
    except ValueError:
        return None
