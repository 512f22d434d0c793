"""The ``target`` of a CSV schema, for every task type, and how a hospital file's target cells are read.

``target.type`` (default ``binary``) is the study's task (fedledger/tasks.py):

* ``binary``: ``{column, positive: <rule>}``, the rule of csv_schema.parse_rule -> 0/1;
* ``multiclass``: ``{column, type: multiclass, classes: [0, 1, 2, 3, 4]}``: each value
  must be one of the classes (numbers compare as numbers), which map to 0..K-1 in list order;
* ``regression``: ``{column, type: regression, range: [low, high]}`` (``range`` optional):
  a number, inside the range when one is given;
* ``survival``: ``{type: survival, time: <column>, event: <column>, time_grid: [t1, t2, ...]}``:
  time a number > 0, event 1 (the event was observed) or 0 (censored at that time); ``time_grid`` the
  study's fixed upper interval edges (> 0, strictly increasing, in the time column's unit), one model
  output per interval (fl_client/survival/grid.py).

Every bad target cell of a file is gathered into the file's one error
(csv_problems.BadValues), naming its line, value and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .csv_problems import BadValues
from .csv_rules import TargetRule, canon, parse_rule
from .errors import SchemaError

TARGET_TYPES = ("binary", "multiclass", "regression", "survival")
TYPE_KEYS = {
    "binary": ("column", "positive", "type"),
    "multiclass": ("column", "type", "classes"),
    "regression": ("column", "type", "range"),
    "survival": ("type", "time", "event", "time_grid"),
}
TYPE_HELP = {
    "binary": "{column: <name>, positive: <rule>}",
    "multiclass": "{column: <name>, type: multiclass, classes: [<class>, ...]}",
    "regression": "{column: <name>, type: regression, range: [<low>, <high>]} (range optional)",
    "survival": "{type: survival, time: <column>, event: <column>, time_grid: [<t1>, <t2>, ...]}",
}


@dataclass(frozen=True)
class CsvTarget:
    """What the schema's ``target`` says: the task type, its column(s) and how values map to the model's target."""

    type: str
    column: str  # the target column; survival: the time column
    rule: TargetRule | None = None  # binary
    classes: tuple[str, ...] = ()  # multiclass, as written in the schema
    range: tuple[float, float] | None = None  # regression
    event: str | None = None  # survival: the event column
    time_grid: tuple[float, ...] = ()  # survival: the study's upper interval edges

    @property
    def text(self) -> str:
        """How messages quote the target's rule."""
        if self.rule is not None:
            return self.rule.text
        if self.type == "multiclass":
            return f"classes {list(self.classes)}"
        if self.type == "regression":
            return "regression" + (f" in [{self.range[0]:g}, {self.range[1]:g}]" if self.range else "")
        return f"survival (time {self.column!r}, event {self.event!r})"

    @property
    def numeric(self) -> bool:
        """Whether the target column is read as numbers."""
        return self.rule.numeric if self.rule is not None else self.type in ("regression", "survival")

    @property
    def values(self) -> tuple:
        return self.rule.values if self.rule is not None else tuple(canon(c) for c in self.classes)

    def positive(self, raw: str) -> bool:
        """A binary target's rule on one raw value."""
        if self.rule is None:
            raise TypeError(f"a {self.type} target has no positive rule")
        return self.rule.positive(raw)

    @property
    def columns(self) -> list[str]:
        return [self.column] + ([self.event] if self.event else [])

    @property
    def num_outputs(self) -> int:
        if self.type == "survival":
            return len(self.time_grid)
        return len(self.classes) if self.type == "multiclass" else 1

    @property
    def options(self) -> dict[str, Any] | None:
        """The task's options as the study protocol records them (survival: its grid and loss); None for others."""
        if self.type != "survival":
            return None
        return {"time_grid": list(self.time_grid), "survival_loss": "discrete_hazard"}

    def role(self, column: str) -> str:
        """How an error names one of the target's columns."""
        if self.type == "survival":
            return "survival time" if column == self.column else "survival event"
        return "target"


def _column(tgt: Mapping[str, Any], key: str, where: str) -> str:
    value = tgt.get(key)
    if value is None:
        raise SchemaError(f"{where}: missing required key 'target.{key}'")
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(f"{where}: target.{key} must be a column name, got {value!r}")
    return value.strip()


def _classes(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise SchemaError(f"{where}: target.classes must list at least 2 classes (e.g. [0, 1, 2, 3, 4]), got {raw!r}")
    for c in raw:
        if isinstance(c, bool) or c is None or isinstance(c, (list, dict)):
            raise SchemaError(
                f"{where}: target.classes has {c!r}; classes must be numbers or strings (quote yes/no/true/false/null)"
            )
    keys = [canon(c) for c in raw]
    if len(set(keys)) != len(keys):
        raise SchemaError(f"{where}: target.classes lists a class more than once: {raw!r}")
    return tuple(str(c).strip() for c in raw)


def _range(raw: Any, where: str) -> tuple[float, float] | None:
    if raw is None:
        return None
    ok = isinstance(raw, list) and len(raw) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in raw)
    if not ok or not raw[0] < raw[1]:
        raise SchemaError(f"{where}: target.range must be [low, high] with two numbers, low < high; got {raw!r}")
    return float(raw[0]), float(raw[1])


