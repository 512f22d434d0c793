"""Validation split, the pooled validation metrics, the best round and early stopping (issue 17)."""

from __future__ import annotations

import math

import pytest

from fedledger.config import check_selection
from fedledger.config_keys import unknown_settings
from fedledger.round_task import EvaluationReport, RoundMessageError
from fl_client.data import TooFewRowsError, load_hospitals
from fl_server.selection import BestRound, EarlyStopped, validation_metrics

BC = {"name": "breast_cancer", "partitioner": "iid"}


def test_default_split_is_unchanged_and_a_validation_fraction_takes_rows_from_training_only():
    plain = load_hospitals(BC, 2, 0)
    zero = load_hospitals({**BC, "validation_fraction": 0.0}, 2, 0)
    held = load_hospitals({**BC, "validation_fraction": 0.25}, 2, 0)

    assert plain == zero and plain[0].n_val == 0
    for p, h in zip(plain, held):
        assert h.n_val == math.ceil(0.25 * p.n_train)
        assert h.n_train + h.n_val == p.n_train
        assert h.n_test == p.n_test and (h.y_test == p.y_test).all()
    assert 0 < held[0].y_val.sum() < held[0].n_val  # stratified: both classes held out


def test_a_validation_fraction_of_one_is_refused_naming_the_setting():
    with pytest.raises(TooFewRowsError, match=r"dataset.validation_fraction must be in \[0, 1\)"):
        load_hospitals({**BC, "validation_fraction": 1.0}, 2, 0)


def test_validation_metrics_travel_as_optional_keys_and_absent_without_validation_rows():
    val = {"loss": 0.4, "accuracy": 0.5, "auc": None, "num-examples": 4}
    report = EvaluationReport(loss=0.5, accuracy=0.75, num_examples=8, auc=0.9, hospital="h", validation=val)
    metrics, info = report.to_wire()
    bare, _ = EvaluationReport(loss=0.5, accuracy=0.75, num_examples=8, auc=0.9, hospital="h").to_wire()

    assert {k: metrics[k] for k in metrics if k.startswith("val-")} == {
        "val-loss": 0.4,
        "val-accuracy": 0.5,
        "val-num-examples": 4,
    }
    assert not any(k.startswith("val-") for k in bare)
    assert EvaluationReport.from_wire(metrics, info) == report
    assert EvaluationReport.from_wire(bare, info).validation is None


def test_a_validation_count_without_its_loss_is_refused():
    metrics = {"loss": 0.5, "accuracy": 1.0, "num-examples": 2, "auc": 0.0, "auc-defined": 0, "val-num-examples": 3}
    with pytest.raises(RoundMessageError, match="lacks 'val-loss'"):
        EvaluationReport.from_wire(metrics, {})


def test_pooled_validation_metrics_are_sample_weighted_over_the_hospitals_that_hold_rows():
    def rep(loss: float, n: int | None) -> EvaluationReport:
        val = None if n is None else {"loss": loss, "accuracy": 1.0, "auc": None, "num-examples": n}
        return EvaluationReport(loss=9.0, accuracy=0.0, num_examples=10, auc=None, validation=val)

    pooled = validation_metrics({"a": rep(1.0, 1), "b": rep(0.4, 3), "c": rep(7.0, None)})

    assert pooled == {"loss": pytest.approx(0.55), "accuracy": 1.0, "auc": None, "num-examples": 4.0}
    assert validation_metrics({"c": rep(7.0, None)}) is None


def test_best_round_keeps_the_lowest_loss_and_stops_after_patience_rounds_without_improvement():
    best = BestRound("loss", patience=2)
    best.observe(1, {"loss": 0.5})
    best.observe(2, {"loss": 0.4})
    best.observe(3, {"loss": 0.45})

    with pytest.raises(EarlyStopped, match="after round 4.*round 2"):
        best.observe(4, {"loss": 0.41})
    assert best.section() == {
        "split": "validation",
        "metric": "loss",
        "best_round": 2,
        "best_value": 0.4,
        "early_stopping_patience": 2,
        "stopped_early_after_round": 4,
    }


def test_best_round_by_accuracy_takes_the_highest_and_never_stops_without_patience():
    best = BestRound("accuracy")
    for r, acc in enumerate([0.6, 0.8, 0.7, 0.7, 0.7], start=1):
        best.observe(r, {"accuracy": acc})
    assert (best.best_round, best.best_value, best.stopped_after) == (2, 0.8, None)


def test_early_stopping_without_validation_rows_or_with_an_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="needs validation rows.*dataset.validation_fraction"):
        check_selection({"early_stopping_patience": 2}, 0.0)
    with pytest.raises(ValueError, match="selection_metric must be one of"):
        check_selection({"selection_metric": "val_loss"}, 0.2)
    with pytest.raises(ValueError, match=">= 1"):
        check_selection({"early_stopping_patience": 0}, 0.2)
    check_selection({"early_stopping_patience": 2, "selection_metric": "auc"}, 0.2)


def test_the_new_strategy_settings_are_schema_keys():
    cfg = {"strategy": {"selection_metric": "loss", "early_stopping_patience": 3, "early_stoping": 1}}
    assert unknown_settings(cfg) == ["'strategy.early_stoping' (did you mean 'strategy.early_stopping_patience'?)"]
