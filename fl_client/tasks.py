"""A study's task on the hospital's side: its target tensor, its loss and its metrics.

Every loss is the mean over the batch of a per-sample loss, which is what
DP-SGD's per-sample clipping needs (Opacus runs with ``loss_reduction="mean"``).
Models output one value per row (shape ``(n,)``) when the task has one output
(binary: a logit; regression: the standardised target) and ``(n, K)`` otherwise
(multiclass: K logits). ``task_for(name, num_outputs)`` builds one; the
task types, their metric names and directions are in fedledger/tasks.py.

``binary`` is the study's historical behaviour, operation for operation:
BCE with logits, accuracy at logit > 0, ROC-AUC (None with a single class).
``multiclass``: cross-entropy over K logits; accuracy, macro-F1 (over the
classes present in the split's truth or predictions) and recall per class
(``recall-<index>``, None where the split holds none of that class).
``regression``: MSE on the target standardised with the hospital's training
mean and standard deviation; RMSE, MAE and R² in the target's own units.
``survival``: the discrete-time hazard NLL on the study's fixed time grid (a
mean of per-patient terms; or Cox, refused under DP); C-index and integrated
Brier score (fl_client/survival, docs/TASKS.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fedledger.tasks import DEFAULT_TASK, TaskKind, check_num_outputs, task_kind
from fl_client.survival.grid import check_time_grid, survival_target
from fl_client.survival.loss import check_survival_loss, cox_nll, per_patient_hazard_nll
from fl_client.survival.metrics import concordance, integrated_brier, restricted_mean_survival, survival_curves

__all__ = [
    "BinaryTask",
    "MulticlassTask",
    "RegressionTask",
    "SurvivalTask",
    "TargetScale",
    "Task",
    "register_task",
    "task_for",
]

# (mean, std) of a regression target in its own units: prediction * std + mean. (0, 1): already in its units.
TargetScale = tuple[float, float]
IDENTITY: TargetScale = (0.0, 1.0)

Metrics = dict[str, float | None]


class Task(ABC):
    """One task type with its model output count; stateless, so one instance serves every split."""

    name: str = ""

    def __init__(self, num_outputs: int = 1) -> None:
        self.num_outputs = check_num_outputs(self.name, num_outputs)

    @property
    def kind(self) -> TaskKind:
        return task_kind(self.name)

    @property
    def target_dtype(self) -> torch.dtype:
        return torch.float32

    def target(self, y: np.ndarray) -> torch.Tensor:
        """``y`` as the tensor the loss takes, refusing values the task cannot have."""
        arr = np.asarray(y).reshape(-1)
        self.check_target(arr)
        return torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32)))

    def check_target(self, y: np.ndarray) -> None:
        """Refuse a target the task does not define (NaN, out-of-range labels)."""
        if y.size and not np.isfinite(y.astype(np.float64)).all():
            raise ValueError(f"y of a {self.name} task must be finite numbers")

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """The model's output shaped for this task: ``(n,)`` with one output, ``(n, K)`` with K."""
        return raw.reshape(-1) if self.num_outputs == 1 else raw.reshape(-1, self.num_outputs)

    def check_dp(self) -> None:
        """Refuse DP-SGD when the loss is not a mean of per-sample terms (survival's Cox); the others are."""
        return None

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of :meth:`per_sample_loss` over the batch (what training minimises)."""
        return self.per_sample_loss(output, target).mean()

    @abstractmethod
    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One loss value per row, shape ``(n,)``."""

    @abstractmethod
    def metrics(self, output: torch.Tensor, target: torch.Tensor, scale: TargetScale = IDENTITY) -> Metrics:
        """The task's metrics besides the loss (fedledger/tasks.py names them); None where undefined."""


class BinaryTask(Task):
    """Two classes, one logit per row: BCE with logits, accuracy, ROC-AUC."""

    name = "binary"

    def check_target(self, y: np.ndarray) -> None:
        if y.size and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("y must contain only 0 and 1")

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target)  # the historical call: results stay bit for bit

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, target, reduction="none")

    def metrics(self, output: torch.Tensor, target: torch.Tensor, scale: TargetScale = IDENTITY) -> Metrics:
        accuracy = float(((output > 0).float() == target).float().mean())
        auc = None
        labels = target.numpy()
        if 0 < labels.sum() < len(labels):
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(labels, output.numpy()))
        return {"accuracy": accuracy, "auc": auc}


