"""The rules of a binary CSV target (``target.positive``) and how labels compare.

A label or category compares as a number when it reads as one ("1", "1.0"
and 1 are equal), else as stripped text: :func:`canon`. A binary target's
rule (``"> 0"``, ``"== yes"``, ``"in [1, 2]"``, a list) is a :class:`TargetRule`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import SchemaError

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
