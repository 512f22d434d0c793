"""`python -m experiments.stats` end to end: four hospitals, DP, CKKS, the query on chain, the audit, the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedledger.config import register_schemas

CONF = Path(__file__).resolve().parents[1] / "conf"


def config(*overrides: str) -> dict:
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out


def test_stats_configs_compose_with_the_study_schema() -> None:
    cfg = config("+experiment=table1")
    assert cfg["stats"]["source"] == "gbsg2" and cfg["num_hospitals"] == 4
    assert cfg["privacy"]["stats_per_site"] is False
    assert config()["stats"] is None  # experiments.stats then reads conf/stats/<dataset name>.yaml
    assert config("stats=breast_cancer")["stats"]["label"] == "diagnosis"
    assert config("dataset=csv", "stats=csv")["stats"]["query"] is None  # from the schema's stats section


@pytest.mark.slow
def test_table1_study_runs_on_chain_and_audits(tmp_path: Path) -> None:
    from experiments.stats_study import run_stats_study

    cfg = config("+experiment=table1", "stats.repeats=20", "stats.show_exact=true")

    results = run_stats_study(cfg, tmp_path)

    assert results["audit"]["ok"] and results["alerts"] == []
    assert len(results["hospitals"]) == 4 and all(h["epsilon"] == 8.0 for h in results["hospitals"])
    assert results["audit"]["query_findings"] and "4 signed charges" in results["audit"]["query_findings"][0]
    md = (tmp_path / "table1.md").read_text()
    assert "overall (exact)" in md and "| N |" in md
    assert (tmp_path / "kaplan_meier.png").stat().st_size > 10_000
    state = json.loads((tmp_path / "privacy_state_hospital_0.json").read_text())
    assert state["queries"][0][0] == results["query_hash"]  # the charge is in the account training loads
    assert state["study_id"] == results["study_id"]  # bound to its study: another study's account refuses it


@pytest.mark.slow
def test_csv_study_describes_the_hospitals_files(tmp_path: Path) -> None:
    from experiments.stats_study import run_stats_study

    cfg = config(
        "dataset=csv",
        "stats=csv",
        "ledger=eth_tester",
        "stats.repeats=20",
        "stats.per_site=true",
        "privacy.stats_per_site=true",  # the registered protocol allows per-site figures
    )

    results = run_stats_study(cfg, tmp_path)

    assert results["audit"]["ok"]
    assert [h["id"] for h in results["hospitals"]] == ["cleveland", "hungary", "switzerland"]
    md = (tmp_path / "table1.md").read_text()
    assert "| age mean |" in md and "cleveland: positive" in md
