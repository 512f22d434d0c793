"""Errors and warnings raised by the data loaders.

Every error a user can trigger while loading data is a subclass of
:class:`DataError`, so callers (the Flower ClientApp, the Hydra runner) can
catch one class and show the message; the message itself names the file,
column and line involved and says what to do.
"""

from __future__ import annotations


class DataError(Exception):
    """Base class of every data-loading error."""


class ConfigError(DataError):
    """The ``dataset`` config is inconsistent (unknown name/key, wrong
    ``num_hospitals`` for the listed CSV files, bad partitioner option)."""


class PartitionError(DataError):
    """The requested partition cannot be made (e.g. ``min_rows`` too large)."""


class SchemaError(DataError):
    """The CSV schema file does not parse: bad YAML, unknown key (typo),
    missing required key, bad target rule, bad category list."""


class MissingFileError(DataError):
    """A schema or hospital CSV file does not exist."""


class CsvFormatError(DataError):
    """A hospital file is not readable as CSV (wrong delimiter, ragged rows)."""


class EmptyFileError(DataError):
    """A hospital CSV has no data rows (or none left after dropping rows with
    missing values)."""


class MissingColumnError(DataError):
    """A column the schema needs is absent from a hospital CSV."""


class UnexpectedColumnError(DataError):
    """A hospital CSV has a column the schema does not mention (list it under
    ``drop`` to ignore it)."""


class InvalidValuesError(DataError):
    """A hospital CSV holds values the schema cannot read; the message lists
    every such value of the file at once (``problems``: one entry per column),
    so one run shows everything to fix. Raised as such when a file has both
    kinds below."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class NonNumericValueError(InvalidValuesError):
    """A value in a numeric column (or a target with a numeric rule) is not a
    number and not one of the schema's ``missing_values`` tokens."""


class UnknownCategoryError(InvalidValuesError):
    """A categorical column holds a value not listed in the schema (and the
    schema says ``unknown: error``)."""


class InvalidTargetError(InvalidValuesError):
    """A target value the schema's target type refuses: a class not in ``target.classes``,
    a regression value outside ``target.range``, a negative survival time, an event flag not 0/1."""


class SingleClassStudyError(DataError):
    """Across all hospitals of the study the target has only one class."""


class TooFewRowsError(DataError):
    """A hospital has too few rows to split into train and test."""


class DataWarning(UserWarning):
    """Non-fatal data problem (single-class hospital, fallback split, ...)."""
