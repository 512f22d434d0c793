"""Epsilon as a public function (fedledger.dp.plan): the hospital's real DP-SGD spend equals it; delta's range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedledger.config import PrivacyConfig, TrainConfig
from fedledger.dp.epsilon import compute_epsilon
from fedledger.dp.plan import DeltaError, check_delta, committed_epsilons, default_delta, dp_plan
from fedledger.dp.prv_plan import PlannedPRV
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model
from fl_client.training import train_local

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")

FIXED = PrivacyConfig(enabled=True, noise_multiplier=1.0, accountant="prv")


def _toy(n: int, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.float32)


@pytest.mark.parametrize(
    "cfg",
    [FIXED, PrivacyConfig(enabled=True, target_epsilon=3.0, delta=1e-5, accountant="rdp")],
    ids=["fixed-noise-prv", "target-epsilon-rdp"],
)
def test_a_hospitals_real_dp_sgd_spend_equals_the_public_function(cfg):
    # arrange: 3 rounds of real Opacus DP-SGD on 40 records, batch 10, 2 local epochs
    X, y = _toy(40)
    privacy = HospitalPrivacy(cfg, 40, 10, 3, 2)
    model = build_model("logreg", 4)
    reported = []
    # act
    for r in range(3):
        stats = train_local(model, X, y, TrainConfig(local_epochs=2, batch_size=10, lr=0.1), r, privacy)
        reported.append(stats.epsilon)
    recomputed = committed_epsilons(cfg, batch_size=10, planned_rounds=3, local_epochs=2, sample_counts=[40] * 3)
    # assert: the same figures, to the last bit; and they grow
    assert recomputed == reported
    assert 0 < recomputed[0] < recomputed[1] < recomputed[2]


def test_the_plan_is_what_the_module_docstring_says():
    plan = dp_plan(FIXED, n_records=113, batch_size=32, planned_rounds=3, local_epochs=2)

    assert plan.sample_rate == 32 / 113
    assert plan.steps_per_epoch == 3 and plan.steps_per_round == 6 and plan.planned_steps == 18
    assert plan.delta == default_delta(113) == 1e-5
    assert plan.noise_multiplier == 1.0


def test_a_smaller_claimed_count_gives_a_smaller_epsilon():
    # the public function depends on n: q = batch / n and the default delta
    honest = committed_epsilons(FIXED, 32, 3, 1, [113] * 3)
    inflated = committed_epsilons(FIXED, 32, 3, 1, [100_000] * 3)

    assert inflated[-1] < honest[-1] / 10


# ---------------------------------------------------------------- delta's range (issue 19 item 6)


def test_prv_epsilon_is_never_negative_at_a_large_delta():
    # before the fix the planned PRV accountant returned about -0.53 here
    hist = [(1.0, 0.5, 3)]

    planned = PlannedPRV(1.0, 0.5, 6, 0.5).epsilon(3)
    generic = compute_epsilon("prv", hist, 0.5)

    assert planned == 0.0 and generic == 0.0


@pytest.mark.parametrize(
    ("delta", "n", "words"),
    [(0.5, 40, "not below 1/n"), (1 / 40, 40, "not below 1/n"), (1.0, 40, "(0, 1)"), (0.0, 40, "(0, 1)")],
)
def test_a_delta_not_below_one_over_n_is_refused_naming_n(delta, n, words):
    with pytest.raises(DeltaError, match=r"delta") as err:
        check_delta(delta, n)

    assert words in str(err.value)


def test_a_hospital_refuses_to_account_at_delta_one_half():
    with pytest.raises(DeltaError, match="40 records"):
        HospitalPrivacy(PrivacyConfig(enabled=True, noise_multiplier=1.0, delta=0.5), 40, 10, 3, 1)


def test_a_delta_just_below_one_over_n_is_accepted():
    assert check_delta(0.99 / 40, 40) == 0.99 / 40


def test_a_study_whose_delta_is_not_below_one_over_n_stops_at_set_up_naming_the_hospital(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from coordinator.study_setup import prepare_study
    from fedledger.config import register_schemas

    register_schemas()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["ledger=none", "privacy.delta=0.5"])
    cfg = OmegaConf.to_container(cfg, resolve=True)

    with pytest.raises(DeltaError, match=r"hospital_0: privacy.delta=0.5 is not below 1/n"):
        prepare_study(cfg, tmp_path / "run")
