"""Local training and evaluation of one hospital, independent of Flower.

``train_local`` trains a model in place on numpy data (X float32 (n, d), y as
the study's task defines it, fl_client/tasks.py; binary by default: 0/1) as a
:class:`fedledger.config.TrainConfig` says; with a
:class:`fl_client.dp_training.HospitalPrivacy` it runs DP-SGD (Opacus) and
reports the cumulative epsilon. ``evaluate`` returns the task's loss and
metrics (binary: BCE loss, accuracy and ROC AUC, None when only one class is present).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedledger.config import TrainConfig
from fl_client.dp_training import HospitalPrivacy
from fl_client.proximal import ProximalSGD
from fl_client.tasks import IDENTITY, Metrics, TargetScale, Task, task_for

__all__ = ["EvalResult", "TrainStats", "evaluate", "to_tensors", "train_local"]


@dataclass
class TrainStats:
    loss: float  # mean training loss (the task's) over the examples seen
    steps: int  # optimizer steps taken in this call
    epsilon: float | None  # cumulative epsilon after this call (None without DP)
    noise_multiplier: float | None  # None without DP
    delta: float | None = None
    num_examples: int = 0  # rows of the hospital's data set


@dataclass
class EvalResult:
    """The task's loss and metrics on one split (``metrics``: fedledger/tasks.py's names, None where undefined)."""

    loss: float
    n: int
    metrics: Metrics = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Binary and multiclass accuracy (NaN for a task without one, or no rows)."""
        value = self.metrics.get("accuracy")
        return math.nan if value is None else float(value)

    @property
    def auc(self) -> float | None:
        return self.metrics.get("auc")


def to_tensors(X: np.ndarray, y: np.ndarray, task: Task | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) as tensors, y as ``task`` (default binary) takes it; a target the task cannot have is refused."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    y = y if y.ndim == 2 and y.shape[1] > 1 else y.reshape(-1)  # survival: (time, event) per row
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    return torch.from_numpy(np.ascontiguousarray(X)), (task or task_for()).target(y)


def _optimizer(model: nn.Module, cfg: TrainConfig, proximal_mu: float = 0.0) -> torch.optim.Optimizer:
    sgd = {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if proximal_mu:
        return ProximalSGD(model.parameters(), mu=proximal_mu, **sgd)
    return torch.optim.SGD(model.parameters(), **sgd)


def train_local(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig | Mapping | Any,
    seed: int,
    privacy: HospitalPrivacy | None = None,
    proximal_mu: float = 0.0,
    task: Task | None = None,
) -> TrainStats:
    """Train ``model`` in place for ``cfg.local_epochs`` epochs.

    Without ``privacy``: plain SGD on shuffled mini-batches, deterministic
    given ``seed``. With ``privacy``: DP-SGD (per-sample clipping, Gaussian
    noise, Poisson sampling at rate batch_size/n), refusing first with
    ``BudgetExceededError`` if the round would pass the hospital's budget;
    incompatible models raise ``IncompatibleModelError`` (never trained without DP).
    ``proximal_mu > 0`` adds FedProx's proximal term towards the model the call starts from.
    ``task`` (fl_client/tasks.py; default binary) gives the target's form and the loss.
    """
    cfg = TrainConfig.from_any(cfg)
    task = task or task_for()
    Xt, yt = to_tensors(X, y, task)
    n = len(Xt)
    if n == 0:
        raise ValueError("no training data")
    gen = torch.Generator().manual_seed(int(seed))
    model.train()
    total_loss = 0.0
    seen = 0
    steps = 0

    if privacy is None:
        optimizer = _optimizer(model, cfg, proximal_mu)
        bs = max(1, int(cfg.batch_size))
        for _ in range(int(cfg.local_epochs)):
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, bs):
                idx = perm[start : start + bs]
                xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
                optimizer.zero_grad(set_to_none=True)
                loss = task.loss(task.output(model(xb)), yb)
                loss.backward()
                optimizer.step()
                total_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                steps += 1
        return TrainStats(
            loss=total_loss / max(seen, 1), steps=steps, epsilon=None, noise_multiplier=None, delta=None, num_examples=n
        )

    if int(cfg.batch_size) != privacy.batch_size:
        raise ValueError(
            f"train batch_size={cfg.batch_size} differs from the privacy set-up's batch_size={privacy.batch_size} "
            "(the sample rate and noise were derived from it)"
        )
    task.check_dp()  # a loss that couples the batch (Cox) has no per-sample bound: never trained under DP
    privacy.check_budget(local_epochs=int(cfg.local_epochs))
    optimizer = _optimizer(model, cfg, proximal_mu)
    generator = privacy.make_generator(None if privacy.config.secure_mode else int(seed))
    dp_model, dp_optimizer, loader = privacy.attach(model, optimizer, (Xt, yt), generator=generator)
    try:
        with warnings.catch_warnings():
            # Opacus's backward hooks fire on outputs because inputs need no grad: expected, harmless
            warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
            for _ in range(int(cfg.local_epochs)):
                for xb, yb in loader:
                    dp_optimizer.zero_grad(set_to_none=True)
                    if len(xb):
                        loss = task.loss(task.output(dp_model(xb)), yb)
                        loss.backward()
                        total_loss += float(loss.detach()) * len(xb)
                        seen += len(xb)
                    else:
                        # empty Poisson batch: still a (noise-only) step, as the accounting assumes;
                        # no forward pass (expanded weights refuse batch size 0)
                        for p in dp_optimizer.params:
                            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
                    dp_optimizer.step()
                    steps += 1
    finally:
        privacy.detach(dp_model)
    return TrainStats(
        loss=total_loss / seen if seen else math.nan,
        steps=steps,
        epsilon=privacy.epsilon(),
        noise_multiplier=privacy.noise_multiplier,
        delta=privacy.delta,
        num_examples=n,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, X: np.ndarray, y: np.ndarray, task: Task | None = None, scale: TargetScale = IDENTITY
) -> EvalResult:
    """The task's loss and metrics (binary: BCE-with-logits, accuracy at logit > 0, ROC AUC: None with a single class).

    ``scale``: a regression target's (mean, std), so its metrics are in the target's own units.
    """
    task = task or task_for()
    Xt, yt = to_tensors(X, y, task)
    n = len(Xt)
    if n == 0:
        return EvalResult(loss=math.nan, n=0, metrics=dict.fromkeys(task.kind.metrics[1:]))
    was_training = model.training
    model.eval()
    try:
        output = task.output(model(Xt))
    finally:
        model.train(was_training)
    return EvalResult(loss=float(task.loss(output, yt)), n=n, metrics=task.metrics(output, yt, scale))
