"""Flower's Deployment Engine for real: SuperLink + SuperNodes as processes on loopback.

Every process is started with the very command its container runs
(deploy/run_*.sh); `fedledger provision` writes the study first. Slow: each
ClientApp task starts a fresh `flwr-clientapp` process (torch import).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.deploy_helpers import Deployment, deployment, free_port, provision, wait_exit  # noqa: F401

pytestmark = pytest.mark.slow

PLAIN = ("privacy=off", "encryption=off")


def results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text())


def test_plain_study_superlink_two_supernodes_two_rounds(tmp_path, deployment: Deployment):
    """Issue 2's Deployment Engine test: superlink + 2 supernodes, `flwr run`, 2 rounds, plaintext."""
    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    provision(study, "num_rounds=2", *PLAIN, "--builtin", "2", "--ledger", "none", "--superlink", f"127.0.0.1:{port}",
              "--join-timeout", "120")
    deployment.superlink(study, port)
    for hdir in sorted((study / "hospitals").iterdir()):
        deployment.hospital(hdir, port)
    run = deployment.study(study)
    rc = wait_exit(run, 400)
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    assert res["final"]["accuracy"] > 0.85, res["final"]  # chance (majority class) is ~0.63
    assert set(res["rounds"][-1]["per_hospital"]) == {"hospital_0", "hospital_1"}
    print(f"deployment study took {time.monotonic() - t0:.0f}s")
