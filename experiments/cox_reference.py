"""An independent pooled reference for a survival study: lifelines' Cox proportional hazards model.

Fitted (without DP) on every hospital's training rows pooled, each in its own
hospital's standardised units, the rows the federated model trains on, and
scored on every hospital's test split with the study's own metrics
(fl_client/survival/metrics.py): Harrell's C of the partial hazard, and the
IPCW integrated Brier score of lifelines' survival curves (Breslow baseline)
at the study's grid edges. A small ridge penalty (0.01) keeps the fit finite
on nearly collinear covariates. An estimator of another library, so a bug in
the study's own discrete-time model does not also sit in its reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fl_client.data import HospitalData
from fl_client.survival.metrics import concordance, integrated_brier
from fl_server.validation import weighted_mean

PENALIZER = 0.01


def cox_reference(hospitals: list[HospitalData], time_grid: list[float]) -> dict[str, Any]:
    """``{"c-index", "ibs", "per_hospital"}`` of a pooled lifelines CoxPHFitter on the study's splits."""
    import pandas as pd
    from lifelines import CoxPHFitter

    columns = [f"x{i}" for i in range(hospitals[0].n_features)]
    X = np.concatenate([h.X_train for h in hospitals])
    y = np.concatenate([h.y_train for h in hospitals])
    frame = pd.DataFrame(X, columns=columns).assign(time=y[:, 0], event=y[:, 1])
    fitted = CoxPHFitter(penalizer=PENALIZER).fit(frame, duration_col="time", event_col="event")
    per: dict[str, dict[str, Any]] = {}
    for h in hospitals:
        test = pd.DataFrame(h.X_test, columns=columns)
        time, event = h.y_test[:, 0].astype(np.float64), h.y_test[:, 1].astype(np.float64)
        risk = np.asarray(fitted.predict_partial_hazard(test), dtype=np.float64)
        curves = np.asarray(fitted.predict_survival_function(test, times=time_grid), dtype=np.float64).T
        per[h.hospital_id] = {
            "c-index": concordance(time, event, -risk),
            "ibs": integrated_brier(curves, time, event, np.asarray(time_grid)),
            "num-examples": h.n_test,
        }
    overall = {k: weighted_mean([(m[k], m["num-examples"]) for m in per.values()]) for k in ("c-index", "ibs")}
    return {**overall, "per_hospital": per, "model": f"lifelines CoxPHFitter (penalizer {PENALIZER})"}
