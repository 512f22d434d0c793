"""Whole studies in Flower's Simulation Engine (Ray), as a researcher runs them.

Each simulation starts Ray (seconds), so the module runs few, small studies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_study(run_dir: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The researcher's command, as a subprocess so Ray and Hydra start clean."""
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_plain_study_two_hospitals_two_rounds_writes_every_artifact(tmp_path):
    # act
    proc = run_study(tmp_path, "num_hospitals=2", "num_rounds=2", "privacy=off", "encryption=off", "ledger=none")
    # assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final"]["accuracy"] > 0.85  # chance is ~0.63 (majority class)
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    assert set(results["rounds"][0]["per_hospital"]) == {"hospital_0", "hospital_1"}
    assert results["baselines"]["pooled"]["accuracy"] > 0.85
    assert "local" in results["baselines"] and "resolved" not in results["config"]
    for name in (
        "metrics.csv",
        "accuracy.png",
        "auc.png",
        "loss.png",
        "study.json",
        "checkpoints/round_00001.npz",
        "checkpoints/round_00002.npz",
    ):
        assert (tmp_path / name).exists(), name


@pytest.mark.slow
def test_full_study_dp_ckks_anvil_then_audit(tmp_path):
    """The default study's product path, shortened: DP + CKKS + anvil ledger + audit."""
    proc = run_study(tmp_path, "num_hospitals=3", "num_rounds=3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["final"]["accuracy"] > 0.85
    assert results["encryption"]["scheme"] == "ckks"
    assert len(results["ledger"]["rounds"]) == 3
    assert all(p["epsilon"][-1] <= p["budget"] + 1e-9 for p in results["privacy"].values())
    assert results["audit"]["ok"] is True
    assert (tmp_path / "privacy.png").exists() and (tmp_path / "chain" / "anvil_state.json").exists()


@pytest.mark.slow
def test_spent_budget_refuses_at_the_right_round_and_the_study_goes_on(tmp_path):
    # arrange: hospital_1 may spend only 60 % of what the study plans
    proc = run_study(
        tmp_path,
        "num_hospitals=3",
        "num_rounds=4",
        "encryption=off",
        "ledger=none",
        "baselines=false",
        "privacy.target_epsilon=3",
        "+budgets.hospital_1=1.8",
    )
    # assert
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    spent = results["privacy"]["hospital_1"]
    refused = [
        r["round"]
        for r in results["rounds"]
        if any(x["hospital"] == "hospital_1" and x["kind"] == "refusal" for x in r["rejected"])
    ]
    assert refused, "hospital_1 never refused"
    first = refused[0]
    assert refused == list(range(first, 5))  # refuses from then on, every round
    assert spent["rounds"] == list(range(1, first))  # trained until the round before
    assert max(spent["epsilon"]) <= 1.8 and spent["budget"] == 1.8
    reason = next(x["reason"] for x in results["rounds"][first - 1]["rejected"] if x["hospital"] == "hospital_1")
    assert "budget" in reason.lower()
    assert all(len(r["participants"]) >= 2 for r in results["rounds"])  # the others carried on
    assert results["privacy"]["hospital_0"]["rounds"] == [1, 2, 3, 4]


@pytest.mark.slow
def test_csv_study_as_a_new_hospital_user_runs_it(tmp_path):
    """The example of examples/csv_study: a schema, three files, one hospital holding a single class."""
    proc = run_study(
        tmp_path,
        "dataset=csv",
        "num_hospitals=3",
        "num_rounds=2",
        "privacy=off",
        "encryption=off",
        "ledger=none",
        "baselines=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    last = results["rounds"][-1]
    assert set(last["participants"]) == {"cleveland", "hungary", "switzerland"}
    assert last["per_hospital"]["switzerland"]["auc"] is None  # undefined, not a crash
    assert last["per_hospital"]["cleveland"]["auc"] is not None
    assert "single class" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_encryption_does_not_change_the_result(tmp_path):
    common = ("num_hospitals=3", "num_rounds=3", "privacy=off", "ledger=none", "baselines=false")
    plain = run_study(tmp_path / "plain", *common, "encryption=off")
    enc = run_study(tmp_path / "enc", *common, "encryption=ckks")
    assert plain.returncode == 0 and enc.returncode == 0, enc.stderr[-3000:]
    a = json.loads((tmp_path / "plain" / "results.json").read_text())
    b = json.loads((tmp_path / "enc" / "results.json").read_text())
    assert abs(a["final"]["accuracy"] - b["final"]["accuracy"]) <= 0.005
    assert abs(a["final"]["loss"] - b["final"]["loss"]) < 1e-4
    assert b["encryption"]["bytes_per_hospital_per_round"] > 0 and "encryption" not in a


@pytest.mark.slow
def test_a_hospital_whose_policy_forbids_the_model_refuses_and_the_record_shows_it(tmp_path):
    """hospital_1's policy (the study's hospital_policies) allows only mlp; the study trains logreg."""
    proc = run_study(
        tmp_path,
        "num_hospitals=2",
        "num_rounds=2",
        "min_hospitals=1",
        "privacy=off",
        "encryption=off",
        "baselines=false",
        "+hospital_policies.hospital_1.allowed-models=[mlp]",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    code = "policy-model-not-allowed"
    results = json.loads((tmp_path / "results.json").read_text())
    for r in results["rounds"]:
        assert r["participants"] == ["hospital_0"]
        assert [(x["hospital"], x["kind"], x["reason"].split(":")[0]) for x in r["rejected"]] == [
            ("hospital_1", "refusal", code)
        ]
    for n in (1, 2):
        manifest = json.loads((tmp_path / f"artifacts/rounds/round_{n:05d}.json").read_text())
        assert [(x["hospital"], x["code"]) for x in manifest["refusals"]] == [("hospital_1", code)]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["ok"] is True and results["audit"]["ok"] is True
    assert [(x["round"], x["hospital"], x["code"]) for x in audit["refusals"]] == [
        (1, "hospital_1", code),
        (2, "hospital_1", code),
    ]
    assert sum(code in n for n in audit["notices"]) == 2
