"""DP-SGD for one hospital: accountant figures, real noise, persistence, budget, refusals."""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.config import NOISE_SOURCES, PrivacyConfig, TrainConfig
from fedledger.dp.epsilon import compute_epsilon
from fl_client.accounting import BudgetExceededError, default_delta
from fl_client.dp_training import HospitalPrivacy, make_hospital_privacy
from fl_client.models import IncompatibleModelError, build_model, get_arrays, make_private_compatible
from fl_client.training import train_local

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")

ROUND = TrainConfig(local_epochs=1, batch_size=10, lr=0.1)  # one local epoch a round: the figures below count on it


def _toy(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.float32)


def _privacy(n=40, batch=10, rounds=3, epochs=1, budget=None, **cfg):
    cfg = {"enabled": True, "noise_multiplier": 1.0, **cfg}
    return HospitalPrivacy(PrivacyConfig(**cfg), n, batch, rounds, epochs, budget)


def _opacus_epsilon(mechanism, noise, q, steps, delta):
    """Independent figure: Opacus's own accountant stepped one step at a time."""
    from opacus.accountants import create_accountant

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acc = create_accountant(mechanism)
    for _ in range(steps):
        acc.step(noise_multiplier=noise, sample_rate=q)
    return acc.get_epsilon(delta=delta)


# ---------------------------------------------------------------- accountant figures


def test_rdp_matches_the_known_value():
    eps = compute_epsilon("rdp", [(1.5, 0.04, 2250)], 1e-5)

    assert eps == pytest.approx(7.329, abs=0.01)


def test_prv_and_gdp_are_in_a_sane_relation_to_rdp():
    hist = [(1.5, 0.04, 2250)]

    rdp, prv, gdp = (compute_epsilon(a, hist, 1e-5) for a in ("rdp", "prv", "gdp"))

    assert 0 < prv < rdp  # PRV is the tighter numerical bound; RDP's conversion is loose
    assert rdp - prv < 1.5
    assert 0 < gdp < rdp and abs(gdp - prv) < 0.5  # CLT approximation lands near the tight value


def test_reported_epsilon_equals_opacus_accountant_for_the_same_steps():
    X, y = _toy()
    privacy = _privacy(accountant="rdp")

    stats = train_local(build_model("logreg", 4), X, y, TrainConfig(local_epochs=2, batch_size=10, lr=0.1), 0, privacy)

    assert stats.steps == 8 and privacy.steps == 8
    assert stats.epsilon == pytest.approx(_opacus_epsilon("rdp", 1.0, 0.25, 8, privacy.delta), rel=1e-12)
    assert stats.noise_multiplier == 1.0 and stats.delta == privacy.delta == default_delta(40)


def test_default_delta_is_below_one_over_n():
    assert default_delta(40) == 1e-5
    assert default_delta(1_000_000) == pytest.approx(1e-7)
    assert _privacy(n=200_000, batch=100).delta < 1 / 200_000


def test_target_epsilon_derives_noise_once_for_the_whole_study():
    privacy = _privacy(
        n=140, batch=32, rounds=5, epochs=2, noise_multiplier=None, target_epsilon=3.0, delta=1e-5, accountant="prv"
    )

    final = compute_epsilon("prv", [(privacy.noise_multiplier, 32 / 140, privacy.planned_steps)], 1e-5)

    assert privacy.planned_steps == 5 * 2 * 4
    assert 2.95 <= final <= 3.0


# ---------------------------------------------------------------- noise is really added


