"""Issue 17: no setting is silently ignored, with or without '+', and what is recorded is what runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from coordinator.study_setup import prepare_study
from fedledger.config import register_schemas
from fedledger.config_keys import UnknownSettingError, check_known_settings

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(overrides: list[str]) -> dict:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


@pytest.mark.parametrize(
    "override,named,hint",
    [
        ("+num_round=3", "'num_round'", "did you mean 'num_rounds'?"),
        ("+model.width=16", "'model.width'", "model takes name, hidden, _target_, kwargs"),
        ("+train.early_stopping=true", "'train.early_stopping'", "train takes local_epochs, batch_size, lr"),
        ("+strategy.bta=0.3", "'strategy.bta'", "did you mean 'strategy.beta'?"),
    ],
)
def test_a_plus_key_the_schema_does_not_know_stops_the_study_before_anything_runs(override, named, hint, tmp_path):
    # arrange: Hydra's '+' adds the key (struct mode does not refuse it)
    cfg = composed(["ledger=none", override])
    # act
    with pytest.raises(UnknownSettingError) as exc:
        prepare_study(cfg, tmp_path / "run")
    # assert: the key and the closest known one are named, and nothing was set up
    assert named in str(exc.value) and hint in str(exc.value)
    assert not (tmp_path / "run").exists()


def test_every_unknown_key_is_named_in_one_error():
    cfg = composed(["+num_round=3", "+train.early_stopping=true"])
    with pytest.raises(UnknownSettingError) as exc:
        check_known_settings(cfg)
    assert "'num_round'" in str(exc.value) and "'train.early_stopping'" in str(exc.value)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_the_experiment_presets_hold_only_known_keys(experiment):
    check_known_settings(composed([f"+experiment={experiment}"]))


@pytest.mark.parametrize("group", ["dataset", "model", "strategy", "train", "privacy", "encryption", "ledger"])
def test_every_shipped_option_holds_only_known_keys(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        check_known_settings(composed([f"{group}={option}"]))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["strategy.name=fedprox"], "needs strategy.proximal_mu > 0"),  # FedProx with mu 0 would be FedAvg
        (["strategy.name=fedproxx"], "not implemented .did you mean 'fedprox'"),
        (["strategy.name=median"], "not implemented .did you mean 'fedmedian'"),
        (["strategy=krum"], "sees only ciphertexts"),  # the default study encrypts
    ],
)
def test_a_strategy_name_that_would_not_run_as_recorded_is_refused(overrides, message, tmp_path):
    cfg = composed(["ledger=none", *overrides])
    with pytest.raises(ValueError, match=message):
        prepare_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["fedavg", "fedprox", "fedmedian", "fedtrimmedavg", "krum"])
def test_the_strategy_that_runs_is_the_one_recorded(strategy):
    # arrange: results.json records spec["config"]; the task (and protocol hash) carries its name
    from fl_server.robust import RobustStrategy
    from fl_server.study import build_strategy, round_task

    cfg = composed([f"strategy={strategy}", "encryption=off", "ledger=none"])
    spec = {"config": cfg, "study_id": "0x" + "11" * 32, "chain": None}
    # act
    built, _ = build_strategy(spec, {"w": np.zeros(2, np.float32)})
    # assert
    assert round_task(spec).strategy == cfg["strategy"]["name"] == strategy
    if isinstance(built, RobustStrategy):
        assert built.choice.name == strategy
        assert {k: v for k, v in vars(built.choice).items() if v is not None and k != "proximal_mu"} == {
            k: cfg["strategy"][k] for k in ("name", "beta", "num_malicious", "multi_krum_m") if cfg["strategy"][k]
        }
    else:
        assert strategy in ("fedavg", "fedprox") and type(built).__name__ == "FedAvgStrategy"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["model.hidden=16"], "model.hidden=16 is the MLP's width: set model=mlp"),  # logreg has no hidden layer
        (["model=mlp", "model.hidden=0"], "model.hidden must be >= 1 for model=mlp"),
    ],
)
def test_a_model_width_no_model_uses_is_refused(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        prepare_study(composed(["ledger=none", *overrides]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_epsilon_with_dp_off_is_refused_not_recorded(tmp_path):
    cfg = composed(["ledger=none", "privacy=off", "privacy.target_epsilon=1"])
    with pytest.raises(ValueError, match="privacy.target_epsilon=1.0 with privacy.enabled=false trains without DP"):
        prepare_study(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_budget_for_no_hospital_of_the_study_is_refused(tmp_path):
    # arrange: the hospitals are hospital_0..hospital_3; 'hospital1' would leave hospital_1 on the default budget
    cfg = composed(["ledger=none", "encryption=off", "+budgets.hospital1=1.5"])
    # act / assert
    with pytest.raises(
        UnknownSettingError, match=r"budgets.hospital1 names no hospital .*did you mean 'budgets.hospital_1'"
    ):
        prepare_study(cfg, tmp_path / "run")
