"""95% confidence intervals of a hospital's test metrics.

A hospital's test split is small (tens of patients), so one patient moves its
accuracy by several points; a metric without its interval invites reading
noise as a difference. Accuracy: the Wilson score interval. ROC-AUC: Hanley
and McNeil (1982), from the AUC and the split's positive and negative counts,
with the AUC kept half a pair away from 0 and 1 in the variance (otherwise a
perfect AUC on 10 patients would get a zero-width interval).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(accuracy: float | None, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion measured on ``n`` patients; None without data."""
    if accuracy is None or n <= 0 or math.isnan(accuracy):
        return None
    k = round(accuracy * n)  # the accuracy is correct / n: recover the count exactly
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def hanley_mcneil(
    auc: float | None, positives: int | None, negatives: int | None, z: float = Z95
) -> tuple[float, float] | None:
    """Hanley-McNeil interval of ROC-AUC; None where the AUC is undefined or the class counts unknown."""
    if auc is None or positives is None or negatives is None or positives <= 0 or negatives <= 0:
        return None
    pairs = positives * negatives
    a = min(max(auc, 0.5 / pairs), 1.0 - 0.5 / pairs)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / pairs
    half = z * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def with_intervals(row: dict, positives: int | None = None) -> dict:
    """A hospital's metric row (results.json ``per_hospital``) with ``accuracy-ci`` and ``auc-ci``
    ([low, high] or None); the AUC's needs the test split's positives, which only the hospital knows.

    A row without accuracy and AUC (a regression or survival task) gets no interval: RMSE, MAE,
    R² and the like would need the hospital's per-patient errors (a bootstrap), which it does not send.
    A multiclass row gets its accuracy's Wilson interval only.
    """
    if "accuracy" not in row and "auc" not in row:
        return dict(row)
    n = int(row.get("num-examples") or 0)
    acc = wilson(row.get("accuracy"), n)
    auc = hanley_mcneil(row.get("auc"), positives, None if positives is None else n - positives)
    out = {**row, "accuracy-ci": None if acc is None else list(acc)}
    if "auc" in row:
        out["auc-ci"] = None if auc is None else list(auc)
    if positives is not None:
        out["num-positives"] = int(positives)
    return out
