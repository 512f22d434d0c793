"""FedProx: the proximal term on hand-checked vectors, with and without DP, and its config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.config import PrivacyConfig, TrainConfig, check_proximal_mu
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model, get_arrays, set_arrays
from fl_client.proximal import ProximalSGD, proximal_term
from fl_client.training import train_local


def test_proximal_step_on_a_hand_checked_vector():
    # arrange: w = (1, -2), anchor = the start (1, -2); move w to (3, 0), data gradient (0.5, 0.5)
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = ProximalSGD([w], mu=0.5, lr=0.1)
    with torch.no_grad():
        w.copy_(torch.tensor([3.0, 0.0]))
    w.grad = torch.tensor([0.5, 0.5])
    # act
    opt.step()
    # assert: w - lr * (g + mu * (w - anchor)) = (3 - 0.1 * (0.5 + 1.0), 0 - 0.1 * (0.5 + 1.0))
    assert torch.allclose(w.detach(), torch.tensor([2.85, -0.15]))


def test_the_added_gradient_is_the_gradient_of_the_proximal_term():
    model = nn.Linear(3, 1)
    anchor = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.25)
    proximal_term(model, anchor, mu=0.2).backward()
    expected = [0.2 * (p.detach() - a) for p, a in zip(model.parameters(), anchor, strict=True)]
    assert all(torch.allclose(p.grad, e) for p, e in zip(model.parameters(), expected, strict=True))


def test_mu_zero_is_plain_sgd():
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(4)), None
    b = nn.Parameter(a.detach().clone())
    sgd, prox = torch.optim.SGD([a], lr=0.3, momentum=0.9), ProximalSGD([b], mu=0.0, lr=0.3, momentum=0.9)
    for g in (torch.ones(4), -2 * torch.ones(4)):
        a.grad, b.grad = g.clone(), g.clone()
        sgd.step(), prox.step()
    assert torch.equal(a, b)


def _toy(n=60, d=4):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] + 0.3 * X[:, 1] > 0).astype(np.float32)


@pytest.mark.parametrize("dp", [False, True])
def test_a_larger_mu_keeps_the_local_model_closer_to_the_global_one(dp):
    X, y = _toy()
    start = get_arrays(build_model("logreg", 4, 0, seed=0))
    cfg = TrainConfig(local_epochs=3, batch_size=10, lr=1.0)
    drift = {}
    for mu in (0.0, 1.0):
        model = build_model("logreg", 4, 0, seed=0)
        set_arrays(model, start)
        privacy = (
            HospitalPrivacy(PrivacyConfig(enabled=True, noise_multiplier=1.0), len(X), 10, 3, 3, None) if dp else None
        )
        train_local(model, X, y, cfg, seed=1, privacy=privacy, proximal_mu=mu)
        end = get_arrays(model)
        drift[mu] = float(np.sqrt(sum(((end[k] - start[k]) ** 2).sum() for k in start)))
        if dp:  # the term is data-independent: the privacy spend is the same
            drift[f"eps{mu}"] = privacy.epsilon()
    assert drift[1.0] < drift[0.0]
    if dp:
        assert drift["eps1.0"] == drift["eps0.0"]


def test_fedprox_config_is_checked_so_mu_is_never_silently_ignored():
    assert check_proximal_mu("fedprox", 0.01) == 0.01
    assert check_proximal_mu("fedavg", 0.0) == 0.0
    with pytest.raises(ValueError, match="needs strategy.proximal_mu > 0"):
        check_proximal_mu("fedprox", 0.0)
    with pytest.raises(ValueError, match="set strategy.name=fedprox"):
        check_proximal_mu("fedavg", 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        check_proximal_mu("fedprox", -1.0)