class MulticlassTask(Task):
    """K classes (class indices 0..K-1), K logits per row: cross-entropy; accuracy, macro-F1, recall per class."""

    name = "multiclass"

    @property
    def target_dtype(self) -> torch.dtype:
        return torch.int64

    def check_target(self, y: np.ndarray) -> None:
        super().check_target(y)
        if y.size and not (np.isin(y, np.arange(self.num_outputs))).all():
            bad = sorted({float(v) for v in np.unique(y)} - set(range(self.num_outputs)))[:5]
            raise ValueError(f"y must hold class indices 0..{self.num_outputs - 1}; found {bad}")

    def target(self, y: np.ndarray) -> torch.Tensor:
        arr = np.asarray(y).reshape(-1)
        self.check_target(arr)
        return torch.from_numpy(np.ascontiguousarray(arr.astype(np.int64)))

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def metrics(self, output: torch.Tensor, target: torch.Tensor, scale: TargetScale = IDENTITY) -> Metrics:
        truth = target.numpy().astype(np.int64)
        pred = output.argmax(dim=-1).numpy().astype(np.int64)
        out: Metrics = {"accuracy": float((pred == truth).mean())}
        f1s = []
        for c in range(self.num_outputs):
            tp = int(((pred == c) & (truth == c)).sum())
            actual, predicted = int((truth == c).sum()), int((pred == c).sum())
            out[f"recall-{c}"] = tp / actual if actual else None
            if actual or predicted:  # a class absent from both is not part of the macro average
                f1s.append(2 * tp / (actual + predicted))
        out["macro-f1"] = float(np.mean(f1s)) if f1s else None
        return out


class RegressionTask(Task):
    """One real target, standardised per hospital: MSE; RMSE, MAE, R² in the target's own units."""

    name = "regression"

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target) ** 2

    def metrics(self, output: torch.Tensor, target: torch.Tensor, scale: TargetScale = IDENTITY) -> Metrics:
        mean, std = scale
        pred = output.double().numpy() * std + mean
        truth = target.double().numpy() * std + mean
        err = pred - truth
        sst = float(((truth - truth.mean()) ** 2).sum())
        return {
            "rmse": math.sqrt(float((err**2).mean())),
            "mae": float(np.abs(err).mean()),
            "r2": 1.0 - float((err**2).sum()) / sst if sst > 0 else None,
        }


class SurvivalTask(Task):
    """Survival on a fixed time grid: ``num_outputs`` = the grid's interval count (1 risk score under Cox)."""

    name = "survival"

    def __init__(
        self, num_outputs: int, time_grid: Sequence[float] = (), survival_loss: str = "discrete_hazard"
    ) -> None:
        super().__init__(num_outputs)
        self.time_grid = check_time_grid(time_grid)
        self.survival_loss = check_survival_loss(survival_loss, dp_enabled=False)
        expected = 1 if self.survival_loss == "cox" else len(self.time_grid)
        if self.num_outputs != expected:
            raise ValueError(
                f"a survival model with survival_loss={self.survival_loss} has {expected} output(s) "
                f"(time grid of {len(self.time_grid)} intervals), got num-outputs {self.num_outputs}"
            )

    def check_dp(self) -> None:
        """Cox's loss couples the patients of a batch: refused under DP-SGD, saying why."""
        check_survival_loss(self.survival_loss, dp_enabled=True)

    def target(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(survival_target(np.asarray(y), self.time_grid))

    def check_target(self, y: np.ndarray) -> None:
        survival_target(y, self.time_grid)

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.reshape(-1, self.num_outputs)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.survival_loss == "cox":
            k = len(self.time_grid)
            return cox_nll(output.reshape(-1), target[:, 0, k], target[:, 1, k])
        return self.per_sample_loss(output, target).mean()

    def per_sample_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.survival_loss == "cox":
            check_survival_loss("cox", dp_enabled=True)  # raises: Cox has no per-patient loss
        return per_patient_hazard_nll(output, target[:, :, : len(self.time_grid)])

    def metrics(self, output: torch.Tensor, target: torch.Tensor, scale: TargetScale = IDENTITY) -> Metrics:
        k = len(self.time_grid)
        time, event = target[:, 0, k].double().numpy(), target[:, 1, k].double().numpy()
        if self.survival_loss == "cox":  # higher risk = shorter survival
            return {"c-index": concordance(time, event, -output.reshape(-1).double().numpy()), "ibs": None}
        curves = survival_curves(output.detach())
        return {
            "c-index": concordance(time, event, restricted_mean_survival(curves, self.time_grid)),
            "ibs": integrated_brier(curves, time, event, self.time_grid),
        }


_TASKS: dict[str, Callable[..., Task]] = {
    "binary": BinaryTask,
    "multiclass": MulticlassTask,
    "regression": RegressionTask,
    "survival": SurvivalTask,
}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Give a task type of fedledger/tasks.py its implementation (survival: its loss and metrics)."""
    task_kind(name)
    _TASKS[name] = factory


def task_for(name: str | None = None, num_outputs: int = 1, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``name`` (default binary) with ``num_outputs`` model outputs and its ``options``
    (fedledger.tasks.task_options_text; survival: ``time_grid``, ``survival_loss``)."""
    name = DEFAULT_TASK if name is None else name
    task_kind(name)  # unknown names are refused with the known ones listed
    if name not in _TASKS:
        raise ValueError(f"task {name!r} is registered but has no implementation on this hospital yet")
    if options and name != "survival":
        raise ValueError(f"task {name!r} takes no options, got {dict(options)}")
    return _TASKS[name](num_outputs, **dict(options or {}))
