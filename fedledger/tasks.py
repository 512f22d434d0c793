"""Task types of a study: what its target is, which metrics it reports and which way each one improves.

Shared by the hospital (which computes the metrics, fl_client/tasks.py), the
aggregator (which pools and records them, picks the best round) and the
launcher (which puts the task into the study protocol). Nothing here needs
torch: the loss functions live with the hospital's training (fl_client/tasks.py).

A task's metrics are the summary numbers a hospital reports for a model on a
split, under their wire names; ``loss`` is always one of them. Metrics whose
name is ``recall-<class>`` are per class (multiclass); their list follows the
study's classes. ``survival`` is registered so configs and the protocol can
name it; its loss and metrics are filled in by fl_client/tasks.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TASK",
    "TASK_NAMES",
    "TaskKind",
    "all_metrics",
    "check_num_outputs",
    "is_task_metric",
    "lower_is_better",
    "parse_task_options",
    "task_kind",
    "task_options_text",
]

DEFAULT_TASK = "binary"


@dataclass(frozen=True)
class TaskKind:
    """One task type: its name, the metrics it reports (wire names, loss first) and its primary metric.

    ``primary`` is the metric a study reads first (progress table, plots,
    baselines' headline); ``lower`` holds the metrics where lower is better
    (everything else: higher is better). ``fixed_outputs``: the model's output
    count when the task fixes it (binary, regression: 1; multiclass: the class count, None here).
    """

    name: str
    metrics: tuple[str, ...]
    primary: str
    lower: frozenset[str]
    fixed_outputs: int | None = 1

    def lower_is_better(self, metric: str) -> bool:
        """Whether a smaller value of ``metric`` is better; an unknown metric is refused."""
        per_class = self.name == "multiclass" and is_task_metric(metric) and metric.startswith("recall-")
        if metric not in self.metrics and not per_class:
            raise ValueError(f"task {self.name!r} has no metric {metric!r}; it reports {list(self.metrics)}")
        return metric in self.lower

    @property
    def selection_metrics(self) -> tuple[str, ...]:
        """The metrics a best-round choice may use (``strategy.selection_metric``)."""
        return self.metrics


_KINDS: dict[str, TaskKind] = {
    "binary": TaskKind("binary", ("loss", "accuracy", "auc"), primary="auc", lower=frozenset({"loss"})),
    "multiclass": TaskKind(
        "multiclass",
        ("loss", "accuracy", "macro-f1"),
        primary="accuracy",
        lower=frozenset({"loss"}),
        fixed_outputs=None,
    ),
    "regression": TaskKind(
        "regression", ("loss", "rmse", "mae", "r2"), primary="rmse", lower=frozenset({"loss", "rmse", "mae"})
    ),
    "survival": TaskKind(
        "survival", ("loss", "c-index", "ibs"), primary="c-index", lower=frozenset({"loss", "ibs"}), fixed_outputs=None
    ),
}

TASK_NAMES: tuple[str, ...] = tuple(_KINDS)


_BINARY_KEYS = frozenset({"loss", "accuracy", "auc"})
_TASK_METRICS = frozenset(m for kind in _KINDS.values() for m in kind.metrics) - _BINARY_KEYS


def all_metrics() -> tuple[str, ...]:
    """Every metric name some task reports (``recall-<class>`` aside), in registry order."""
    return tuple(dict.fromkeys(m for kind in _KINDS.values() for m in kind.metrics))


def is_task_metric(key: str) -> bool:
    """Whether ``key`` names a metric of a non-binary task (``rmse``, ``macro-f1``, ``recall-2``, ...).

    An evaluation reply carrying one is a non-binary task's (fedledger/round_task.py).
    """
    return key in _TASK_METRICS or (key.startswith("recall-") and key[len("recall-") :].isdigit())


def task_kind(name: object) -> TaskKind:
    """The task type called ``name``; an unknown one is refused, naming the known ones."""
    if not isinstance(name, str) or name not in _KINDS:
        raise ValueError(f"unknown task {name!r}; expected one of {list(TASK_NAMES)}")
    return _KINDS[name]


def task_options_text(options: Mapping[str, Any] | None) -> str:
    """A task's options (survival: its time grid and loss) as canonical JSON text, the form the round task
    carries and the protocol hashes; "" for none (every task but survival)."""
    if not options:
        return ""
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"), allow_nan=False)


def parse_task_options(text: str) -> dict[str, Any]:
    """The options of :func:`task_options_text` read back; "" gives none."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"task options are not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"task options must be a JSON object, got {text!r}")
    return parsed


def lower_is_better(task: str, metric: str) -> bool:
    """Whether ``metric`` of ``task`` improves downwards (loss, RMSE, MAE, IBS)."""
    return task_kind(task).lower_is_better(metric)


def check_num_outputs(task: str, num_outputs: int) -> int:
    """The model's output count for ``task``: 1 where the task fixes it, >= 2 classes for multiclass."""
    kind = task_kind(task)
    n = int(num_outputs)
    if kind.fixed_outputs is not None and n != kind.fixed_outputs:
        raise ValueError(f"task {task!r} has {kind.fixed_outputs} model output(s), got num-outputs {n}")
    if task == "multiclass" and n < 2:
        raise ValueError(f"a multiclass task needs at least 2 classes, got num-outputs {n}")
    if n < 1:
        raise ValueError(f"num-outputs must be >= 1, got {n}")
    return n
