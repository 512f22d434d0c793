"""A descriptive-statistics query: what a researcher asks every hospital, and its public hash.

The query names the columns (with the value ranges and histogram bins the
schema declares), the categorical columns (with their categories), the
stratum column, the survival columns and time grid, an optional cohort filter,
the DP mechanism and its (epsilon, delta), and the small-cell threshold. Its
hash is the ``queryHash`` recorded on chain::

    query_hash = SHA-256(b"FEDLEDGER-STATSQUERY-v1" || canonical_json(query))

``canonical_json`` is UTF-8 JSON with sorted keys, no whitespace, ASCII only,
numbers as Python's ``json`` writes them (floats in shortest round-trip form).
docs/HASHES.md specifies it; tests/test_stats_query.py pins a vector.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

QUERY_DOMAIN = b"FEDLEDGER-STATSQUERY-v1"
MECHANISMS = ("laplace", "gaussian")


class QueryError(ValueError):
    """A query field is missing or malformed; the message names it."""


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise QueryError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise QueryError(f"{what} must be a column name, got {value!r}")
    return value.strip()


@dataclass(frozen=True)
class NumericVar:
    """A numeric column: values are clipped to [lo, hi]; ``bins`` are the histogram edges (lo .. hi)."""

    name: str
    lo: float
    hi: float
    bins: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name, "numeric variable"))
        lo, hi = _finite(self.lo, f"{self.name}.lo"), _finite(self.hi, f"{self.name}.hi")
        if not lo < hi:
            raise QueryError(f"{self.name}: range [lo, hi] needs lo < hi, got [{lo}, {hi}]")
        edges = tuple(_finite(e, f"{self.name}.bins") for e in self.bins)
        if len(edges) < 2 or edges[0] != lo or edges[-1] != hi or any(b <= a for a, b in zip(edges, edges[1:])):
            raise QueryError(f"{self.name}: bins must rise strictly from lo={lo} to hi={hi}, got {list(edges)}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "bins", edges)

    @property
    def centre(self) -> float:
        """Sums are released around the range's centre: sensitivity (hi - lo) / 2, not max |x|."""
        return (self.lo + self.hi) / 2

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


@dataclass(frozen=True)
class CategoricalVar:
    """A categorical column and its categories (as the schema writes them)."""

    name: str
    categories: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name, "categorical variable"))
        cats = tuple(str(c).strip() for c in self.categories)
        if not cats or len(set(cats)) != len(cats):
            raise QueryError(f"{self.name}: categories must be a non-empty list without repeats, got {list(cats)}")
        object.__setattr__(self, "categories", cats)


@dataclass(frozen=True)
class Survival:
    """Time-to-event columns and the time grid: exits are counted per grid interval."""

    time: str
    event: str
    grid: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _name(self.time, "survival.time"))
        object.__setattr__(self, "event", _name(self.event, "survival.event"))
        grid = tuple(_finite(t, "survival.grid") for t in self.grid)
        if len(grid) < 2 or grid[0] != 0.0 or any(b <= a for a, b in zip(grid, grid[1:])):
            raise QueryError(f"survival.grid must start at 0 and rise strictly, got {list(grid)}")
        object.__setattr__(self, "grid", grid)


