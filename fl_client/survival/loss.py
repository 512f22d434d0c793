"""Survival losses.

``hazard_nll``: the discrete-time (logistic hazard) negative log-likelihood. It is
a sum over patients of terms that depend on one patient's logits and targets
only, so DP-SGD's per-sample clipping bounds each patient's influence.

``cox_nll``: the Cox partial likelihood (Breslow ties). Each patient's term
divides by a sum over its risk set, i.e. over OTHER patients of the batch, so a
patient's gradient depends on everyone else in the batch and per-sample clipping
no longer bounds one patient's influence: it is refused when DP is on
(:func:`check_survival_loss`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

SURVIVAL_LOSSES = ("discrete_hazard", "cox")


class CoxUnderDPError(ValueError):
    """The Cox partial likelihood was asked for under DP-SGD."""


def check_survival_loss(name: str, dp_enabled: bool) -> str:
    """A known survival loss, and never Cox under DP (the refusal says why)."""
    if name not in SURVIVAL_LOSSES:
        raise ValueError(f"unknown survival loss {name!r}; choose one of {', '.join(SURVIVAL_LOSSES)}")
    if name == "cox" and dp_enabled:
        raise CoxUnderDPError(
            "the Cox partial likelihood is refused with DP on: each patient's term is divided by a sum over its "
            "risk set (the other patients of the batch still at risk), so one patient's gradient depends on the "
            "others and DP-SGD's per-sample clipping no longer bounds one patient's influence. Use the "
            "discrete-time hazard loss (survival_loss=discrete_hazard), which is a sum of per-patient terms."
        )
    return name


def per_patient_hazard_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each patient's NLL, shape ``(n,)``: sum over intervals at risk of BCE(hazard logit, event in interval).

    ``logits`` ``(n, K)``; ``targets`` ``(n, 2, K)`` (at-risk mask, event target) from
    :func:`fl_client.survival.grid.interval_targets`.
    """
    if logits.dim() != 2 or targets.dim() != 3 or targets.shape[1] != 2 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits (n, K) and targets (n, 2, K) expected, got {tuple(logits.shape)}, {tuple(targets.shape)}"
        )
    if targets.shape[2] != logits.shape[1]:
        raise ValueError(f"the model gives {logits.shape[1]} interval logits, the time grid has {targets.shape[2]}")
    mask, event = targets[:, 0, :], targets[:, 1, :]
    terms = F.binary_cross_entropy_with_logits(logits, event, reduction="none")
    return (terms * mask).sum(dim=1)


def hazard_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-patient discrete-time NLL (Opacus's ``loss_reduction="mean"``)."""
    return per_patient_hazard_nll(logits, targets).mean()


def cox_nll(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), divided by the number of events.

    ``risk`` ``(n,)`` log-hazard ratios; for each event ``i``:
    ``-(risk_i - log sum_{j: t_j >= t_i} exp(risk_j))``. Non-private use only.
    """
    risk, time, event = risk.reshape(-1), time.reshape(-1), event.reshape(-1).to(risk.dtype)
    at_risk = (time[None, :] >= time[:, None]).to(risk.dtype)  # row i: patients still at risk at t_i
    log_denominator = torch.logsumexp(risk[None, :] + torch.log(at_risk), dim=1)
    events = event.sum()
    return -((risk - log_denominator) * event).sum() / torch.clamp(events, min=1.0)
