"""The YAML schema that describes a study's hospital CSV files.

Every hospital of a study uses the same schema, so every hospital gets the
same feature layout (numeric columns in schema order, then one one-hot block
per categorical column with the categories in schema order). See docs/DATA.md
for the full reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .csv_rules import TargetRule, canon, parse_rule
from .csv_target import CsvTarget, parse_target
from .errors import MissingFileError, SchemaError

__all__ = ["CsvSchema", "CsvTarget", "TargetRule", "canon", "load_schema", "parse_rule", "parse_schema"]

SCHEMA_KEYS = {
    "target": "required: {column: <name>, positive: <rule>} (binary), or with type multiclass / regression / survival",
    "numeric": "list of numeric feature columns",
    "categorical": "mapping column -> list of allowed categories",
    "missing_values": 'tokens meaning "missing" (default ["?", "NA", ""])',
    "drop": "columns present in the files but not used",
    "missing_rows": "drop | impute_mean (default drop)",
    "unknown": "error | ignore: a category not in the schema (default error)",
    "test_fraction": "fraction of each hospital's rows held out for test (default 0.2)",
    "delimiter": 'CSV field separator (default ",")',
    "scaling": "site | declared: numeric columns standardised per hospital, or `ranges` mapped onto [-1, 1]",
    "ranges": "mapping numeric column -> [lo, hi], the study-wide declared range (needed by scaling: declared)",
    "stats": "descriptive statistics: value ranges and bins, categories, strata, survival (docs/STATS.md)",
}
DEFAULT_MISSING = ("?", "NA", "")


@dataclass(frozen=True)
class CsvSchema:
    target: CsvTarget
    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> category labels (as written in the schema)
    missing_values: list[str] = field(default_factory=lambda: list(DEFAULT_MISSING))
    drop: list[str] = field(default_factory=list)
    missing_rows: str = "drop"
    unknown: str = "error"
    test_fraction: float = 0.2
    delimiter: str = ","
    source: str = "<schema>"
    stats: dict[str, Any] | None = None  # checked by fedledger.stats.query when a query is built from it
    scaling: str = "site"  # site: each hospital's training mean/SD; declared: `ranges` onto [-1, 1]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # numeric column -> (lo, hi)

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col, cats in self.categorical.items():
            names += [f"{col}={c}" for c in cats]
        return names

    @property
    def used_columns(self) -> list[str]:
        return [*self.target.columns, *self.numeric, *self.categorical]


def _str_list(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SchemaError(f"{where}: {key} must be a list of column names, got {value!r}")
    out = [v.strip() for v in value]
    dup = sorted({v for v in out if out.count(v) > 1})
    if dup:
        raise SchemaError(f"{where}: {key} lists {dup} more than once")
    return out


def parse_schema(data: Any, source: str = "<schema>") -> CsvSchema:
    """Validate a schema mapping (already loaded from YAML). Fails fast on an
    unknown key, a missing required key or a bad value, naming the file."""
    where = source
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: the schema must be a YAML mapping of keys, got {type(data).__name__}")
    unknown = [k for k in data if k not in SCHEMA_KEYS]
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {unknown} (typo?); allowed keys: {', '.join(SCHEMA_KEYS)}")
    if "target" not in data:
        raise SchemaError(f"{where}: missing required key 'target' ({SCHEMA_KEYS['target']})")
    target = parse_target(data["target"], where)

    numeric = _str_list(data.get("numeric"), "numeric", where)
    drop = _str_list(data.get("drop"), "drop", where)

    cat_raw = data.get("categorical") or {}
    if not isinstance(cat_raw, Mapping):
        raise SchemaError(f"{where}: categorical must be a mapping column -> [categories], got {cat_raw!r}")
    categorical: dict[str, list[str]] = {}
    for col, cats in cat_raw.items():
        if not isinstance(col, str) or not col.strip():
            raise SchemaError(f"{where}: categorical column name {col!r} must be a string")
        if not isinstance(cats, list) or not cats:
            raise SchemaError(
                f"{where}: categorical.{col} must be a non-empty list of allowed categories, got {cats!r}"
            )
        keys = []
        for c in cats:
            if isinstance(c, bool) or c is None or isinstance(c, (list, dict)):
                raise SchemaError(
                    f"{where}: categorical.{col} has category {c!r}; categories must be numbers or "
                    "strings (quote yes/no/true/false/null in YAML)"
                )
            keys.append(canon(c))
        if len(set(keys)) != len(keys):
            raise SchemaError(f"{where}: categorical.{col} lists a category more than once: {cats!r}")
        categorical[col.strip()] = [str(c).strip() for c in cats]

    if not numeric and not categorical:
        raise SchemaError(f"{where}: no features: list columns under 'numeric' and/or 'categorical'")
    seen: dict[str, str] = dict.fromkeys(target.columns, "target")
    for group, cols in (("numeric", numeric), ("categorical", list(categorical)), ("drop", drop)):
        for c in cols:
            if c in seen:
                raise SchemaError(f"{where}: column {c!r} is listed under both {seen[c]} and {group}")
            seen[c] = group

    mv = data.get("missing_values", list(DEFAULT_MISSING))
    if mv is None:
        mv = []
    if not isinstance(mv, list) or any(isinstance(v, (bool, list, dict)) for v in mv):
        raise SchemaError(f"{where}: missing_values must be a list of tokens (quote them), got {mv!r}")
    missing_values = ["" if v is None else str(v).strip() for v in mv]

    missing_rows = data.get("missing_rows", "drop")
    if missing_rows not in ("drop", "impute_mean"):
        raise SchemaError(f"{where}: missing_rows must be 'drop' or 'impute_mean', got {missing_rows!r}")
    unknown_cat = data.get("unknown", "error")
    if unknown_cat not in ("error", "ignore"):
        raise SchemaError(f"{where}: unknown must be 'error' or 'ignore', got {unknown_cat!r}")
    tf = data.get("test_fraction", 0.2)
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0.0 < float(tf) < 1.0:
        raise SchemaError(f"{where}: test_fraction must be a number in (0, 1), got {tf!r}")
    delim = data.get("delimiter", ",")
    if not isinstance(delim, str) or len(delim) != 1:
        raise SchemaError(f"{where}: delimiter must be one character, got {delim!r}")

    scaling, ranges = _scaling(data, numeric, where)

    stats = data.get("stats")
    if stats is not None and not isinstance(stats, Mapping):
        raise SchemaError(f"{where}: stats must be a mapping (numeric, categorical, strata, survival), got {stats!r}")

    return CsvSchema(
        scaling=scaling,
        ranges=ranges,
        stats=None if stats is None else dict(stats),
        target=target,
        numeric=numeric,
        categorical=categorical,
        missing_values=missing_values,
        drop=drop,
        missing_rows=missing_rows,
        unknown=unknown_cat,
        test_fraction=float(tf),
        delimiter=delim,
        source=source,
    )


def load_schema(path: str | Path) -> CsvSchema:
    """Read and validate a schema YAML file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"schema file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SchemaError(f"{p}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise SchemaError(f"{p}: not a UTF-8 text file ({e})") from None
    if data is None:
        raise SchemaError(f"{p}: the schema file is empty")
    return parse_schema(data, source=str(p))


