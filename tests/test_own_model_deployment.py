"""Issue 14 under Flower's Deployment Engine: the researcher's own model, installed at each hospital.

Each hospital's SuperNode runs with its own PYTHONPATH; one holds a changed
copy of the model's module and refuses every task (policy-model-source-mismatch)
before it imports that copy; the others train the registered source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.deploy_helpers import Deployment, deploy_flags, deployment, free_port, hospitals_dir, provision, wait_exit  # noqa: F401

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_model"


def test_hospitals_run_the_own_model_from_their_installed_copy_and_a_changed_copy_is_refused(
    tmp_path, deployment: Deployment, monkeypatch
):
    # arrange: the coordinator and two hospitals hold the example; hospital_2 a copy with one byte changed
    path = lambda *dirs: os.pathsep.join([str(REPO), *map(str, dirs)])  # noqa: E731
    monkeypatch.setenv("PYTHONPATH", path(EXAMPLE))
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "mynet.py").write_text((EXAMPLE / "mynet.py").read_text() + "\n")
    port, study = free_port(), tmp_path / "study"
    provision(
        study,
        "num_rounds=2",
        "min_hospitals=2",
        "privacy=off",
        "encryption=off",
        "model=own",
        "model._target_=mynet.SmallNet",
        "model.fix_batchnorm=true",
        *deploy_flags(3, "none", port, secure=False, join_timeout=120),
    )
    deployment.env["PYTHONPATH"] = path(EXAMPLE)
    deployment.superlink(study, port)
    for hdir in sorted(hospitals_dir(study).iterdir()):
        deployment.env["PYTHONPATH"] = path(tampered if hdir.name == "hospital_2" else EXAMPLE)
        deployment.hospital(hdir, port)
    deployment.env["PYTHONPATH"] = path(EXAMPLE)
    # act
    run = deployment.study(study)
    rc = wait_exit(run, 600)
    # assert
    assert rc == 0, deployment.logs()
    res = json.loads((study / "results.json").read_text())
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    for r in res["rounds"]:
        assert sorted(r["participants"]) == ["hospital_0", "hospital_1"]
        assert [(x["hospital"], x["reason"].split(":")[0]) for x in r["rejected"]] == [
            ("hospital_2", "policy-model-source-mismatch")
        ]
    assert res["protocol"]["model-target"] == "mynet.SmallNet"
    assert res["final"]["accuracy"] > 0.7, res["final"]  # majority class ~0.63