def _time_grid(raw: Any, where: str) -> tuple[float, ...]:
    """The survival target's fixed interval edges: a non-empty list of finite numbers > 0, strictly increasing."""
    example = "(e.g. time_grid: [180, 365, 730], in the time column's unit)"
    if raw is None:
        raise SchemaError(f"{where}: missing required key 'target.time_grid': the upper interval edges {example}")
    if not isinstance(raw, list) or not raw:
        raise SchemaError(f"{where}: target.time_grid must be a non-empty list of numbers {example}, got {raw!r}")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SchemaError(f"{where}: target.time_grid has {v!r}; every edge must be a finite number {example}")
        if v <= 0:
            raise SchemaError(f"{where}: target.time_grid has {v!r}; every edge must be > 0, got {raw!r}")
    for a, b in zip(raw, raw[1:]):
        if not a < b:
            raise SchemaError(f"{where}: target.time_grid must be strictly increasing; {b!r} follows {a!r} in {raw!r}")
    return tuple(float(v) for v in raw)


def parse_target(tgt: Any, where: str) -> CsvTarget:
    """The schema's ``target`` mapping, checked for its type: unknown or missing keys are named."""
    if not isinstance(tgt, Mapping):
        raise SchemaError(f"{where}: target must be a mapping {TYPE_HELP['binary']}, got {tgt!r}")
    kind = tgt.get("type", "binary")
    if kind not in TARGET_TYPES:
        raise SchemaError(f"{where}: target.type must be one of {', '.join(TARGET_TYPES)}; got {kind!r}")
    allowed = TYPE_KEYS[kind]
    bad = [k for k in tgt if k not in allowed]
    if bad:
        raise SchemaError(
            f"{where}: unknown key(s) {bad} under target (type {kind}); allowed: {', '.join(allowed)}. "
            f"A {kind} target is {TYPE_HELP[kind]}"
        )
    if kind == "survival":
        time, event = _column(tgt, "time", where), _column(tgt, "event", where)
        if time == event:
            raise SchemaError(f"{where}: target.time and target.event must be two columns, both are {time!r}")
        return CsvTarget("survival", time, event=event, time_grid=_time_grid(tgt.get("time_grid"), where))
    column = _column(tgt, "column", where)
    if kind == "multiclass":
        return CsvTarget("multiclass", column, classes=_classes(tgt.get("classes"), where))
    if kind == "regression":
        return CsvTarget("regression", column, range=_range(tgt.get("range"), where))
    if tgt.get("positive") is None:
        raise SchemaError(f"{where}: missing required key 'target.positive'")
    return CsvTarget("binary", column, rule=parse_rule(column, tgt["positive"], where))


Numeric = Callable[[str, str], np.ndarray]  # (column, role) -> numbers, NaN where missing; bad cells recorded


def read_target(
    target: CsvTarget,
    cells: Mapping[str, np.ndarray],
    missing: Mapping[str, np.ndarray],
    lines: np.ndarray,
    numeric: Numeric,
    bad: BadValues,
) -> tuple[np.ndarray, np.ndarray]:
    """(y, missing target) of one file's rows: y as the task's float32 target (binary 0/1, multiclass the
    class index, regression the value, survival ``(n, 2)``: time, event); bad cells go into ``bad`` with their line."""
    t_missing = missing[target.column].copy()
    y = np.zeros(len(t_missing), dtype=np.float32)
    col = target.column
    if target.type == "binary" and target.rule is not None:
        if target.numeric:
            tnum = numeric(col, f"target, rule {target.text!r}")
            readable = ~t_missing & np.isfinite(tnum)
            y[readable] = [target.rule.positive(str(v)) for v in tnum[readable]]
        else:
            y[~t_missing] = [target.rule.positive(v) for v in cells[col][~t_missing]]
        return y, t_missing
    if target.type == "multiclass":
        lookup = {canon(c): j for j, c in enumerate(target.classes)}
        unknown = []
        for r in np.flatnonzero(~t_missing):
            j = lookup.get(canon(cells[col][r]))
            if j is None:
                unknown.append((int(lines[r]), str(cells[col][r])))
            else:
                y[r] = j
        bad.add_bad_target(col, f"target, classes {list(target.classes)}", "not one of the classes", unknown)
        return y, t_missing
    values = numeric(col, f"{target.role(col)}, {target.text}")
    readable = ~t_missing & np.isfinite(values)
    if target.type == "regression" and target.range is not None:
        low, high = target.range
        out = readable & ((values < low) | (values > high))
        cells_out = [(int(lines[r]), str(cells[col][r])) for r in np.flatnonzero(out)]
        bad.add_bad_target(col, f"target, {target.text}", "outside the range", cells_out)
    if target.type == "survival" and target.event is not None:
        not_positive = [(int(lines[r]), str(cells[col][r])) for r in np.flatnonzero(readable & (values <= 0))]
        bad.add_bad_target(col, "survival time", "not a time > 0", not_positive)
        ev = target.event
        t_missing |= missing[ev]
        flags = [canon(v) for v in cells[ev]]
        not_flag = [
            (int(lines[r]), str(cells[ev][r]))
            for r in np.flatnonzero(~missing[ev])
            if flags[r] not in (canon(0), canon(1))
        ]
        bad.add_bad_target(ev, "survival event, 1 = event observed, 0 = censored", "not 0 or 1", not_flag)
        ty = np.zeros((len(t_missing), 2), dtype=np.float32)
        ty[readable, 0] = values[readable]
        ty[:, 1] = [flags[r] == canon(1) for r in range(len(flags))]
        return ty, t_missing
    y[readable] = values[readable]
    return y, t_missing