@dataclass(frozen=True)
class CohortFilter:
    """Keep rows with ``lo <= column <= hi`` (inclusive): the cohort the query describes."""

    column: str
    lo: float
    hi: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "column", _name(self.column, "cohort column"))
        lo, hi = _finite(self.lo, f"cohort {self.column}.lo"), _finite(self.hi, f"cohort {self.column}.hi")
        if lo > hi:
            raise QueryError(f"cohort {self.column}: lo {lo} > hi {hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


@dataclass(frozen=True)
class StatsQuery:
    """One descriptive-statistics query (see the module docstring); frozen, hashed canonically."""

    numeric: tuple[NumericVar, ...]
    categorical: tuple[CategoricalVar, ...] = ()
    strata: CategoricalVar | None = None
    survival: Survival | None = None
    cohort: tuple[CohortFilter, ...] = ()
    mechanism: str = "laplace"
    epsilon: float = 1.0
    delta: float = 0.0
    min_cell: int = 5
    per_site: bool = False

    def __post_init__(self) -> None:
        if not self.numeric and not self.categorical and self.survival is None:
            raise QueryError("a query needs at least one numeric or categorical variable or a survival block")
        names = [v.name for v in self.numeric] + [c.name for c in self.categorical]
        if len(set(names)) != len(names):
            raise QueryError(f"a column is asked for twice: {names}")
        if self.mechanism not in MECHANISMS:
            raise QueryError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        eps = _finite(self.epsilon, "epsilon")
        if not eps > 0:
            raise QueryError(f"epsilon must be > 0, got {eps}")
        delta = _finite(self.delta, "delta")
        if self.mechanism == "laplace" and delta != 0.0:
            raise QueryError("the laplace mechanism is pure epsilon: delta must be 0")
        if self.mechanism == "gaussian" and not 0.0 < delta < 1.0:
            raise QueryError(f"the gaussian mechanism needs 0 < delta < 1, got {delta}")
        if isinstance(self.min_cell, bool) or not isinstance(self.min_cell, int) or self.min_cell < 1:
            raise QueryError(f"min_cell must be an integer >= 1, got {self.min_cell!r}")
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "delta", delta)

    @property
    def strata_levels(self) -> tuple[str, ...]:
        """The strata the layout has: the stratum column's categories, or one stratum ``all``."""
        return self.strata.categories if self.strata is not None else ("all",)

    def to_mapping(self) -> dict[str, Any]:
        """The query's hashed content as plain JSON types (tuples as lists)."""
        return {
            "numeric": [{"name": v.name, "lo": v.lo, "hi": v.hi, "bins": list(v.bins)} for v in self.numeric],
            "categorical": [{"name": c.name, "categories": list(c.categories)} for c in self.categorical],
            "strata": None
            if self.strata is None
            else {"name": self.strata.name, "categories": list(self.strata.categories)},
            "survival": None
            if self.survival is None
            else {"time": self.survival.time, "event": self.survival.event, "grid": list(self.survival.grid)},
            "cohort": [{"column": f.column, "lo": f.lo, "hi": f.hi} for f in self.cohort],
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "min_cell": self.min_cell,
            "per_site": self.per_site,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StatsQuery:
        """Parse a mapping (YAML, JSON, Hydra); unknown keys are refused by name."""
        allowed = set(cls(numeric=(NumericVar("x", 0, 1, (0, 1)),)).to_mapping())
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise QueryError(f"unknown query key(s) {unknown}; allowed: {sorted(allowed)}")
        try:
            strata = data.get("strata")
            surv = data.get("survival")
            return cls(
                numeric=tuple(
                    NumericVar(v["name"], v["lo"], v["hi"], tuple(v["bins"])) for v in data.get("numeric") or ()
                ),
                categorical=tuple(
                    CategoricalVar(c["name"], tuple(c["categories"])) for c in data.get("categorical") or ()
                ),
                strata=None if not strata else CategoricalVar(strata["name"], tuple(strata["categories"])),
                survival=None if not surv else Survival(surv["time"], surv["event"], tuple(surv["grid"])),
                cohort=tuple(CohortFilter(f["column"], f["lo"], f["hi"]) for f in data.get("cohort") or ()),
                mechanism=str(data.get("mechanism", "laplace")),
                epsilon=data.get("epsilon", 1.0),
                delta=data.get("delta", 0.0),
                min_cell=data.get("min_cell", 5),
                per_site=bool(data.get("per_site", False)),
            )
        except (KeyError, TypeError) as exc:
            raise QueryError(f"malformed query: missing or wrong field {exc}") from exc

    def canonical_json(self) -> bytes:
        return canonical_json(self.to_mapping())

    def hash(self) -> bytes:
        """The public query hash (bytes32), as recorded on chain."""
        return hashlib.sha256(QUERY_DOMAIN + self.canonical_json()).digest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII: the byte form the query hash covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
