"""HospitalData: one hospital's preprocessed rows, the type every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedledger.tasks import DEFAULT_TASK, check_num_outputs


@dataclass(eq=False)
class HospitalData:
    """One hospital's preprocessed data (features standardised with its own
    training statistics). ``X_val``/``y_val``: the validation rows held out of
    training (``dataset.validation_fraction``; none by default).

    ``task`` (fedledger/tasks.py) says what the target is, ``num_outputs`` the
    model's output count: binary (default) labels 0/1, one output; multiclass
    class indices 0..K-1 (``class_labels`` the schema's classes in that order),
    K outputs; regression the target standardised with the hospital's own
    training mean and standard deviation, ``target_scale`` = (mean, std), so
    metrics are reported in the target's units; survival ``y`` of shape
    ``(n, 2)`` (time, event), one output per interval of ``task_options``'
    ``time_grid`` (fl_client/survival). All targets are float32 here;
    the task turns them into what its loss takes (fl_client/tasks.py).
    """

    hospital_id: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: list[str]
    X_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    task: str = DEFAULT_TASK
    num_outputs: int = 1
    target_scale: tuple[float, float] = (0.0, 1.0)
    class_labels: list[str] = field(default_factory=list)
    task_options: dict[str, Any] = field(default_factory=dict)  # survival: time_grid, survival_loss

    def __post_init__(self) -> None:
        self.num_outputs = check_num_outputs(self.task, self.num_outputs)
        self.target_scale = (float(self.target_scale[0]), float(self.target_scale[1]))
        if not self.target_scale[1] > 0:
            raise ValueError(f"{self.hospital_id}: target_scale std must be > 0, got {self.target_scale[1]}")
        d = len(self.feature_names)
        self.X_val = np.ascontiguousarray(
            np.zeros((0, d), dtype=np.float32) if self.X_val is None else self.X_val, dtype=np.float32
        )
        width = 2 if self.task == "survival" else None  # survival: (time, event) per row
        self.y_val = _target(np.zeros((0, width or 1)) if self.y_val is None else self.y_val, width)
        self.X_train = np.ascontiguousarray(self.X_train, dtype=np.float32)
        self.X_test = np.ascontiguousarray(self.X_test, dtype=np.float32)
        self.y_train = _target(self.y_train, width)
        self.y_test = _target(self.y_test, width)
        self.feature_names = [str(f) for f in self.feature_names]
        splits = (
            ("train", self.X_train, self.y_train),
            ("test", self.X_test, self.y_test),
            ("val", self.X_val, self.y_val),
        )
        for name, X, y in splits:
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
    def n_val(self) -> int:
        return int(self.X_val.shape[0])  # type: ignore[union-attr]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def classes_present(self) -> list[int]:
        """Sorted labels present in this hospital's train + test rows (survival: its event flags)."""
        y = np.concatenate([self.y_train, self.y_test])
        return sorted(int(c) for c in np.unique(y[:, 1] if y.ndim == 2 else y))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HospitalData):
            return NotImplemented
        return (
            self.hospital_id == other.hospital_id
            and self.feature_names == other.feature_names
            and (self.task, self.num_outputs, self.target_scale) == (other.task, other.num_outputs, other.target_scale)
            and self.task_options == other.task_options
            and all(
                np.array_equal(getattr(self, a), getattr(other, a))
                for a in ("X_train", "y_train", "X_test", "y_test", "X_val", "y_val")
            )
        )

    __hash__ = None  # type: ignore[assignment]


def _target(y: Any, width: int | None) -> np.ndarray:
    """float32 targets: one per row, or ``width`` columns per row (survival: time, event)."""
    arr = np.ascontiguousarray(y, dtype=np.float32)
    return arr.reshape(-1) if width is None else arr.reshape(-1, width)
