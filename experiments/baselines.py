"""Reference points on the same splits, as FLamby reports them.

- pooled: all hospitals' training rows centralised, one model, evaluated on
  every hospital's test split;
- local: each hospital trains alone and is evaluated on every hospital's
  test split (what a hospital gets without the federation).
Both train for as many epochs as the federated study does in total, without DP,
with the study's task (fl_client/tasks.py): its loss, and its metrics on each
hospital's test split (binary: accuracy, AUC, loss; regression: RMSE, MAE, R², loss
in the target's units, each hospital's own scale; multiclass: accuracy, macro-F1,
recall per class, loss; survival: C-index, IBS, loss, plus ``cox_reference``, a
pooled lifelines Cox model, experiments/cox_reference.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fedledger.config import TrainConfig
from fl_client.data import HospitalData, study_task
from fl_client.own_model import build_study_model
from fl_client.tasks import Task, task_for
from fl_client.training import evaluate, train_local
from fl_server.validation import weighted_mean


def _keys(task: Task) -> tuple[str, ...]:
    """The metric keys of a baseline, in the order the study reports them (binary: accuracy, auc, loss)."""
    first = [m for m in ("accuracy", "auc") if m in task.kind.metrics]
    return (*first, "loss", *(m for m in task.kind.metrics if m not in (*first, "loss")))


def _score(model: Any, hospitals: list[HospitalData], task: Task) -> dict[str, Any]:
    per = {}
    for h in hospitals:
        r = evaluate(model, h.X_test, h.y_test, task, h.target_scale)
        per[h.hospital_id] = {**{k: r.metrics.get(k) for k in _keys(task)}, "loss": r.loss, "num-examples": r.n}
        per[h.hospital_id].update({k: v for k, v in r.metrics.items() if k not in per[h.hospital_id]})
    overall = {k: weighted_mean([(m[k], m["num-examples"]) for m in per.values()]) for k in _keys(task)}
    return {**overall, "per_hospital": per}


def _train(X: np.ndarray, y: np.ndarray, cfg: dict[str, Any], n_features: int, task: Task) -> Any:
    model = build_study_model(cfg["model"], n_features, int(cfg["seed"]), quiet=True, n_outputs=task.num_outputs)
    per_round = TrainConfig.from_any(cfg["train"])
    tcfg = replace(per_round, local_epochs=per_round.local_epochs * int(cfg["num_rounds"]))
    train_local(model, X, y, tcfg, seed=int(cfg["seed"]), task=task)
    return model


def compute_baselines(hospitals: list[HospitalData], cfg: dict[str, Any]) -> dict[str, Any]:
    """Pooled and local-only references; a regression target is pooled in each hospital's standard units
    (its own training mean and std), the form the federated model trains on."""
    spec = study_task(hospitals)
    task = task_for(spec["name"], spec["num_outputs"], spec.get("options"))
    n_features = hospitals[0].X_train.shape[1]
    X = np.concatenate([h.X_train for h in hospitals])
    y = np.concatenate([h.y_train for h in hospitals])
    pooled = _score(_train(X, y, cfg, n_features, task), hospitals, task)
    local_each = {}
    for h in hospitals:
        local_each[h.hospital_id] = _score(_train(h.X_train, h.y_train, cfg, n_features, task), hospitals, task)
    local = {}
    for k in _keys(task):
        values = [v[k] for v in local_each.values() if v[k] is not None]
        local[k] = float(np.mean(values)) if values else None
    out = {"pooled": pooled, "local": {**local, "per_hospital_model": local_each}}
    if task.name == "survival":  # an independent reference from another library (experiments/cox_reference.py)
        from experiments.cox_reference import cox_reference

        out["cox_reference"] = cox_reference(hospitals, list(spec["options"]["time_grid"]))
    return out
