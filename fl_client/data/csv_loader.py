"""Load a hospital's own CSV file described by a study schema (csv_schema).

Per hospital: read the file as text, check its columns against the schema,
parse numbers, binarise the target, one-hot the categorical columns with the
schema's categories (same layout at every hospital), handle missing values,
split train/test (stratified) and standardise numeric columns with the
hospital's own training statistics.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .builtin import DEFAULTS as BC_DEFAULTS
from .csv_problems import BadValues, case_hint, one_error, seen_labels
from .csv_schema import CsvSchema, canon, load_schema
from .csv_target import read_target
from .errors import (
    ConfigError,
    CsvFormatError,
    DataError,
    EmptyFileError,
    MissingColumnError,
    MissingFileError,
    SingleClassStudyError,
    UnexpectedColumnError,
)
from .hospital import HospitalData
from .preprocess import (
    RangeScaler,
    Standardizer,
    check_validation_fraction,
    derive_seed,
    quintiles,
    split_train_test,
    split_validation,
    standardise_target,
    warn,
)

CSV_CFG_KEYS = ("name", "schema", "hospitals", "test_fraction", "validation_fraction", "base_dir")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _original_cwd() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except Exception:  # hydra absent or not running
        pass
    return None


def resolve_path(path: str | os.PathLike, base_dir: str | os.PathLike | None = None, what: str = "file") -> Path:
    """Absolute paths as is; relative ones are tried against ``base_dir``,
    the original working directory (before Hydra), the current directory and
    the repository root, in that order. Raises MissingFileError listing them."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_absolute():
        if not p.is_file():
            raise MissingFileError(f"{what} {str(p)!r} does not exist")
        return p
    bases = [Path(b) for b in (base_dir, _original_cwd(), Path.cwd(), REPO_ROOT) if b is not None]
    tried = []
    for b in bases:
        cand = (b / p).resolve()
        if cand.is_file():
            return cand
        if str(cand) not in tried:
            tried.append(str(cand))
    raise MissingFileError(f"{what} {str(path)!r} does not exist (looked for: {', '.join(tried)})")


def _line(i: int) -> int:
    """File line of data row i (0-based): the header is line 1."""
    return int(i) + 2


