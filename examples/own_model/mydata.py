"""A researcher's own data loader for FedLedger (docs/DATA.md, "Your own data loader").

Hospital ``index`` of ``num_hospitals`` gets every ``num_hospitals``-th row of
scikit-learn's Wisconsin breast cancer data (real patients, 569 rows), keeps
the first ``n_features`` features, splits its rows into train and test with
its own seed, and standardises both with its training rows' statistics.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer

from fl_client.data import HospitalData


def load(index: int, num_hospitals: int, seed: int, n_features: int = 10, test_fraction: float = 0.25) -> HospitalData:
    """Hospital ``index``'s data: the contract FedLedger checks (features float32 (n, d), labels 0/1, names)."""
    data = load_breast_cancer()
    X = data.data[index::num_hospitals, :n_features].astype(np.float32)
    y = data.target[index::num_hospitals].astype(np.float32)
    order = np.random.default_rng([seed, index]).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    mean, std = X[train].mean(axis=0), X[train].std(axis=0) + 1e-8
    return HospitalData(
        hospital_id=f"site_{index + 1}",
        X_train=(X[train] - mean) / std,
        y_train=y[train],
        X_test=(X[test] - mean) / std,
        y_test=y[test],
        feature_names=[str(n) for n in data.feature_names[:n_features]],
    )
