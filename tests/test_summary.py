"""Multirun summary and privacy-utility table, from hand-made results.json files."""

from __future__ import annotations

import json

import pytest

from experiments.summary import privacy_utility, summarize, summary_lines


def write_run(path, seed, acc, target_eps=None, spent=None, pooled=0.97):
    path.mkdir(parents=True)
    privacy = {"enabled": target_eps is not None, "target_epsilon": target_eps}
    results = {
        "config": {"seed": seed, "privacy": privacy},
        "final": {"accuracy": acc, "auc": 0.9, "loss": 0.2},
        "baselines": {"pooled": {"accuracy": pooled}, "local": {"accuracy": 0.93}},
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


def test_runs_at_different_settings_are_never_averaged_together(tmp_path):
    # arrange: two seeds at epsilon 1 and two at epsilon 8
    write_run(tmp_path / "0", 0, 0.80, target_eps=1.0, spent=1.0)
    write_run(tmp_path / "1", 1, 0.82, target_eps=1.0, spent=1.0)
    write_run(tmp_path / "2", 0, 0.96, target_eps=8.0, spent=8.0)
    write_run(tmp_path / "3", 1, 0.98, target_eps=8.0, spent=8.0)
    # act
    summary = summarize(tmp_path)
    # assert: one group per epsilon, named by it; no mean across both
    assert "overall" not in summary
    by_eps = {g["settings"]["privacy.target_epsilon"]: g for g in summary["groups"]}
    assert by_eps[1.0]["accuracy"]["mean"] == pytest.approx(0.81) and by_eps[1.0]["seeds"] == [0, 1]
    assert by_eps[8.0]["accuracy"]["mean"] == pytest.approx(0.97)
    assert summary_lines(summary) == [
        "privacy.target_epsilon=1.0: accuracy 0.810 ± 0.014 over 2 run(s)",
        "privacy.target_epsilon=8.0: accuracy 0.970 ± 0.014 over 2 run(s)",
    ]


def test_reference_rows_average_every_seed_not_the_first(tmp_path):
    write_run(tmp_path / "0", 0, 0.90, target_eps=1.0, spent=1.0, pooled=0.90)
    write_run(tmp_path / "1", 1, 0.90, target_eps=1.0, spent=1.0, pooled=1.00)
    privacy_utility(tmp_path, non_private=None)
    table = (tmp_path / "privacy_utility.md").read_text()
    assert "| pooled (centralised) | 0.950 |" in table
    assert "mean over the 2 runs' seeds" in table
    assert summarize(tmp_path)["groups"][0]["baselines"]["pooled"]["mean"] == pytest.approx(0.95)
