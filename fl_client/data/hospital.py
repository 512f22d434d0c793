"""HospitalData: one hospital's preprocessed rows, the type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class HospitalData:
    """One hospital's preprocessed data (features standardised with its own
    training statistics; labels 0/1 as float32)."""

    hospital_id: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]

    def __post_init__(self) -> None:
        self.X_train = np.ascontiguousarray(self.X_train, dtype=np.float32)
        self.X_test = np.ascontiguousarray(self.X_test, dtype=np.float32)
        self.y_train = np.ascontiguousarray(self.y_train, dtype=np.float32).reshape(-1)
        self.y_test = np.ascontiguousarray(self.y_test, dtype=np.float32).reshape(-1)
        self.feature_names = [str(f) for f in self.feature_names]
        d = len(self.feature_names)
        for name, X, y in (("train", self.X_train, self.y_train), ("test", self.X_test, self.y_test)):
            if X.ndim != 2 or X.shape[1] != d:
                raise ValueError(f"{self.hospital_id}: X_{name} has shape {X.shape}, expected (n, {d})")
            if X.shape[0] != y.shape[0]:
                raise ValueError(f"{self.hospital_id}: X_{name} has {X.shape[0]} rows, y_{name} {y.shape[0]}")

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def classes_present(self) -> list[int]:
        """Sorted labels present in this hospital's train + test rows."""
        return sorted(int(c) for c in np.unique(np.concatenate([self.y_train, self.y_test])))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HospitalData):
            return NotImplemented
        return (
            self.hospital_id == other.hospital_id
            and self.feature_names == other.feature_names
            and all(
                np.array_equal(getattr(self, a), getattr(other, a)) for a in ("X_train", "y_train", "X_test", "y_test")
            )
        )

    __hash__ = None  # type: ignore[assignment]
