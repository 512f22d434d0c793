"""Reference points on the same splits, as FLamby reports them.

- pooled: all hospitals' training rows centralised, one model, evaluated on
  every hospital's test split;
- local: each hospital trains alone and is evaluated on every hospital's
  test split (what a hospital gets without the federation).
Both train for as many epochs as the federated study does in total, without DP.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fedledger.config import TrainConfig
from fl_client.data import HospitalData
from fl_client.own_model import build_study_model
from fl_client.training import evaluate, train_local
from fl_server.validation import weighted_mean


def _score(model: Any, hospitals: list[HospitalData]) -> dict[str, Any]:
    per = {}
    for h in hospitals:
        r = evaluate(model, h.X_test, h.y_test)
        per[h.hospital_id] = {"accuracy": r.accuracy, "auc": r.auc, "loss": r.loss, "num-examples": r.n}
    overall = {k: weighted_mean([(m[k], m["num-examples"]) for m in per.values()]) for k in ("accuracy", "auc", "loss")}
    return {**overall, "per_hospital": per}


def _train(X: np.ndarray, y: np.ndarray, cfg: dict[str, Any], n_features: int) -> Any:
    model = build_study_model(cfg["model"], n_features, seed=int(cfg["seed"]), quiet=True)
    per_round = TrainConfig.from_any(cfg["train"])
    tcfg = replace(per_round, local_epochs=per_round.local_epochs * int(cfg["num_rounds"]))
    train_local(model, X, y, tcfg, seed=int(cfg["seed"]))
    return model


def compute_baselines(hospitals: list[HospitalData], cfg: dict[str, Any]) -> dict[str, Any]:
    n_features = hospitals[0].X_train.shape[1]
    X = np.concatenate([h.X_train for h in hospitals])
    y = np.concatenate([h.y_train for h in hospitals])
    pooled = _score(_train(X, y, cfg, n_features), hospitals)
    local_each = {}
    for h in hospitals:
        local_each[h.hospital_id] = _score(_train(h.X_train, h.y_train, cfg, n_features), hospitals)
    local = {
        k: float(np.mean([v[k] for v in local_each.values() if v[k] is not None])) for k in ("accuracy", "auc", "loss")
    }
    return {"pooled": pooled, "local": {**local, "per_hospital_model": local_each}}