def _read(path: Path, schema: CsvSchema) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path,
            dtype=str,
            sep=schema.delimiter,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise EmptyFileError(f"{path}: the file is empty (no header, no rows)") from None
    except pd.errors.ParserError as e:
        raise CsvFormatError(f"{path}: not a readable CSV with delimiter {schema.delimiter!r}: {e}") from None
    except UnicodeDecodeError as e:
        raise CsvFormatError(f"{path}: not UTF-8 text ({e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    # Blank lines become all-empty rows; drop them but keep original indices
    # so error messages give the right file line.
    if len(df):
        blank = (df.apply(lambda col: col.str.strip()) == "").all(axis=1)
        df = df[~blank]
    return df


def _check_columns(df: pd.DataFrame, path: Path, schema: CsvSchema) -> None:
    cols = list(df.columns)
    dups = sorted({c for c in cols if cols.count(c) > 1})
    if dups:
        raise CsvFormatError(f"{path}: column(s) {dups} appear more than once in the header")
    extra = [c for c in cols if c not in schema.used_columns and c not in schema.drop]
    absent = [c for c in schema.used_columns if c not in cols]
    if absent:
        roles = ", ".join(
            f"{c!r} ({schema.target.role(c) if c in schema.target.columns else ('numeric' if c in schema.numeric else 'categorical')})"
            for c in absent
        )
        also = f"; also not in the schema: {extra}" if extra else ""
        raise MissingColumnError(
            f"{path}: missing column(s) {roles} of schema {schema.source}; the file has columns {cols}{also}"
        )
    if extra:
        raise UnexpectedColumnError(
            f"{path}: column(s) {extra} are not in schema {schema.source}; "
            "add them under 'drop' to ignore them, or under 'numeric'/'categorical' to use them"
        )


def load_csv_hospital(
    schema: CsvSchema,
    path: str | os.PathLike,
    hospital_id: str,
    seed: int,
    index: int = 0,
    test_fraction: float | None = None,
    validation_fraction: float = 0.0,
) -> HospitalData:
    """Load one hospital's CSV. ``path`` must already be resolved (or absolute
    / relative to the current directory). The split uses
    ``derive_seed(seed, index)``."""
    return _load_csv(schema, path, hospital_id, seed, index, test_fraction, validation_fraction)[0]


def _load_csv(
    schema: CsvSchema,
    path: str | os.PathLike,
    hospital_id: str,
    seed: int,
    index: int,
    test_fraction: float | None,
    validation_fraction: float = 0.0,
) -> tuple[HospitalData, Counter[str]]:
    """The hospital's data and the target values it saw (for a rule that matches nothing)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"hospital {hospital_id!r}: data file {str(path)!r} does not exist")
    df = _read(path, schema)
    _check_columns(df, path, schema)
    if len(df) == 0:
        raise EmptyFileError(f"{path}: the file has a header but no data rows (hospital {hospital_id!r})")

    tokens = set(schema.missing_values)
    stripped = {c: df[c].str.strip() for c in schema.used_columns}
    missing = {c: stripped[c].isin(tokens) for c in schema.used_columns}
    bad_values = BadValues(path, schema.source, schema.missing_values)

    def numeric(c: str, what: str) -> np.ndarray:
        s, miss = stripped[c], missing[c]
        num = pd.to_numeric(s.where(~miss), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~miss.to_numpy() & ~np.isfinite(num)
        bad_values.add_non_numeric(c, what, [(_line(i), df.at[i, c]) for i in df.index[np.flatnonzero(bad)]])
        return num

    # Target -> the task's y (binary 0/1, a class index, a value); rows with a missing target are always dropped.
    tcol = schema.target.column
    y, t_missing = read_target(
        schema.target,
        {c: stripped[c].to_numpy() for c in schema.target.columns},
        {c: missing[c].to_numpy() for c in schema.target.columns},
        np.array([_line(i) for i in df.index]),
        numeric,
        bad_values,
    )

    X_num = (
        np.column_stack([numeric(c, "numeric") for c in schema.numeric]) if schema.numeric else np.zeros((len(df), 0))
    )

    onehots, row_missing = [], np.zeros(len(df), dtype=bool)
    for c in schema.numeric:
        row_missing |= missing[c].to_numpy()
    for c, cats in schema.categorical.items():
        lookup = {canon(k): j for j, k in enumerate(cats)}
        block = np.zeros((len(df), len(cats)), dtype=np.float64)
        miss = missing[c].to_numpy()
        row_missing |= miss
        unknown_rows = []
        for r, (i, v) in enumerate(zip(df.index, stripped[c].to_numpy())):
            if miss[r]:
                continue
            j = lookup.get(canon(v))
            if j is None:
                unknown_rows.append((i, df.at[i, c]))
            else:
                block[r, j] = 1.0
        if unknown_rows and schema.unknown == "error":
            bad_values.add_unknown(c, cats, [(_line(i), v) for i, v in unknown_rows])
        elif unknown_rows:
            i, v = unknown_rows[0]
            warn(
                f"{hospital_id}: {path}: {len(unknown_rows)} value(s) of column {c!r} not in the schema "
                f"(first: {v!r} at line {_line(i)}) encoded as all-zero (unknown: ignore)"
            )
        onehots.append(block)
    X_cat = np.hstack(onehots) if onehots else np.zeros((len(df), 0))
    bad_values.raise_if_any()
    labels = Counter(str(v) for v in stripped[tcol].to_numpy()[~t_missing])

    keep = ~t_missing
    if t_missing.any():
        warn(f"{hospital_id}: {path}: dropped {int(t_missing.sum())} row(s) with a missing target {tcol!r}")
    if schema.missing_rows == "drop":
        dropped = keep & row_missing
        if dropped.any():
            warn(
                f"{hospital_id}: {path}: dropped {int(dropped.sum())} row(s) with missing feature values (missing_rows: drop)"
            )
        keep &= ~row_missing
    if not keep.any():
        raise EmptyFileError(
            f"{path}: no usable rows for hospital {hospital_id!r} after dropping rows with missing values "
            "(check missing_values tokens, or use missing_rows: impute_mean)"
        )
    X_num, X_cat, y = X_num[keep], X_cat[keep], y[keep]

    survival = schema.target.type == "survival"
    classes = np.unique(y[:, 1] if survival else y)  # survival: the event flag
    if schema.target.type != "regression" and len(classes) < 2 and not survival:
        warn(
            f"{hospital_id}: its data ({path}) holds a single class ({int(classes[0])}) of target "
            f"{tcol!r} under rule {schema.target.text!r}, whose values are {seen_labels(labels)}; it still takes part"
        )
    tf = schema.test_fraction if test_fraction is None else float(test_fraction)
    strata = quintiles(y) if schema.target.type == "regression" else (y[:, 1] if survival else y)
    tr, te = split_train_test(strata, tf, derive_seed(seed, index), hospital_id)
    tr, va = split_validation(strata, tr, validation_fraction, derive_seed(seed, index, stream=1), hospital_id)

    # Standardise numeric columns with training statistics (NaN ignored), or map the schema's declared
    # ranges onto [-1, 1] (scaling: declared); a missing numeric value then becomes 0 (impute_mean).
    s = _scaler(schema).fit(X_num[tr])
    all_nan = np.isnan(X_num[tr]).all(axis=0) if X_num.shape[1] else np.zeros(0, dtype=bool)
    for c in np.array(schema.numeric)[all_nan]:
        warn(f"{hospital_id}: column {c!r} has no observed value in the training rows; imputed as 0")
    Z_tr, Z_te = np.nan_to_num(s.transform(X_num[tr]), nan=0.0), np.nan_to_num(s.transform(X_num[te]), nan=0.0)
    X_train = np.hstack([Z_tr, X_cat[tr]]).astype(np.float32)
    X_test = np.hstack([Z_te, X_cat[te]]).astype(np.float32)
    X_val = np.hstack([np.nan_to_num(s.transform(X_num[va]), nan=0.0), X_cat[va]]).astype(np.float32)
    task: dict[str, Any] = {"task": schema.target.type, "num_outputs": schema.target.num_outputs}
    if schema.target.type == "regression":
        y, task["target_scale"] = standardise_target(y, tr)
    if schema.target.type == "multiclass":
        task["class_labels"] = list(schema.target.classes)
    if survival:
        task["task_options"] = schema.target.options
    data = HospitalData(hospital_id, X_train, y[tr], X_test, y[te], schema.feature_names, X_val, y[va], **task)
    return data, labels


def _scaler(schema: CsvSchema) -> Standardizer | RangeScaler:
    """The numeric columns' scaling the schema agrees on: each site's own (site) or the declared ranges."""
    if schema.scaling == "declared":
        lo, hi = np.array([schema.ranges[c] for c in schema.numeric], dtype=np.float64).reshape(-1, 2).T
        return RangeScaler(lo, hi)
    return Standardizer()


def _csv_cfg(
    cfg: Mapping[str, Any], num_hospitals: int
) -> tuple[CsvSchema, list[tuple[str, Path]], tuple[float | None, float]]:
    # Keys of the breast_cancer kind are tolerated only at their defaults (a
    # structured config that merges both kinds fills them in); set to anything
    # else they are an error, since they would silently do nothing here.
    cfg = {k: v for k, v in cfg.items() if not (k in BC_DEFAULTS and k not in CSV_CFG_KEYS and v == BC_DEFAULTS[k])}
    unknown = sorted(k for k in cfg if k not in CSV_CFG_KEYS and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in dataset config (name: csv); allowed: {list(CSV_CFG_KEYS)}")
    base = cfg.get("base_dir")
    if not cfg.get("schema"):
        raise ConfigError("dataset.schema: path of the schema YAML is required for dataset=csv")
    schema = load_schema(resolve_path(cfg["schema"], base, what="schema file"))
    hospitals = cfg.get("hospitals")
    if not isinstance(hospitals, (list, tuple)) or not hospitals:
        raise ConfigError("dataset.hospitals must be a non-empty list of {id: ..., path: ...}")
    entries = []
    for k, h in enumerate(hospitals):
        if not isinstance(h, Mapping) or set(h) != {"id", "path"} or not h["id"] or not h["path"]:
            raise ConfigError(f"dataset.hospitals[{k}] must be {{id: <name>, path: <csv file>}}, got {h!r}")
        entries.append((str(h["id"]), h["path"]))
    ids = [e[0] for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"dataset.hospitals: duplicate hospital id(s) {dup}")
    if int(num_hospitals) != len(entries):
        raise ConfigError(
            f"num_hospitals={num_hospitals} but dataset.hospitals lists {len(entries)} file(s) ({ids}); "
            f"leave num_hospitals out (a CSV study takes it from the list) or set num_hospitals={len(entries)}"
        )
    tf = cfg.get("test_fraction")
    vf = check_validation_fraction(cfg.get("validation_fraction") or 0.0)
    return schema, [(i, p) for i, p in entries], (None if tf is None else float(tf), vf)


def csv_layout(
    cfg: Mapping[str, Any], num_hospitals: int
) -> tuple[list[str], list[str], str, int, dict[str, Any] | None]:
    """Hospital ids, the schema's feature layout, task, output count and task options; no data file is opened."""
    schema, entries, _ = _csv_cfg(cfg, num_hospitals)
    target = schema.target
    return [hid for hid, _ in entries], schema.feature_names, target.type, target.num_outputs, target.options


def load_csv_hospital_from_cfg(cfg: Mapping[str, Any], index: int, num_hospitals: int, seed: int) -> HospitalData:
    schema, entries, (tf, vf) = _csv_cfg(cfg, num_hospitals)
    hid, p = entries[index]
    path = resolve_path(p, cfg.get("base_dir"), what=f"data file of hospital {hid!r}")
    return load_csv_hospital(schema, path, hid, seed, index=index, test_fraction=tf, validation_fraction=vf)


def load_csv_hospitals(cfg: Mapping[str, Any], num_hospitals: int, seed: int) -> list[HospitalData]:
    """Every hospital of the study; a target rule that gives one class across all of them is
    refused with the values the files actually hold."""
    schema, entries, (tf, vf) = _csv_cfg(cfg, num_hospitals)
    out, labels, errors = [], Counter[str](), []
    for i, (hid, p) in enumerate(entries):
        try:  # every file is checked, so one run names the problems of all of them
            path = resolve_path(p, cfg.get("base_dir"), what=f"data file of hospital {hid!r}")
            data, seen = _load_csv(schema, path, hid, seed, i, tf, vf)
        except DataError as exc:
            errors.append(exc)
            continue
        out.append(data)
        labels.update(seen)
    if errors:
        raise one_error(errors, len(entries))
    classes = sorted({c for h in out for c in h.classes_present})
    if len(classes) == 1 and schema.target.type == "binary":
        matched = "every" if classes == [1] else "no"
        raise SingleClassStudyError(
            f"target rule {schema.target.text!r} on column {schema.target.column!r} matched {matched} row of "
            f"the study's {len(out)} hospital(s); the values seen are {seen_labels(labels)}"
            f"{case_hint(schema.target.values, labels)}. Fix target.positive in {schema.source}"
        )
    return out
