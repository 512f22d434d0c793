"""Public bounds a hospital holds a decrypted aggregate to before it trains from it or evaluates it.

The aggregator cannot see values and the hospitals' own encryption bound runs
only in honest code, so a hospital that builds its ciphertext by hand can
wrap the sum modulo q or send an update of any size. Two checks, each from
public figures only (the study's CKKS context, the round task, the weight
checked against the chain):

* ``aggregate-wrapped``: a decrypted sum beyond ``WRAP_MARGIN`` of the wrap
  point q/(2*scale) (fedledger/ckks/bounds.py);
* ``aggregate-step-too-large`` (DP on): the L2 step from the last accepted
  global model exceeds :func:`step_bound`, what any honest hospital could move
  under the registered learning rate, momentum, weight decay, FedProx mu,
  epochs, batch size, clipping norm and noise (docs/ENCRYPTION.md gives the
  formula). The aggregate is a weighted mean of the hospitals' models, so its
  step is at most the largest hospital's step.

A weight that is not a positive whole number is ``total-weight-invalid``;
one that differs from the round's ``totalSamples`` on chain is
``total-weight-mismatch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fedledger.config import PrivacyConfig
from fedledger.dp.plan import default_delta, dp_plan
from fedledger.round_task import RoundTask

AGGREGATE_WRAPPED = "aggregate-wrapped"
AGGREGATE_STEP_TOO_LARGE = "aggregate-step-too-large"
TOTAL_WEIGHT_INVALID = "total-weight-invalid"
TOTAL_WEIGHT_MISMATCH = "total-weight-mismatch"
KEEP_PREVIOUS, STOP = "keep-previous", "stop"

#: Gaussian noise norm tail: ||N(0, I_d)|| <= sqrt(d) + NOISE_TAIL fails with probability <= exp(-NOISE_TAIL^2 / 2).
NOISE_TAIL = 8.0
#: Poisson batch tail: a batch of expected size B holds at most B + BATCH_TAIL * sqrt(B) + BATCH_TAIL^2 records
#: (Bernstein, failure probability below exp(-BATCH_TAIL^2 / 2) per step).
BATCH_TAIL = 8.0
#: Absolute L2 slack for CKKS decoding error.
STEP_SLACK = 1e-3


@dataclass(frozen=True)
class StepBound:
    """The largest L2 step one honest round can take, and what it was computed from."""

    bound: float
    steps: int
    per_step_gradient: float
    noise_multiplier: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "bound": self.bound,
            "steps": self.steps,
            "per_step_gradient": self.per_step_gradient,
            "noise_multiplier": self.noise_multiplier,
        }


def max_noise_multiplier(
    privacy: PrivacyConfig, batch_size: int, num_rounds: int, local_epochs: int, weight: int
) -> float:
    """The largest noise multiplier an honest hospital of at least ``batch_size`` records derives.

    A fixed noise multiplier is the task's. One derived from a target epsilon
    grows with the sample rate and falls with delta, so the worst case is a
    hospital of ``batch_size`` records (rate 1) at the smallest default delta
    any hospital of the round could use (``weight`` records).
    """
    if privacy.noise_multiplier is not None:
        return float(privacy.noise_multiplier)
    delta = float(privacy.delta) if privacy.delta is not None else default_delta(max(weight, batch_size))
    worst = replace(privacy, delta=delta)
    return dp_plan(worst, batch_size, batch_size, num_rounds, local_epochs).noise_multiplier


def step_bound(task: RoundTask, total_weight: int, n_params: int, start_norm: float) -> StepBound | None:
    """The L2 bound on one round's step from a model of norm ``start_norm``; None without DP.

    Per SGD step an honest hospital's gradient is a clipped mean plus noise,
    ``G = C * b_hi / B + sigma * C * (sqrt(d) + NOISE_TAIL) / B`` (B the batch size,
    b_hi the batch tail above), plus weight decay ``wd * ||w_t||`` and FedProx's
    ``mu * ||w_t - w_0||``; heavy-ball momentum accumulates ``v = m * v + g`` and
    ``w -= lr * v``. Steps: ``local_epochs * max(1, W // B)``, W the round's
    total weight (no hospital holds more records). Assumes every hospital holds
    at least ``batch_size`` records.
    """
    privacy = task.privacy
    if not privacy.get("enabled", False):
        return None
    known = {k: v for k, v in privacy.items() if k in PrivacyConfig.__dataclass_fields__}
    cfg = PrivacyConfig(**known)
    b = int(task.batch_size)
    sigma = max_noise_multiplier(cfg, b, int(task.num_rounds), int(task.dp_epochs), int(total_weight))
    clip = float(cfg.max_grad_norm)
    b_hi = b + BATCH_TAIL * math.sqrt(b) + BATCH_TAIL**2
    gradient = clip * b_hi / b + sigma * clip * (math.sqrt(n_params) + NOISE_TAIL) / b
    steps = int(task.local_epochs) * max(1, int(total_weight) // b)
    lr, m, wd, mu = abs(task.lr), abs(task.momentum), abs(task.weight_decay), abs(task.proximal_mu)
    moved = velocity = 0.0
    for _ in range(steps):
        velocity = m * velocity + gradient + wd * (start_norm + moved) + mu * moved
        moved += lr * velocity
    return StepBound(moved + STEP_SLACK, steps, gradient, sigma)


@dataclass(frozen=True)
class Verdict:
    """A decrypted aggregate held to the bounds: ``code`` None when it passes."""

    code: str | None
    reason: str
    step: float | None = None
    bound: StepBound | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def check_step(new: np.ndarray, previous: np.ndarray, task: RoundTask, total_weight: int, rounds_apart: int) -> Verdict:
    """The step from the last accepted global model (``rounds_apart`` rounds back) against the bound."""
    bound = step_bound(task, total_weight, int(previous.size), float(np.linalg.norm(previous)))
    step = float(np.linalg.norm(np.asarray(new, np.float64) - np.asarray(previous, np.float64)))
    if bound is None:
        return Verdict(None, "no DP: no step bound", step)
    allowed = bound.bound * max(1, rounds_apart)
    if not step <= allowed:  # NaN fails
        return Verdict(
            AGGREGATE_STEP_TOO_LARGE,
            f"the aggregate moves the model by {step:.6g} (L2) from the last accepted global model, "
            f"{max(1, rounds_apart)} round(s) back; honest hospitals move it at most {allowed:.6g} "
            f"({bound.steps} steps of at most {bound.per_step_gradient:.4g}, noise multiplier "
            f"{bound.noise_multiplier:.4g}, lr {task.lr:g})",
            step,
            bound,
        )
    return Verdict(None, f"step {step:.6g} within {allowed:.6g}", step, bound)


def check_aggregate(
    flat: np.ndarray, wrap: Any, previous: np.ndarray | None, task: RoundTask, total_weight: int, rounds_apart: int
) -> Verdict:
    """Both checks in order: the wrap (``fedledger.ckks.WrapCheck``), then the step when a previous model is held."""
    if not wrap.ok:
        return Verdict(AGGREGATE_WRAPPED, wrap.reason())
    if previous is None:
        return Verdict(None, "no accepted global model held: step not checked")
    return check_step(flat, previous, task, total_weight, rounds_apart)
