"""The algorithm comparison of a sweep (experiments/algorithms.py): grouping, the verdict against FedAvg, files."""

from __future__ import annotations

import json

from experiments.algorithms import algorithms_report, compare, partition_label


def _run(strategy: str, seed: int, accuracy: float, partitioner: str = "dirichlet", alpha: float = 0.1) -> dict:
    dataset = {"name": "breast_cancer", "partitioner": partitioner, "alpha": alpha, "quantity_alpha": 0.5}
    return {
        "config": {"dataset": dataset, "strategy": {"name": strategy}, "seed": seed},
        "final": {"accuracy": accuracy, "auc": accuracy},
    }


def test_partition_labels():
    assert partition_label({"partitioner": "iid", "alpha": 0.5}) == "iid"
    assert partition_label({"partitioner": "dirichlet", "alpha": 0.1}) == "dirichlet 0.1"
    assert partition_label({"partitioner": "quantity", "quantity_alpha": 0.5}) == "quantity 0.5"
    assert partition_label({"name": "csv"}) == "csv (own files)"


def test_beats_fedavg_only_by_more_than_the_larger_sd():
    # fedavg 0.80, 0.82, 0.84: mean 0.82, sd 0.02; fedadam +0.05 with sd 0.01 beats; fedyogi +0.01 does not
    runs = [_run("fedavg", s, a) for s, a in enumerate([0.80, 0.82, 0.84])]
    runs += [_run("fedadam", s, a) for s, a in enumerate([0.86, 0.87, 0.88])]
    runs += [_run("fedyogi", s, a) for s, a in enumerate([0.82, 0.83, 0.84])]
    runs += [_run("fedavg", s, 0.9, partitioner="iid") for s in range(3)]
    rows = {(r["partition"], r["strategy"]): r for r in compare(runs)}
    adam, yogi = rows[("dirichlet 0.1", "fedadam")], rows[("dirichlet 0.1", "fedyogi")]
    assert adam["vs_fedavg"]["beats"] and abs(adam["vs_fedavg"]["difference"] - 0.05) < 1e-12
    assert abs(adam["vs_fedavg"]["sd"] - 0.02) < 1e-12
    assert not yogi["vs_fedavg"]["beats"]
    assert rows[("dirichlet 0.1", "fedavg")]["vs_fedavg"] is None and rows[("iid", "fedavg")]["seeds"] == [0, 1, 2]


def test_report_files_only_for_a_sweep_over_strategies(tmp_path):
    for i, run in enumerate([_run("fedavg", 0, 0.8), _run("fedprox", 0, 0.81)]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(run))
    assert algorithms_report(tmp_path) == tmp_path / "algorithms.png"
    assert "| dirichlet 0.1 | fedprox | 0.810 ± 0.000 |" in (tmp_path / "algorithms.md").read_text()
    (tmp_path / "1" / "results.json").write_text(json.dumps(_run("fedavg", 1, 0.81)))
    assert algorithms_report(tmp_path) is None  # one rule only: nothing to compare