@pytest.mark.parametrize("source", NOISE_SOURCES)
def test_zero_gradient_step_moves_parameters_by_the_implied_noise(source):
    n, batch, d, sigma, clip, lr = 200, 20, 400, 1.3, 0.7, 0.5
    privacy = _privacy(n=n, batch=batch, noise_multiplier=sigma, max_grad_norm=clip, noise_source=source)
    model = nn.Linear(d, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    X = torch.randn(n, d)
    dp_model, dp_opt, loader = privacy.attach(model, opt, (X,), generator=privacy.make_generator(0))
    deltas, sizes = [], []
    for (xb,) in loader:  # 10 Poisson batches of varying size
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        dp_opt.zero_grad()
        (dp_model(xb) * 0.0).mean().backward()  # every per-sample gradient is exactly 0
        dp_opt.step()
        deltas.append(torch.cat([p.detach().flatten() for p in model.parameters()]) - before)
        sizes.append(len(xb))
    privacy.detach(dp_model)
    change = torch.cat(deltas).double()

    expected_std = sigma * clip * lr / batch  # Opacus divides by the *expected* batch size
    assert len(set(sizes)) > 1  # Poisson: realized sizes vary, the normalisation must not
    assert change.mean().abs() < 4 * expected_std / math.sqrt(change.numel())
    assert change.std().item() == pytest.approx(expected_std, rel=0.05)  # ~4000 draws: 5 % is > 4 sd


@pytest.mark.parametrize("source", NOISE_SOURCES)
def test_two_seeds_give_different_models_and_one_seed_is_reproducible_only_when_seeded(source):
    X, y = _toy()
    runs = []
    for seed in (0, 0, 1):
        model = build_model("logreg", 4, seed=0)
        train_local(model, X, y, ROUND, seed, _privacy(noise_source=source))
        runs.append(get_arrays(model)["linear.weight"])

    assert np.array_equal(runs[0], runs[1]) == (source == "seeded")  # os-entropy: nothing to replay
    assert not np.allclose(runs[0], runs[2])


@pytest.mark.parametrize("mode", ["hooks", "functorch", "ew"])
def test_empty_poisson_batches_are_noise_only_steps(mode):
    X, y = _toy(n=30)
    privacy = _privacy(n=30, batch=1, grad_sample_mode=mode)  # q = 1/30: about a third of the batches are empty
    model = build_model("mlp", 4, hidden=3)
    before = get_arrays(model)

    stats = train_local(model, X, y, TrainConfig(local_epochs=1, batch_size=1, lr=0.1), 0, privacy)

    after = get_arrays(model)
    assert stats.steps == 30 == privacy.steps
    assert all(np.isfinite(a).all() for a in after.values())
    assert all(not np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("mode", ["hooks", "functorch", "ew"])
@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_grad_sample_modes_give_exact_per_sample_gradients(mode, name):
    from opacus.grad_sample.utils import wrap_model

    model = build_model(name, 3, hidden=4, seed=0)
    X, y = torch.randn(5, 3), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    expected = []
    for i in range(5):  # reference: one backward pass per sample
        model.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(X[i : i + 1]), y[i : i + 1]).backward()
        expected.append({k: p.grad.clone() for k, p in model.named_parameters()})
    wrapped = wrap_model(model, mode, batch_first=True, loss_reduction="mean")

    nn.functional.binary_cross_entropy_with_logits(wrapped(X), y).backward()

    for k, p in model.named_parameters():
        per_sample = torch.stack([e[k] for e in expected])
        assert torch.allclose(p.grad_sample, per_sample, atol=1e-6), (mode, k)
    wrapped._close()


# ---------------------------------------------------------------- persistence


def test_state_survives_a_restart_and_epsilon_keeps_growing(tmp_path):
    X, y = _toy()
    cfg = ROUND
    uninterrupted = _privacy()
    for r in (1, 2):
        train_local(build_model("logreg", 4), X, y, cfg, r, uninterrupted)
    first = _privacy()
    stats1 = train_local(build_model("logreg", 4), X, y, cfg, 1, first)
    first.save_state(tmp_path / "state" / "privacy.json")

    resumed = _privacy()
    assert resumed.load_state(tmp_path / "state" / "privacy.json")
    stats2 = train_local(build_model("logreg", 4), X, y, cfg, 2, resumed)

    assert stats2.epsilon > stats1.epsilon > 0
    assert stats2.epsilon == pytest.approx(uninterrupted.epsilon(), rel=1e-12)
    assert resumed.history == uninterrupted.history == [(1.0, 0.25, 8)]
    assert os.listdir(tmp_path / "state") == ["privacy.json"]  # no temp file left behind
    saved = json.loads((tmp_path / "state" / "privacy.json").read_text())
    assert saved["version"] == 1 and saved["accountant"] == "prv" and saved["history"] == [[1.0, 0.25, 4]]


def test_missing_state_file_is_a_fresh_start(tmp_path):
    assert _privacy().load_state(tmp_path / "nothing.json") is False


@pytest.mark.parametrize(
    "field, value",
    [("accountant", "rdp"), ("noise_multiplier", 1.1), ("sample_rate", 0.5), ("delta", 1e-6), ("version", 99)],
)
def test_load_state_dict_refuses_mismatched_state(field, value):
    state = _privacy().state_dict()
    state[field] = value

    with pytest.raises(ValueError, match=field if field != "accountant" else "accountant"):
        _privacy().load_state_dict(state)


def test_projected_epsilon_does_not_mutate_the_accountant():
    privacy = _privacy(accountant="rdp")

    projected = privacy.projected_epsilon(4)

    assert privacy.steps == 0 and privacy.epsilon() == 0.0
    assert projected == pytest.approx(_opacus_epsilon("rdp", 1.0, 0.25, 4, privacy.delta))


# ---------------------------------------------------------------- budget


def test_budget_refuses_exactly_at_the_round_that_would_pass_it():
    X, y = _toy()
    eps_after = [_opacus_epsilon("rdp", 1.0, 0.25, 4 * r, 1e-5) for r in (1, 2, 3, 4)]
    budget = (eps_after[2] + eps_after[3]) / 2
    privacy = _privacy(rounds=4, budget=budget, accountant="rdp")
    model = build_model("logreg", 4)

    for r in (1, 2, 3):
        privacy.check_budget(r)
        train_local(model, X, y, ROUND, r, privacy)
    with pytest.raises(BudgetExceededError) as err:
        privacy.check_budget(4)
    with pytest.raises(BudgetExceededError):
        train_local(model, X, y, ROUND, 4, privacy)  # training refuses by itself too

    assert privacy.steps == 12
    assert err.value.current == pytest.approx(eps_after[2]) and err.value.projected == pytest.approx(eps_after[3])
    msg = str(err.value)
    assert "round 4" in msg and f"{eps_after[2]:.4f}" in msg and f"{eps_after[3]:.4f}" in msg and f"{budget:g}" in msg


def test_summary_reports_the_spend():
    privacy = _privacy(budget=5.0)

    summary = privacy.summary()

    assert {"epsilon", "delta", "budget", "noise_multiplier", "max_grad_norm", "accountant"} <= set(summary)
    assert summary["epsilon"] == 0.0 and summary["budget"] == 5.0 and summary["accountant"] == "prv"


# ---------------------------------------------------------------- never without DP


def test_batchnorm_model_is_refused_by_dp_training_and_trains_privately_once_fixed():
    X, y = _toy()
    bn = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1), nn.Flatten(0))
    privacy = _privacy()

    with pytest.raises(IncompatibleModelError):
        train_local(bn, X, y, ROUND, 0, privacy)
    assert privacy.steps == 0
    stats = train_local(make_private_compatible(bn), X, y, ROUND, 0, privacy)

    assert stats.epsilon > 0 and privacy.steps == 4


def test_config_validation_and_optional_privacy():
    assert make_hospital_privacy({"enabled": False}, 40, 10, 3) is None
    with pytest.raises(ValueError, match="refusing to train without DP"):
        make_hospital_privacy({"enabled": False}, 40, 10, 3, budget=2.0)
    with pytest.raises(ValueError, match="exactly one"):
        make_hospital_privacy({"enabled": True}, 40, 10, 3)
    with pytest.raises(ValueError, match="accountant"):
        PrivacyConfig(enabled=True, noise_multiplier=1.0, accountant="moments").validate()
    assert isinstance(make_hospital_privacy({"enabled": True, "noise_multiplier": 1.0}, 40, 10, 3), HospitalPrivacy)


def test_batch_size_must_match_the_privacy_setup():
    X, y = _toy()

    with pytest.raises(ValueError, match="batch_size"):
        train_local(
            build_model("logreg", 4), X, y, TrainConfig(local_epochs=1, batch_size=20, lr=0.1), 0, _privacy(batch=10)
        )
