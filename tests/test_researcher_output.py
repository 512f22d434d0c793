"""What a researcher reads: 95% intervals per hospital, plots that do not mislead, a quiet terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from rich.console import Console

from experiments import plots
from experiments.simulation import RUN_SIMULATION_DEPRECATED, quiet_flower
from fedledger.round_task import EvaluationReport, RoundMessageError
from fl_server.intervals import hanley_mcneil, wilson, with_intervals
from fl_server.progress import RoundTable
from fl_server.round_protocol import RoundOutcome
from fl_server.strategy import EvaluationResult


def test_wilson_interval_of_16_correct_out_of_20():
    low, high = wilson(0.8, 20)  # type: ignore[misc]
    assert (round(low, 4), round(high, 4)) == (0.584, 0.9193)
    assert wilson(None, 20) is None and wilson(0.5, 0) is None


def test_hanley_mcneil_by_hand_and_never_zero_width():
    # arrange/act: AUC 0.9 on 10 positives, 15 negatives: Q1 = 0.9/1.1, Q2 = 1.62/1.9, var = 0.0050699
    low, high = hanley_mcneil(0.9, 10, 15)  # type: ignore[misc]
    # assert: 0.9 - 1.96 * 0.07120 = 0.7604, capped at 1
    assert (round(low, 4), high) == (0.7604, 1.0)
    perfect = hanley_mcneil(1.0, 8, 15)
    assert perfect is not None and perfect[0] < 0.99  # a perfect AUC on 23 patients still has an interval
    assert hanley_mcneil(None, 8, 15) is None and hanley_mcneil(0.9, None, None) is None


def test_each_hospitals_results_row_carries_its_intervals():
    # arrange: two hospitals' evaluation reports as the aggregator receives them
    result = EvaluationResult(
        {
            "a": EvaluationReport(loss=0.3, accuracy=0.8, num_examples=20, auc=0.9, hospital="a"),
            "b": EvaluationReport(loss=0.3, accuracy=1.0, num_examples=23, auc=None, hospital="b"),
        }
    )
    # act
    rows = result.rows()
    # assert: accuracy intervals from the reports alone; no AUC interval without the reported positives
    assert [round(v, 4) for v in rows["a"]["accuracy-ci"]] == [0.584, 0.9193]
    assert rows["b"]["accuracy-ci"][1] == 1.0 and rows["a"]["auc-ci"] is None


def test_a_hospital_reports_its_positives_and_the_aggregator_gives_the_auc_interval():
    # arrange: a report with 10 positives out of 25 test patients, through the wire
    sent = EvaluationReport(loss=0.3, accuracy=0.8, num_examples=25, auc=0.9, hospital="a", num_positives=10)
    metrics, info = sent.to_wire()
    # act
    received = EvaluationReport.from_wire(metrics, info)
    row = EvaluationResult({"a": received}).rows()["a"]
    # assert: Hanley-McNeil with 10 positives, 15 negatives; a count beyond the split is refused
    assert metrics["num-positives"] == 10 and row["num-positives"] == 10 and round(row["auc-ci"][0], 4) == 0.7604
    with pytest.raises(RoundMessageError, match="num-positives must be in 0..25, got 26"):
        EvaluationReport.from_wire({**metrics, "num-positives": 26}, info)


def outcome(per_hospital: dict) -> RoundOutcome:
    return RoundOutcome(1, "0x", "0x", list(per_hospital), [], 100, {"accuracy": 0.8}, per_hospital, None, 0.0, 0.1)


def test_the_round_table_shows_the_accuracy_interval():
    console = Console(record=True, width=200)
    RoundTable(1, console)(outcome({"a": {"num-examples": 20}}))
    assert "0.58-0.92" in console.export_text()


def results_of(budgets: dict[str, float]) -> dict:
    rows = {h: with_intervals({"accuracy": 0.9, "auc": 0.95, "loss": 0.3, "num-examples": 21}) for h in budgets}
    return {
        "rounds": [{"round": r, "metrics": {"accuracy": 0.9, "auc": 0.95, "loss": 0.3}, "per_hospital": rows} for r in (1, 2)],
        "privacy": {h: {"rounds": [1, 2], "epsilon": [1.0, 2.0], "delta": 1e-5, "budget": b} for h, b in budgets.items()},
    }  # fmt: skip


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots would save, kept open for inspection."""
    drawn: dict[str, object] = {}
    monkeypatch.setattr(plots, "save_png", lambda fig, path: drawn.setdefault(Path(path).stem, fig) and path)
    return drawn


def test_privacy_plot_tells_equal_curves_apart_and_gives_budget_and_delta(figures, tmp_path):
    # act: three hospitals with identical epsilon curves and the same budget
    plots.plot_privacy(results_of({"a": 3.0, "b": 3.0, "c": 3.0}), tmp_path)
    ax = figures["privacy"].axes[0]  # type: ignore[attr-defined]
    curves, budget = ax.lines[:3], ax.lines[3:]
    # assert: each curve its own marker and line style, and not drawn on top of each other
    assert len({c.get_marker() for c in curves}) == 3 and len({str(c.get_linestyle()) for c in curves}) == 3
    assert len({tuple(c.get_xdata()) for c in curves}) == 3
    assert len(budget) == 1 and budget[0].get_color() == "black" and "budget ε=3" in budget[0].get_label()
    assert "δ=1e-05" in ax.get_title()


