"""A hospital's own policy in a real deployment (Flower Deployment Engine on loopback, deploy/run_*.sh).

One of three SuperNodes sets ``allowed-models`` in its node_config.toml, as a
hospital would, to a family that excludes the study's model. Every train task
it receives is refused with ``policy-model-not-allowed``; the other two carry
the study, the ledger records only them, and the audit passes, listing each
refusal as a notice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import tomllib

from tests.deploy_helpers import (
    Deployment,
    audit,
    deploy_flags,
    deployment,  # noqa: F401  (the fixture)
    free_port,
    hospitals_dir,
    provision,
    wait_exit,
)

CODE = "policy-model-not-allowed"
# a logreg study that goes on with two of its three hospitals
STUDY = (
    "num_rounds=2",
    "model=logreg",
    "encryption=off",
    "privacy=off",
    "min_hospitals=2",
    "strategy.round_timeout_s=300",
)


def set_node_config(hospital_dir: Path, key: str, value: str) -> None:
    """Add one key to a provisioned hospital's node_config.toml, as the hospital edits its own file."""
    path = hospital_dir / "node_config.toml"
    assert key not in tomllib.loads(path.read_text())
    path.write_text(path.read_text() + f'{key} = "{value}"\n')


@pytest.mark.slow
def test_supernode_whose_policy_forbids_the_model_refuses_every_round_and_the_study_goes_on(
    tmp_path, deployment: Deployment
):
    from ledger.client import LedgerClient
    from ledger.rpc import http_w3

    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    spec = provision(study, *STUDY, *deploy_flags(3, "anvil", port, secure=False))
    set_node_config(hospitals_dir(study) / "hospital_2", "allowed-models", "mlp")  # not the study's logreg
    deployment.chain(study, urlparse(spec["chain"]["rpc_url"]).port)
    deployment.superlink(study, port)
    procs = {h.name: deployment.hospital(h, port) for h in sorted(hospitals_dir(study).iterdir())}
    rc = wait_exit(deployment.study(study), 900)
    assert rc == 0, deployment.logs()

    # results.json: every round goes on with the two others; hospital_2's reply is a refusal naming the rule
    res = json.loads((study / "results.json").read_text())
    assert [r["round"] for r in res["rounds"]] == [1, 2], res.get("stopped")
    for r in res["rounds"]:
        assert sorted(r["participants"]) == ["hospital_0", "hospital_1"], r
        assert [x["hospital"] for x in r["rejected"]] == ["hospital_2"], r["rejected"]
        refusal = r["rejected"][0]
        assert refusal["kind"] == "refusal", refusal
        assert refusal["reason"].startswith(f"{CODE}: ") and "'logreg'" in refusal["reason"], refusal
    assert res["final"]["accuracy"] > 0.85, res["final"]
    # the hospital logs its refusal itself, once per train task
    assert procs["hospital_2"].count(rf"refuses round: {CODE}") >= 2, procs["hospital_2"].text()[-3000:]

    # the ledger records exactly who contributed
    client = LedgerClient.at(
        http_w3(spec["chain"]["rpc_url"]),
        spec["chain"]["contract"],
        deploy_block=int(spec["chain"].get("deploy_block", 0)),
    )
    events = client.round_events(spec["study_id"])
    assert [e.round for e in events] == [1, 2] and all(e.participants == 2 for e in events)

    a = audit(study)
    assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    # the audit lists each refusal, from the round manifests, as a notice (not a failed check)
    verdict = json.loads((study / "audit.json").read_text())
    refused = [(x["round"], x["hospital"], x["code"]) for x in verdict["refusals"]]
    assert refused == [(1, "hospital_2", CODE), (2, "hospital_2", CODE)], verdict["refusals"]
    assert sum(f"({CODE})" in n for n in verdict["notices"]) == 2, verdict["notices"]
    print(f"policy-refusal deployment took {time.monotonic() - t0:.0f}s")
