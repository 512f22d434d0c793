"""Survival studies through the product path (Ray, CKKS, a chain, the audit): slow."""

from __future__ import annotations

import json

import pytest

from tests.test_simulation import run_study


def _results(run_dir, proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_actg175_survival_with_dp_ckks_and_the_ledger_audits(tmp_path):
    # act: ACTG 175 in 4 hospitals, 2 rounds, DP at target epsilon 3, CKKS, an in-process chain, the audit
    proc = run_study(tmp_path, "dataset=actg175", "model=hazard", "train=survival", "num_rounds=2", "ledger=eth_tester")
    # assert
    results = _results(tmp_path, proc)
    assert results["protocol"]["task"] == "survival" and results["protocol"]["num-outputs"] == 7
    assert json.loads(results["protocol"]["task-options"])["time_grid"][0] == 150.0
    final = results["final"]
    assert set(final) == {"loss", "c-index", "ibs"}
    assert final["c-index"] > 0.55 and 0.0 < final["ibs"] < 0.25  # chance: C 0.5; S = 0.5 everywhere: IBS 0.25
    cox = results["baselines"]["cox_reference"]
    assert 0.6 < cox["c-index"] < 0.7 and set(cox["per_hospital"]) == {f"hospital_{i}" for i in range(4)}
    assert results["encryption"]["scheme"] == "ckks"
    assert all(p["epsilon"][-1] <= 3.0 + 1e-9 for p in results["privacy"].values())
    assert results["audit"]["ok"] is True


@pytest.mark.slow
def test_lung_split_by_institution_runs_end_to_end(tmp_path):
    # act: the NCCTG lung data in its 10 institution hospitals, DP, CKKS, in-process chain, the audit
    proc = run_study(
        tmp_path, "dataset=lung", "model=hazard", "train=survival", "train.batch_size=8", "num_rounds=2",
        "ledger=eth_tester",
    )  # fmt: skip
    # assert
    results = _results(tmp_path, proc)
    hospitals = set(results["rounds"][-1]["per_hospital"])
    assert hospitals == {f"inst_{i}" for i in (1, 3, 6, 11, 12, 13, 16, 21, 22)} | {"inst_small"}
    assert results["final"]["c-index"] is not None
    assert results["audit"]["ok"] is True
