"""Multirun summary and privacy-utility table, from hand-made results.json files."""

from __future__ import annotations

import json

import pytest

from experiments.summary import privacy_utility, summarize


def write_run(path, seed, acc, target_eps=None, spent=None):
    path.mkdir(parents=True)
    privacy = {"enabled": target_eps is not None, "target_epsilon": target_eps}
    results = {
        "config": {"seed": seed, "privacy": privacy},
        "final": {"accuracy": acc, "auc": 0.9, "loss": 0.2},
        "baselines": {"pooled": {"accuracy": 0.97}, "local": {"accuracy": 0.93}},
    }
    if target_eps is not None:
        results["privacy"] = {"h0": {"epsilon": [spent / 2, spent]}, "h1": {"epsilon": [spent]}}
    (path / "results.json").write_text(json.dumps(results))


def test_summary_gives_mean_and_spread_across_seeds(tmp_path):
    for i, acc in enumerate([0.90, 0.92, 0.94]):
        write_run(tmp_path / str(i), seed=i, acc=acc)
    summary = summarize(tmp_path)
    assert summary["runs"] == 3
    assert summary["overall"]["accuracy"]["mean"] == pytest.approx(0.92)
    assert summary["overall"]["accuracy"]["std"] == pytest.approx(0.02)
    assert (tmp_path / "summary.csv").read_text().count("\n") == 4


def test_privacy_utility_table_groups_by_target_epsilon_with_baselines(tmp_path):
    write_run(tmp_path / "0", 0, 0.90, target_eps=1.0, spent=0.99)
    write_run(tmp_path / "1", 1, 0.92, target_eps=1.0, spent=0.98)
    write_run(tmp_path / "2", 0, 0.95, target_eps=3.0, spent=2.99)
    png = privacy_utility(tmp_path, non_private={"final": {"accuracy": 0.96}})
    table = (tmp_path / "privacy_utility.md").read_text()
    assert png.exists()
    assert "| 1 | 0.985 | 0.910 ± 0.014 | 2 |" in table
    assert "| 3 | 2.990 | 0.950 ± 0.000 | 1 |" in table
    assert "| non-private federated | 0.960 |" in table and "| pooled (centralised) | 0.970 |" in table