def test_score_axes_start_at_a_floor_and_legends_give_the_test_size(figures, tmp_path):
    # act: accuracies of 0.9 on 21 patients: one patient is 0.048
    plots.plot_metrics(results_of({"a": 3.0, "b": 3.0}), tmp_path)
    overall, per_hospital = figures["accuracy"].axes  # type: ignore[attr-defined]
    # assert: the axis spans 0.5 to 1, not a zoom onto 0.9
    assert overall.get_ylim() == (0.5, 1.02)
    assert [t.get_text() for t in per_hospital.get_legend().get_texts()] == ["a (test n=21)", "b (test n=21)"]
    assert plots.score_limits([0.31, 0.9]) == (0.3, 1.02)


@pytest.fixture
def flower_logging():
    """quiet_flower changes process-wide loggers: put them back after the test."""
    names = ("flwr", "fedledger.ledger.journal", "fedledger.ledger.client", "ray", "alembic")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    flwr = logging.getLogger("flwr")
    propagate, filters = flwr.propagate, list(flwr.filters)
    yield
    for logger, level in saved:
        logger.setLevel(level)
    flwr.propagate, flwr.filters = propagate, filters


def test_flowers_deprecation_notice_is_dropped_and_other_flower_warnings_kept(flower_logging):
    quiet_flower()
    flwr = logging.getLogger("flwr")

    def record(msg: str) -> logging.LogRecord:
        return flwr.makeRecord("flwr", logging.WARNING, __file__, 1, msg, (), None)

    assert not flwr.filter(record(f"DEPRECATED FEATURE: The {RUN_SIMULATION_DEPRECATED} and will be removed"))
    assert flwr.filter(record("a node did not reply"))
    assert flwr.propagate is False  # printed by Flower's own handler only, not a second time by the root's
    assert logging.getLogger("fedledger.ledger.journal").getEffectiveLevel() == logging.WARNING


def test_a_data_warning_is_logged_once_by_a_deployed_hospital_and_not_again_by_a_simulated_one(tmp_path, caplog):
    # arrange: one hospital whose file holds a single class (a DataWarning)
    import json

    from fl_client.hospital_runtime import _data

    (tmp_path / "s.yaml").write_text('target: {column: y, positive: "> 0"}\nnumeric: [x]\n')
    (tmp_path / "a.csv").write_text("x,y\n1,1\n2,1\n3,1\n4,1\n")
    dataset = json.dumps(
        {"name": "csv", "schema": str(tmp_path / "s.yaml"), "hospitals": [{"id": "a", "path": str(tmp_path / "a.csv")}]}
    )
    # act
    with caplog.at_level(logging.WARNING):
        _data(dataset, 0, 1, 0, True)
        simulated = [r for r in caplog.records if "single class" in r.getMessage()]
        _data(dataset, 0, 1, 0, False)
    # assert
    assert simulated == [] and len([r for r in caplog.records if "single class" in r.getMessage()]) == 1


def test_metrics_csv_carries_each_hospitals_intervals(tmp_path):
    import csv

    from fl_server.results import write_metrics_csv

    # arrange: hospital a: 16 of 20 correct, AUC 0.9 with 8 positives and 12 negatives; b: one class
    a = with_intervals({"accuracy": 0.8, "auc": 0.9, "loss": 0.4, "num-examples": 20}, positives=8)
    b = with_intervals({"accuracy": 1.0, "auc": None, "loss": 0.1, "num-examples": 23})
    # act
    write_metrics_csv(tmp_path / "metrics.csv", [outcome({"a": a, "b": b})])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    # assert: Wilson 16/20 = [0.584, 0.9193]; Hanley-McNeil: Q1 = 0.9/1.1, Q2 = 1.62/1.9,
    # var = (0.09 + 7 * 0.008182 + 11 * 0.042632) / 96 = 0.006419, 0.9 - 1.96 * 0.08012 = 0.7430 (high capped at 1);
    # b's AUC undefined -> empty cells; the overall row has none
    assert [r["hospital"] for r in rows] == ["overall", "a", "b"]
    assert (round(float(rows[1]["accuracy_lo"]), 4), round(float(rows[1]["accuracy_hi"]), 4)) == (0.584, 0.9193)
    assert round(float(rows[1]["auc_lo"]), 4) == 0.7430 and float(rows[1]["auc_hi"]) == 1.0
    assert rows[2]["accuracy_hi"] == "1.0" and rows[2]["auc_lo"] == rows[2]["auc_hi"] == ""
    assert rows[0]["accuracy_lo"] == rows[0]["auc_hi"] == ""
