"""The YAML schema that describes a study's hospital CSV files.

Every hospital of a study uses the same schema, so every hospital gets the
same feature layout (numeric columns in schema order, then one one-hot block
per categorical column with the categories in schema order). See docs/DATA.md
for the full reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import MissingFileError, SchemaError

SCHEMA_KEYS = {
    "target": "required: {column: <name>, positive: <rule>}",
    "numeric": "list of numeric feature columns",
    "categorical": "mapping column -> list of allowed categories",
    "missing_values": 'tokens meaning "missing" (default ["?", "NA", ""])',
    "drop": "columns present in the files but not used",
    "missing_rows": "drop | impute_mean (default drop)",
    "unknown": "error | ignore: a category not in the schema (default error)",
    "test_fraction": "fraction of each hospital's rows held out for test (default 0.2)",
    "delimiter": 'CSV field separator (default ",")',
    "stats": "descriptive statistics: value ranges and bins, categories, strata, survival (docs/STATS.md)",
}
TARGET_KEYS = ("column", "positive")
DEFAULT_MISSING = ("?", "NA", "")

_CMP = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_IN = re.compile(r"^\s*in\s*(\[.*\])\s*$", re.DOTALL)


def canon(value: Any) -> tuple[str, Any]:
    """Comparable key of a label / category: numbers compare as numbers
    ("1", "1.0" and 1 are equal), everything else as stripped text."""
    if isinstance(value, bool):
        raise TypeError("boolean")
    if isinstance(value, (int, float)):
        return ("n", float(value))
    s = str(value).strip()
    try:
        f = float(s)
    except ValueError:
        return ("s", s)
    return ("n", f) if math.isfinite(f) else ("s", s)


@dataclass(frozen=True)
class TargetRule:
    """Binarisation rule for the target column: ``positive(raw) -> bool``."""

    column: str
    op: str  # one of > >= < <= == != in
    values: tuple  # numbers for > >= < <=; canon() keys for == != in
    text: str

    @property
    def numeric(self) -> bool:
        return self.op in (">", ">=", "<", "<=")

    def positive(self, raw: str) -> bool:
        """Raises ValueError if the rule is numeric and ``raw`` is not a number."""
        if self.numeric:
            x = float(raw)
            if not math.isfinite(x):
                raise ValueError(raw)
            v = self.values[0]
            return {">": x > v, ">=": x >= v, "<": x < v, "<=": x <= v}[self.op]
        key = canon(raw)
        if self.op == "==":
            return key == self.values[0]
        if self.op == "!=":
            return key != self.values[0]
        return key in self.values


@dataclass(frozen=True)
class CsvSchema:
    target: TargetRule
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

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for col, cats in self.categorical.items():
            names += [f"{col}={c}" for c in cats]
        return names

    @property
    def used_columns(self) -> list[str]:
        return [self.target.column, *self.numeric, *self.categorical]


def parse_rule(column: str, positive: Any, where: str) -> TargetRule:
    """Parse ``target.positive``: ``"> x"``, ``">= x"``, ``"< x"``, ``"<= x"``,
    ``"== v"``, ``"!= v"``, ``"in [a, b]"``, a YAML list of positive labels,
    or a bare number/label (same as ``== v``)."""

    def bad(msg: str) -> SchemaError:
        return SchemaError(
            f'{where}: target.positive {positive!r}: {msg}. Write e.g. "> 0", ">= 2", '
            '"== yes", "in [1, 2]" or a list of positive labels'
        )

    try:
        if isinstance(positive, list):
            if not positive:
                raise bad("empty list")
            return TargetRule(column, "in", tuple(canon(v) for v in positive), str(positive))
        if isinstance(positive, (int, float)) and not isinstance(positive, bool):
            return TargetRule(column, "==", (canon(positive),), f"== {positive}")
        if not isinstance(positive, str):
            raise bad("must be a string rule or a list")
        m = _IN.match(positive)
        if m:
            try:
                vals = yaml.safe_load(m.group(1))
            except yaml.YAMLError as e:
                raise bad(f"cannot read the list ({e.__class__.__name__})") from None
            if not isinstance(vals, list) or not vals:
                raise bad("'in' needs a non-empty list")
            return TargetRule(column, "in", tuple(canon(v) for v in vals), positive)
        m = _CMP.match(positive)
        if not m:
            raise bad("not a known rule")
        op, arg = m.group(1), m.group(2).strip().strip("'\"")
        if op in (">", ">=", "<", "<="):
            try:
                v = float(arg)
            except ValueError:
                raise bad(f"{op} needs a number, got {arg!r}") from None
            if not math.isfinite(v):
                raise bad(f"{op} needs a finite number")
            return TargetRule(column, op, (v,), positive)
        return TargetRule(column, op, (canon(arg),), positive)
    except TypeError:
        raise bad("booleans are ambiguous in YAML; quote the label") from None


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
    tgt = data["target"]
    if not isinstance(tgt, Mapping):
        raise SchemaError(f"{where}: target must be a mapping {{column: ..., positive: ...}}, got {tgt!r}")
    bad_t = [k for k in tgt if k not in TARGET_KEYS]
    if bad_t:
        raise SchemaError(f"{where}: unknown key(s) {bad_t} under target; allowed: column, positive")
    for k in TARGET_KEYS:
        if k not in tgt or tgt[k] is None:
            raise SchemaError(f"{where}: missing required key 'target.{k}'")
    if not isinstance(tgt["column"], str) or not tgt["column"].strip():
        raise SchemaError(f"{where}: target.column must be a column name, got {tgt['column']!r}")
    target = parse_rule(tgt["column"].strip(), tgt["positive"], where)

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
    seen: dict[str, str] = {target.column: "target"}
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

    stats = data.get("stats")
    if stats is not None and not isinstance(stats, Mapping):
        raise SchemaError(f"{where}: stats must be a mapping (numeric, categorical, strata, survival), got {stats!r}")

    return CsvSchema(
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
