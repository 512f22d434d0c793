"""Every unreadable value of one hospital file, gathered, then raised as one error.

A researcher fixing an export should see all of a file's bad values in one
run, not one value per run. Also how a target rule is shown next to the
values it actually saw, for a rule that matched nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError, InvalidTargetError, InvalidValuesError, NonNumericValueError, UnknownCategoryError

SHOWN_PER_COLUMN = 5  # cells quoted per column; the rest are counted
SHOWN_LABELS = 8  # distinct target values quoted when a rule matched nothing

Cell = tuple[int, str]  # (file line, raw value)


def _cells(cells: list[Cell]) -> str:
    shown = ", ".join(f"line {line} {value!r}" for line, value in cells[:SHOWN_PER_COLUMN])
    rest = len(cells) - SHOWN_PER_COLUMN
    return shown + (f" and {rest} more" if rest > 0 else "")


@dataclass
class BadValues:
    """The bad values of one file, by column, in the order the loader meets them."""

    path: Path
    schema_source: str
    missing_tokens: list[str]
    non_numeric: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    target: list[str] = field(default_factory=list)  # target values the schema's target type refuses
    count: int = 0
    columns: set[str] = field(default_factory=set)

    def add_non_numeric(self, column: str, role: str, cells: list[Cell]) -> None:
        if cells:
            self.non_numeric.append(f"column {column!r} ({role}): not a number at {_cells(cells)}")
            self._seen(column, cells)

    def add_unknown(self, column: str, categories: list[str], cells: list[Cell]) -> None:
        if cells:
            self.unknown.append(f"column {column!r}: not in the schema's categories {categories} at {_cells(cells)}")
            self._seen(column, cells)

    def add_bad_target(self, column: str, role: str, problem: str, cells: list[Cell]) -> None:
        """Target cells that are readable but not what the target type allows (a class not listed,
        a value outside the range, a negative survival time, an event flag other than 0/1)."""
        if cells:
            self.target.append(f"column {column!r} ({role}): {problem} at {_cells(cells)}")
            self._seen(column, cells)

    def _seen(self, column: str, cells: list[Cell]) -> None:
        self.count += len(cells)
        self.columns.add(column)

    def raise_if_any(self) -> None:
        """One error naming every bad value: NonNumericValueError, UnknownCategoryError or
        InvalidTargetError when the file has one kind only, else InvalidValuesError."""
        problems = tuple(self.non_numeric + self.unknown + self.target)
        if not problems:
            return
        hints = []
        if self.non_numeric:
            tokens = ", ".join(repr(t) for t in self.missing_tokens)
            hints.append(f"fix a non-number or add it to missing_values [{tokens}]")
        if self.unknown:
            hints.append(
                f"add a category to categorical.<column> in {self.schema_source} (every hospital must use "
                "the same list), mark it as missing, or set 'unknown: ignore'"
            )
        if self.target:
            hints.append(f"correct the target value, mark it as missing, or change target in {self.schema_source}")
        message = (
            f"{self.path}: {self.count} unreadable value(s) in {len(self.columns)} column(s): "
            + "; ".join(problems)
            + ". To fix: "
            + "; ".join(hints)
        )
        found = [
            k
            for k, cells in (
                (NonNumericValueError, self.non_numeric),
                (UnknownCategoryError, self.unknown),
                (InvalidTargetError, self.target),
            )
            if cells
        ]
        kind = found[0] if len(found) == 1 else InvalidValuesError
        raise kind(message, problems)


def seen_labels(counts: Counter[str]) -> str:
    """The target values seen, most frequent first, with their counts: ``'no' (40), 'yes' (38)``."""
    shown = ", ".join(f"{value!r} ({n})" for value, n in counts.most_common(SHOWN_LABELS))
    rest = len(counts) - SHOWN_LABELS
    return shown + (f" and {rest} other value(s)" if rest > 0 else "")


def case_hint(rule_values: tuple, counts: Counter[str]) -> str:
    """' (labels compare exactly: did you mean 'yes'?)' when a label of the rule differs from a seen value only by case."""
    wanted = {str(v[1]).lower(): str(v[1]) for v in rule_values if isinstance(v, tuple) and v[0] == "s"}
    near = sorted({value for value in counts if value.lower() in wanted and value not in wanted.values()})
    if not near:
        return ""
    return f" (labels compare exactly, case included: did you mean {', '.join(repr(v) for v in near)}?)"


def one_error(errors: list[DataError], files: int) -> DataError:
    """The errors of several hospital files as one: their common class (else DataError), every message."""
    if len(errors) == 1:
        return errors[0]
    kinds = {type(e) for e in errors}
    kind = kinds.pop() if len(kinds) == 1 else DataError
    message = f"{len(errors)} of the study's {files} hospital files have errors: " + " | ".join(map(str, errors))
    if issubclass(kind, InvalidValuesError):
        return kind(message, tuple(p for e in errors for p in getattr(e, "problems", ())))
    return kind(message)
