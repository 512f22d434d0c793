"""Hydra: every group composes against the schema, and a typo fails fast with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from fedledger.config import PrivacyConfig, TrainConfig, register_schemas

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["dataset", "model", "strategy", "train", "privacy", "encryption", "ledger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_with(overrides: list[str]):
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_default_study_composes():
    cfg = compose_with([])
    assert (cfg.num_hospitals, cfg.num_rounds, cfg.dataset.name, cfg.model.name) == (4, 10, "breast_cancer", "logreg")
    assert cfg.privacy.enabled and cfg.encryption.enabled and cfg.ledger.backend == "anvil"


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    overrides = [f"{group}={option}"]
    if (group, option) == ("ledger", "rpc"):
        overrides.append("ledger.rpc_url=http://127.0.0.1:8545")
    cfg = compose_with(overrides)
    OmegaConf.to_container(cfg, resolve=True)  # every value resolves


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment):
    compose_with([f"+experiment={experiment}"])


@pytest.mark.parametrize("override", ["num_hospital=3", "train.lrr=0.1", "privacy.noise=1.0", "ledger.url=x"])
def test_typo_fails_fast(override):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as exc:
        compose_with([override])
    assert override.split("=")[0].split(".")[-1] in str(exc.value) + str(exc.value.__cause__)


def test_wrong_type_fails_fast():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_with(["num_rounds=ten"])


def test_the_runtime_configs_are_the_schema_with_the_default_studys_values():
    # arrange: what the default study composes for the groups a hospital trains with
    cfg = compose_with([])
    # act
    train = TrainConfig.from_any(cfg.train)
    privacy = PrivacyConfig.from_any(cfg.privacy)
    # assert: the classes training uses are the schema's, and their defaults are conf/train/default.yaml's
    assert train == TrainConfig() == TrainConfig(local_epochs=2, batch_size=32, lr=1.0, momentum=0.0, weight_decay=0.0)
    assert privacy == PrivacyConfig(enabled=True, target_epsilon=3.0, delta=1e-5)
    privacy.validate()


def test_release_quorum_defaults_to_a_majority_and_refuses_out_of_range():
    from fedledger.config import release_quorum

    assert [release_quorum(None, n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert release_quorum(2, 4) == 2
    with pytest.raises(ValueError, match="release_quorum must be between 1 and the 4 hospitals, got 5"):
        release_quorum(5, 4)
    with pytest.raises(ValueError, match="got 0"):
        release_quorum(0, 4)


def test_on_bad_aggregate_names_the_choices():
    from fedledger.config import check_on_bad_aggregate

    assert check_on_bad_aggregate("stop") == "stop"
    with pytest.raises(ValueError, match="keep-previous"):
        check_on_bad_aggregate("keep_previous")
