"""The planned PRV accountant agrees with Opacus's and refuses to go past its plan."""

from __future__ import annotations

import pytest
from opacus.accountants import PRVAccountant

from fedledger.config import PrivacyConfig
from fedledger.dp.epsilon import compute_epsilon
from fedledger.dp.prv_plan import PlannedPRV
from fl_client.dp_training import HospitalPrivacy


def opacus_epsilon(noise: float, rate: float, steps: int, delta: float) -> float:
    acc = PRVAccountant()
    acc.history = [(noise, rate, steps)]
    return acc.get_epsilon(delta=delta)


@pytest.mark.parametrize("steps", [1, 4, 20])
def test_planned_epsilon_matches_opacus_within_its_error(steps):
    # arrange
    plan = PlannedPRV(noise_multiplier=1.5, sample_rate=0.25, max_steps=20, delta=1e-5)
    # act
    mine, theirs = plan.epsilon(steps), opacus_epsilon(1.5, 0.25, steps, 1e-5)
    # assert: both are upper bounds within eps_error=0.01 of the true epsilon
    assert mine == pytest.approx(theirs, abs=0.02)


def test_planned_epsilon_grows_with_steps_and_is_zero_for_none():
    plan = PlannedPRV(noise_multiplier=1.0, sample_rate=0.1, max_steps=30, delta=1e-5)
    eps = [plan.epsilon(s) for s in (0, 1, 10, 30)]
    assert eps[0] == 0.0
    assert eps == sorted(eps) and eps[1] < eps[3]


def test_planned_prv_refuses_steps_beyond_its_plan():
    plan = PlannedPRV(noise_multiplier=1.0, sample_rate=0.1, max_steps=5, delta=1e-5)
    with pytest.raises(ValueError, match="more than the 5 this accountant was planned for"):
        plan.epsilon(6)


def test_planned_prv_rejects_bad_parameters():
    with pytest.raises(ValueError, match="noise > 0"):
        PlannedPRV(noise_multiplier=0.0, sample_rate=0.1, max_steps=5, delta=1e-5)


def test_compute_epsilon_falls_back_to_opacus_past_the_plan():
    # arrange: 8 steps taken, but the plan was 5 (e.g. the study was extended)
    hist = [(1.2, 0.2, 8)]
    # act
    eps = compute_epsilon("prv", hist, 1e-5, planned_steps=5)
    # assert
    assert eps == pytest.approx(opacus_epsilon(1.2, 0.2, 8, 1e-5), abs=1e-9)


def test_hospital_projection_uses_the_plan_and_agrees_with_opacus():
    # arrange: 100 records, batch 20 -> 5 steps/epoch, 3 rounds x 1 epoch = 15 planned steps
    hp = HospitalPrivacy(
        PrivacyConfig(enabled=True, noise_multiplier=1.1, accountant="prv"),
        n_records=100,
        batch_size=20,
        planned_rounds=3,
        local_epochs=1,
    )
    # act
    projected = hp.projected_epsilon(5)
    # assert
    assert hp.planned_steps == 15
    assert projected == pytest.approx(opacus_epsilon(1.1, 0.2, 5, hp.delta), abs=0.02)


def test_a_miss_fills_the_next_rounds_figures():
    # arrange: a fresh (noise, rate) so nothing is memoized yet; 4 steps a round, 12 planned
    from fedledger.dp import epsilon

    hist = [(1.37, 0.125, 4)]
    # act
    first = compute_epsilon("prv", hist, 1e-5, planned_steps=12, round_steps=4)
    # assert: rounds 2 and 3 (8 and 12 steps) are already in the memo, with the values a direct call gives
    keys = [k for k in epsilon.memo_export() if k.startswith('["epsilon-planned", 1.37, 0.125')]
    assert sorted(int(k.split(", ")[3]) for k in keys) == [4, 8, 12]
    assert first == pytest.approx(PlannedPRV(1.37, 0.125, 12, 1e-5).epsilon(4), abs=1e-12)
