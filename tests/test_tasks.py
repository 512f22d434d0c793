"""Task types (fedledger/tasks.py, fl_client/tasks.py): loss and metric values on hand-checkable vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedledger.round_task import EvaluationReport, RoundMessageError
from fedledger.tasks import TASK_NAMES, check_num_outputs, is_task_metric, lower_is_better, task_kind
from fl_client.models import build_model, get_arrays
from fl_client.tasks import BinaryTask, task_for
from fl_client.training import evaluate, train_local


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# -- the registry --------------------------------------------------------------------------------


def test_the_four_task_types_are_registered_and_an_unknown_one_is_named():
    assert TASK_NAMES == ("binary", "multiclass", "regression", "survival")
    with pytest.raises(ValueError, match=r"unknown task 'ordinal'; expected one of \['binary'"):
        task_for("ordinal")


def test_survival_is_implemented_with_its_time_grid_as_options():
    assert task_kind("survival").primary == "c-index"
    task = task_for("survival", 2, {"time_grid": [100.0, 200.0], "survival_loss": "discrete_hazard"})
    assert task.name == "survival" and task.num_outputs == 2
    with pytest.raises(ValueError, match="time grid of 2 intervals"):
        task_for("survival", 3, {"time_grid": [100.0, 200.0]})
    with pytest.raises(ValueError, match="takes no options"):
        task_for("binary", 1, {"time_grid": [1.0]})


def test_output_counts_follow_the_task():
    assert task_for().num_outputs == 1 and task_for().name == "binary"
    assert task_for("multiclass", 5).num_outputs == 5
    with pytest.raises(ValueError, match="'regression' has 1 model output"):
        check_num_outputs("regression", 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        task_for("multiclass", 1)


def test_metric_directions_and_names():
    assert [lower_is_better("regression", m) for m in ("loss", "rmse", "mae", "r2")] == [True, True, True, False]
    assert not lower_is_better("binary", "auc") and not lower_is_better("multiclass", "recall-3")
    with pytest.raises(ValueError, match="task 'binary' has no metric 'rmse'"):
        lower_is_better("binary", "rmse")
    assert is_task_metric("rmse") and is_task_metric("recall-0") and not is_task_metric("auc")
    assert not is_task_metric("recall-x")


# -- binary: today's loss and metrics ----------------------------------------------------------


def test_binary_loss_and_metrics_by_hand():
    task = task_for("binary")
    out, y = t([0.0, 2.0, -1.0]), t([1.0, 1.0, 0.0])
    per = [math.log(2), math.log1p(math.exp(-2)), math.log1p(math.exp(-1))]
    assert task.per_sample_loss(out, y).tolist() == pytest.approx(per)
    assert float(task.loss(out, y)) == pytest.approx(sum(per) / 3)
    # logit > 0 is class 1: 0 -> 0 (wrong), 2 -> 1, -1 -> 0; both positives score above the negative
    assert task.metrics(out, y) == pytest.approx({"accuracy": 2 / 3, "auc": 1.0})
    assert task.metrics(out, t([1.0, 1.0, 1.0]))["auc"] is None


def test_binary_refuses_a_label_other_than_0_or_1():
    with pytest.raises(ValueError, match="only 0 and 1"):
        BinaryTask().target(np.array([0, 2]))


def test_binary_training_is_unchanged_by_the_task_argument():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    cfg = {"local_epochs": 2, "batch_size": 8, "lr": 0.5}
    a, b = build_model("logreg", 3, seed=1), build_model("logreg", 3, seed=1, out_features=1)
    train_local(a, X, y, cfg, seed=3)
    train_local(b, X, y, cfg, seed=3, task=task_for("binary"))
    assert all(np.array_equal(get_arrays(a)[k], get_arrays(b)[k]) for k in get_arrays(a))


# -- multiclass ---------------------------------------------------------------------------------


def test_multiclass_loss_and_metrics_by_hand():
    task = task_for("multiclass", 3)
    out = t([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    y = task.target(np.array([0, 1, 2, 2], np.float32))
    assert y.dtype == torch.int64
    # -log softmax: the right class at 2 against two at 0 is log(1 + 2e^-2); a class at 0 against 2, 0, 0 is log(e^2 + 2)
    right, wrong = math.log1p(2 * math.exp(-2)), math.log(math.exp(2) + 2)
    assert task.per_sample_loss(out, y).tolist() == pytest.approx([right, right, wrong, right])
    # predictions 0, 1, 1, 2: F1 class 0 = 1, class 1 = 2*1/(1+2), class 2 = 2*1/(2+1)
    assert task.metrics(out, y) == pytest.approx(
        {"accuracy": 0.75, "recall-0": 1.0, "recall-1": 1.0, "recall-2": 0.5, "macro-f1": 7 / 9}
    )


def test_multiclass_recall_of_an_absent_class_is_undefined():
    task = task_for("multiclass", 3)
    m = task.metrics(t([[2.0, 0, 0], [0, 2.0, 0]]), t([0, 1], torch.int64))
    assert m["recall-2"] is None and m["macro-f1"] == 1.0  # class 2 is neither true nor predicted: not averaged


def test_multiclass_refuses_a_label_outside_its_classes():
    with pytest.raises(ValueError, match=r"class indices 0..2; found \[3.0\]"):
        task_for("multiclass", 3).target(np.array([0, 3]))


# -- regression ---------------------------------------------------------------------------------


def test_regression_loss_in_standard_units_and_metrics_in_the_targets_own():
    task = task_for("regression")
    out, y = t([1.0, 2.0, 3.0]), t([1.0, 3.0, 5.0])
    assert float(task.loss(out, y)) == pytest.approx((0 + 1 + 4) / 3)
    # mean 10, std 2: predictions 12, 14, 16 against 12, 16, 20; errors 0, -2, -4; truth's mean 16, SST 32
    assert task.metrics(out, y, (10.0, 2.0)) == pytest.approx(
        {"rmse": math.sqrt(20 / 3), "mae": 2.0, "r2": 1 - 20 / 32}
    )
    assert task.metrics(t([1.0]), t([1.0]))["r2"] is None  # one row: no variance to explain


def test_regression_refuses_a_missing_target():
    with pytest.raises(ValueError, match="must be finite"):
        task_for("regression").target(np.array([1.0, np.nan]))


def test_models_output_one_column_per_class():
    X = np.zeros((4, 3), np.float32)
    for name, hidden in (("logreg", 0), ("mlp", 8)):
        model = build_model(name, 3, hidden, out_features=5)
        assert tuple(model(torch.from_numpy(X)).shape) == (4, 5)
        assert tuple(build_model(name, 3, hidden)(torch.from_numpy(X)).shape) == (4,)


def test_evaluate_reports_the_tasks_metrics():
    model = build_model("logreg", 2, out_features=3)
    X = np.eye(2, dtype=np.float32)
    res = evaluate(model, X, np.array([0, 2], np.float32), task_for("multiclass", 3))
    assert set(res.metrics) == {"accuracy", "macro-f1", "recall-0", "recall-1", "recall-2"} and res.n == 2
    empty = evaluate(build_model("logreg", 2), X[:0], np.zeros(0), task_for("regression"))
    assert math.isnan(empty.loss) and empty.metrics == {"rmse": None, "mae": None, "r2": None}


# -- evaluation replies on the wire ------------------------------------------------------------


def test_a_binary_reply_keeps_its_historical_keys():
    metrics, _ = EvaluationReport(loss=0.5, accuracy=0.75, num_examples=8, auc=None).to_wire()
    assert metrics == {"loss": 0.5, "accuracy": 0.75, "num-examples": 8, "auc": 0.0, "auc-defined": 0}


def test_a_regression_reply_carries_its_own_metrics_and_reads_back():
    report = EvaluationReport(
        loss=0.4,
        accuracy=None,
        num_examples=10,
        auc=None,
        task_metrics={"rmse": 50.0, "mae": 40.0, "r2": None},
        validation={"loss": 0.5, "rmse": 55.0, "mae": 41.0, "r2": 0.3, "num-examples": 4},
    )
    metrics, info = report.to_wire()
    assert metrics == {
        "loss": 0.4,
        "num-examples": 10,
        "rmse": 50.0,
        "mae": 40.0,
        "val-loss": 0.5,
        "val-rmse": 55.0,
        "val-mae": 41.0,
        "val-r2": 0.3,
        "val-num-examples": 4,
    }
    back = EvaluationReport.from_wire(metrics, info)
    assert back.metrics() == {"loss": 0.4, "rmse": 50.0, "mae": 40.0}
    assert back.validation == {"loss": 0.5, "rmse": 55.0, "mae": 41.0, "r2": 0.3, "num-examples": 4}
    with pytest.raises(RoundMessageError, match="lacks 'loss'"):
        EvaluationReport.from_wire({k: v for k, v in metrics.items() if k != "loss"}, info)


# -- the aggregator: pooled metrics, rows and the best round per task ------------------------------


def _regression_report(n, rmse, val_rmse):
    return EvaluationReport(
        loss=rmse / 100,
        accuracy=None,
        num_examples=n,
        auc=None,
        task_metrics={"rmse": rmse, "mae": rmse / 2, "r2": None},
        validation={"loss": 0.5, "rmse": val_rmse, "num-examples": n},
    )


def test_regression_metrics_are_pooled_by_sample_count_without_intervals():
    from fl_server.strategy import EvaluationResult

    result = EvaluationResult({"a": _regression_report(10, 50.0, 60.0), "b": _regression_report(30, 70.0, 40.0)})
    # (10 * 50 + 30 * 70) / 40 = 65; r2 is undefined everywhere
    assert result.round_metrics() == pytest.approx({"loss": 0.65, "rmse": 65.0, "mae": 32.5, "r2": None})
    assert result.rows()["a"] == {"loss": 0.5, "rmse": 50.0, "mae": 25.0, "r2": None, "num-examples": 10}


def test_the_best_round_follows_the_tasks_direction():
    from fl_server.selection import BestRound, validation_metrics

    best = BestRound("rmse", task="regression")
    best.observe(1, validation_metrics({"a": _regression_report(10, 50.0, 60.0)}))
    best.observe(2, validation_metrics({"a": _regression_report(10, 50.0, 40.0)}))
    best.observe(3, validation_metrics({"a": _regression_report(10, 50.0, 45.0)}))
    assert (best.best_round, best.best_value) == (2, 40.0)  # lower RMSE is better
    r2 = BestRound("r2", task="regression")
    r2.observe(1, {"r2": 0.2})
    r2.observe(2, {"r2": 0.4})
    assert r2.best_round == 2


def test_a_selection_metric_of_another_task_is_refused():
    from fedledger.config import check_selection

    check_selection({"selection_metric": "rmse"}, 0.2)  # before the data says the task: any task's metric
    check_selection({"selection_metric": "recall-3"}, 0.2, "multiclass")
    with pytest.raises(
        ValueError, match=r"selection_metric must be one of \('loss', 'accuracy', 'auc'\) of task 'binary'"
    ):
        check_selection({"selection_metric": "rmse"}, 0.2, "binary")
