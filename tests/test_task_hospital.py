"""A hospital's replies per task: it refuses a round for another task; a regression hospital reports RMSE."""

from __future__ import annotations

from fedledger.hashing import model_hash, to_hex
from fedledger.round_task import EvaluationReport
from fl_client.client_app import evaluate_global, train
from fl_client.models import build_model, get_arrays
from tests.test_client_app import context, node_config, round_config, task, task_identity  # noqa: F401


def test_a_hospital_refuses_a_round_for_another_task():
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    cfg = round_config(to_hex(model_hash(initial)), task="regression")
    reply = train(task(initial, cfg), context(node_config()))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "task-mismatch"
    assert (
        "asks for task 'regression' with 1 output(s), but this hospital's data is for task 'binary'"
        in refusal["reason"]
    )


def test_a_diabetes_hospital_trains_and_reports_rmse_in_the_targets_units():
    initial = get_arrays(build_model("logreg", 10, 0, seed=0))
    nc = node_config(**{"data-path": "builtin:diabetes"})
    cfg = round_config(to_hex(model_hash(initial)), task="regression", lr=0.1)
    trained = train(task(initial, cfg), context(nc))
    assert "refusal" not in trained.content.config_records
    reply = evaluate_global(task(initial, cfg, "evaluate"), context(nc))
    metrics = reply.content.metric_records["metrics"]
    assert {"loss", "num-examples", "rmse", "mae"} <= set(metrics) and "accuracy" not in metrics
    report = EvaluationReport.from_wire(metrics, reply.content.config_records["info"])
    # an untrained model predicts about the site's mean: its RMSE is about the target's sd (77) or more
    assert report.accuracy is None and 50 < report.task_metrics["rmse"] < 200
