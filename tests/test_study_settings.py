"""What a researcher's config composes to: num_hospitals follows a CSV study's hospital list."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from fl_client.data import ConfigError, load_hospitals
from tests.test_config import compose_with


def composed(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_with(overrides), resolve=True)  # type: ignore[return-value]


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


def test_the_quick_experiment_takes_a_csv_studys_hospital_count():
    assert composed(["+experiment=quick", "dataset=csv"])["num_hospitals"] == 3
    assert composed(["+experiment=quick"])["num_hospitals"] == 2