def _scaling(data: Mapping[str, Any], numeric: list[str], where: str) -> tuple[str, dict[str, tuple[float, float]]]:
    """``scaling`` and, for ``declared``, a ``[lo, hi]`` range for every numeric column (hi > lo)."""
    scaling = data.get("scaling", "site")
    if scaling not in ("site", "declared"):
        raise SchemaError(f"{where}: scaling must be 'site' or 'declared', got {scaling!r}")
    raw = data.get("ranges") or {}
    if not isinstance(raw, Mapping):
        raise SchemaError(f"{where}: ranges must map numeric columns to [lo, hi], got {raw!r}")
    ranges: dict[str, tuple[float, float]] = {}
    for col, pair in raw.items():
        if col not in numeric:
            raise SchemaError(f"{where}: ranges.{col}: not a numeric column of the schema ({numeric})")
        ok = (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        )
        if not ok or not float(pair[1]) > float(pair[0]):
            raise SchemaError(f"{where}: ranges.{col} must be [lo, hi] numbers with hi > lo, got {pair!r}")
        ranges[str(col)] = (float(pair[0]), float(pair[1]))
    missing = [c for c in numeric if c not in ranges]
    if scaling == "declared" and missing:
        raise SchemaError(f"{where}: scaling: declared needs ranges for every numeric column; missing: {missing}")
    return str(scaling), ranges
