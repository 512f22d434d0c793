"""What a researcher's config composes to: num_hospitals follows a CSV study's hospital list."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedledger.config import register_schemas
from fl_client.data import ConfigError, load_hospitals

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(overrides: list[str]) -> dict:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def test_num_hospitals_follows_the_csv_hospital_list(tmp_path):
    # arrange: a two-hospital list given on the command line, no num_hospitals
    hospitals = "dataset.hospitals=[{id: a, path: a.csv}, {id: b, path: b.csv}]"
    # act
    cfg = composed(["dataset=csv", hospitals])
    # assert: 2 from the list; the shipped CSV example's 3; the built-in data's default 4
    assert cfg["num_hospitals"] == 2
    assert composed(["dataset=csv"])["num_hospitals"] == 3
    assert composed([])["num_hospitals"] == 4
    assert composed(["num_hospitals=6"])["num_hospitals"] == 6


def test_an_explicit_conflicting_num_hospitals_is_an_error_naming_both_numbers():
    # arrange: the shipped 3-hospital CSV example with num_hospitals=5 given explicitly
    cfg = composed(["dataset=csv", "num_hospitals=5"])
    # act / assert
    with pytest.raises(ConfigError, match=r"num_hospitals=5 but dataset.hospitals lists 3 file"):
        load_hospitals(cfg["dataset"], cfg["num_hospitals"], 0)
