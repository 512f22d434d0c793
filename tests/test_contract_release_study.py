"""A whole encrypted study (Flower simulation, eth-tester chain): every round's checkpoint is released on chain
with the signatures of the hospitals that decrypted it, at least the registered quorum, and the audit passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_encrypted_study_releases_each_round_with_the_hospitals_quorum(tmp_path):
    # Arrange: 3 hospitals, the default quorum (a majority: 2)
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={tmp_path}", "num_hospitals=3", "num_rounds=2",
           "privacy=off", "encryption=ckks_n4096", "ledger=eth_tester", "baselines=false"]  # fmt: skip
    # Act
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    # Assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for r in (1, 2):
        kept = json.loads((tmp_path / "artifacts" / "releases" / f"round_{r:05d}.json").read_text())
        assert sorted(kept["attestations"]) == ["hospital_0", "hospital_1", "hospital_2"]
        assert len({a["release-model-hash"] for a in kept["attestations"].values()}) == 1  # all decrypted alike
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["ok"] is True and sorted(audit["released"]) == ["1", "2"]
    assert audit["checks"]["checkpoint"] == {"pass": 4, "fail": 0, "skip": 0}  # each file and each release's quorum
