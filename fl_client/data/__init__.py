"""FedLedger data loading: built-in breast cancer data with partitioners, and
a hospital's own CSV files described by a YAML schema. See docs/DATA.md."""

from .errors import (
    ConfigError,
    CsvFormatError,
    DataError,
    DataWarning,
    EmptyFileError,
    InvalidTargetError,
    InvalidValuesError,
    MissingColumnError,
    MissingFileError,
    NonNumericValueError,
    PartitionError,
    SchemaError,
    SingleClassStudyError,
    TooFewRowsError,
    UnexpectedColumnError,
    UnknownCategoryError,
)
from .hospital import HospitalData
from .loaders import load_hospital, load_hospitals, study_task
from .partition import partition, partition_dirichlet, partition_iid, partition_quantity

__all__ = [
    "ConfigError",
    "CsvFormatError",
    "DataError",
    "DataWarning",
    "EmptyFileError",
    "HospitalData",
    "InvalidTargetError",
    "InvalidValuesError",
    "MissingColumnError",
    "MissingFileError",
    "NonNumericValueError",
    "PartitionError",
    "SchemaError",
    "SingleClassStudyError",
    "TooFewRowsError",
    "UnexpectedColumnError",
    "UnknownCategoryError",
    "load_hospital",
    "load_hospitals",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_quantity",
    "study_task",
]
