"""Faults in a real deployment (Flower Deployment Engine on loopback, deploy/run_*.sh processes).

(f) a hospital's SuperNode restarted between rounds keeps its privacy spend;
(e) a SuperNode killed while training: the round completes with the others, the ledger
    records only them, the audit passes;
(g) the aggregator (SuperLink + ServerApp) killed after round 2 of 4 and restarted with
    ``"resume": true``: rounds 1..4 on chain exactly once each, the audit passes.

Plus fast checks of fl_server.resume on a synthetic run directory.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from tests.deploy_helpers import (  # noqa: F401
    Deployment,
    audit,
    deploy_flags,
    deployment,
    free_port,
    hospitals_dir,
    provision,
    wait_exit,
    wait_path,
)

PLAIN_MODEL = ("model=logreg", "encryption=off")
SENT = r"Sent successfully"
TRAIN_IN = r"Receiving: train message"


def results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text())


def manifest(study: Path, r: int) -> dict:
    return json.loads((study / "artifacts" / "rounds" / f"round_{r:05d}.json").read_text())


def uninterrupted_epsilons(spec: dict, n_records: int, rounds: int) -> list[float]:
    """What a hospital with ``n_records`` that never restarted reports after rounds 1..``rounds``."""
    from fl_client.dp_training import HospitalPrivacy

    cfg = spec["config"]
    priv = HospitalPrivacy(
        {k: v for k, v in cfg["privacy"].items()},
        n_records=n_records,
        batch_size=int(cfg["train"]["batch_size"]),
        planned_rounds=int(cfg["num_rounds"]),
        local_epochs=int(cfg["train"]["local_epochs"]),
    )
    return [priv.projected_epsilon(k * priv.steps_per_round()) for k in range(1, rounds + 1)]


def chain_view(spec: dict):
    from ledger.client import LedgerClient
    from ledger.rpc import http_w3

    chain = spec["chain"]
    return LedgerClient.at(http_w3(chain["rpc_url"]), chain["contract"], deploy_block=int(chain.get("deploy_block", 0)))


# -- (f) a hospital restarted between rounds ---------------------------------------------------


@pytest.mark.slow
def test_hospital_restarted_between_rounds_keeps_privacy_spend(tmp_path, deployment: Deployment):
    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    # min_hospitals=1: the study goes on even if the restarted SuperNode is still starting when a round samples nodes
    spec = provision(
        study,
        "num_rounds=3",
        *PLAIN_MODEL,
        "privacy=fixed_noise",
        "min_hospitals=1",
        "strategy.round_timeout_s=120",
        *deploy_flags(2, "none", port, secure=True),
    )
    link = deployment.superlink(study, port)
    link.wait_for(r"registered SuperNode key hospital_1", timeout=90)
    hdir = hospitals_dir(study) / "hospital_1"
    deployment.hospital(hospitals_dir(study) / "hospital_0", port)
    victim = deployment.hospital(hdir, port)
    run = deployment.study(study)
    wait_path(study / "artifacts" / "rounds" / "round_00001.json", 600, run)  # round 1's updates are in
    assert any(hdir.rglob("privacy_state.json"))
    victim.stop(signal.SIGTERM)  # a clean stop: the SuperNode deactivates its node, so it can re-activate at once
    assert not victim.alive()
    restarted = deployment.hospital(hdir, port, name="hospital_1_restarted")
    rc = wait_exit(run, 900)
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2, 3], res.get("stopped")
    p = res["privacy"]["hospital_1"]
    eps, rounds = p["epsilon"], p["rounds"]
    assert rounds[0] == 1 and len(rounds) >= 2, (p, restarted.text()[-2000:])  # it trained again after the restart
    assert all(b > a for a, b in zip(eps, eps[1:])), eps  # never restarts from the round-1 value
    n = next(u["num_examples"] for u in manifest(study, 1)["updates"] if u["hospital"] == "hospital_1")
    expected = uninterrupted_epsilons(spec, n, len(eps))  # k-th training: what k uninterrupted rounds give
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(eps, expected)), (eps, expected)
    print(f"restart-between-rounds deployment took {time.monotonic() - t0:.0f}s; epsilon {eps}")


# -- (e) a SuperNode killed mid-round --------------------------------------------------------------


@pytest.mark.slow
def test_supernode_killed_while_training_round_completes_with_the_others(tmp_path, deployment: Deployment):
    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    spec = provision(
        study,
        "num_rounds=2",
        *PLAIN_MODEL,
        "privacy=off",
        "min_hospitals=2",
        "strategy.round_timeout_s=300",
        *deploy_flags(3, "anvil", port, secure=False),
    )
    deployment.chain(study, urlparse(spec["chain"]["rpc_url"]).port)
    deployment.superlink(study, port)
    procs = {h.name: deployment.hospital(h, port) for h in sorted(hospitals_dir(study).iterdir())}
    run = deployment.study(study)
    victim = procs["hospital_2"]
    victim.wait_count(TRAIN_IN, 2, timeout=900)  # round 2's task has reached it
    time.sleep(2.0)  # its ClientApp is starting / training
    victim.kill()  # SIGKILL: no goodbye to the SuperLink
    rc = wait_exit(run, 900)
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2], res.get("stopped")
    assert set(res["rounds"][0]["participants"]) == {"hospital_0", "hospital_1", "hospital_2"}
    assert sorted(res["rounds"][1]["participants"]) == ["hospital_0", "hospital_1"]
    # the ledger records exactly who contributed
    client = chain_view(spec)
    events = {e.round: e for e in client.round_events(spec["study_id"])}
    assert sorted(events) == [1, 2] and client.last_round(spec["study_id"]) == 2
    addresses = {h["address"].lower(): h["id"] for h in spec["hospitals"]}
    assert events[1].participants == 3 and events[2].participants == 2
    round2 = manifest(study, 2)
    assert sorted(u["hospital"] for u in round2["updates"]) == ["hospital_0", "hospital_1"]
    if events[2].commitments:
        assert sorted(addresses[c.hospital.lower()] for c in events[2].commitments) == ["hospital_0", "hospital_1"]
    a = audit(study)
    assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    print(f"kill-mid-round deployment took {time.monotonic() - t0:.0f}s")


# -- (g) the aggregator killed and restarted -------------------------------------------------------


@pytest.mark.slow
def test_aggregator_killed_after_round_two_resumes_without_duplicate_rounds(tmp_path, deployment: Deployment):
    from ledger.journal import Journal

    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    spec = provision(
        study,
        "num_rounds=4",
        *PLAIN_MODEL,
        "privacy=off",
        "strategy.round_timeout_s=120",
        *deploy_flags(2, "anvil", port, secure=True),
    )
    deployment.chain(study, urlparse(spec["chain"]["rpc_url"]).port)
    link = deployment.superlink(study, port)
    link.wait_for(r"registered SuperNode key hospital_1", timeout=90)
    hospitals = {h: deployment.hospital(h, port) for h in sorted(hospitals_dir(study).iterdir())}
    run = deployment.study(study)
    journal = Journal(study)
    key2 = f"{spec['study_id'].removeprefix('0x')}:2"
    deadline = time.monotonic() + 900
    while key2 not in journal.submitted():
        assert run.alive() and time.monotonic() < deadline, deployment.logs()
        time.sleep(0.3)
    # the aggregator dies: SuperLink (its SuperExec and ServerApp follow it) and the `flwr run` poller
    link.kill()
    run.kill()
    time.sleep(5.0)
    client = chain_view(spec)
    recorded = client.last_round(spec["study_id"])
    assert recorded in (2, 3), recorded  # round 3 may have been recorded before the kill landed

    # restart, explicitly resuming
    spec_path = study / "study.json"
    spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "resume": True}, indent=1))
    link = deployment.superlink(study, port, name="superlink_restarted")
    for hdir, proc in list(hospitals.items()):
        if not proc.alive():
            hospitals[hdir] = deployment.hospital(hdir, port, name=f"{hdir.name}_restarted")
    run = deployment.study(study, name="study_resumed")
    rc = wait_exit(run, 900)
    assert rc == 0, deployment.logs()

    study_id = spec["study_id"]
    assert client.last_round(study_id) == 4
    events = client.round_events(study_id)
    assert [e.round for e in events] == [1, 2, 3, 4], [e.round for e in events]  # each exactly once, in order
    for prev, nxt in zip(events, events[1:]):
        assert nxt.prev_global_hash == prev.aggregate_hash
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2, 3, 4], res.get("stopped")
    assert res["final"]["accuracy"] is not None and res["final"]["accuracy"] > 0.8, res["final"]
    a = audit(study)
    assert a.returncode == 0, a.stdout[-3000:] + a.stderr[-3000:]
    print(f"aggregator-restart deployment took {time.monotonic() - t0:.0f}s (chain held round {recorded} at the kill)")


# -- fast: fl_server.resume on a synthetic plaintext run directory ---------------------------------------


def _fake_run(tmp_path: Path, rounds: int, checkpoints: bool = True) -> tuple[dict, list[dict[str, np.ndarray]]]:
    from fedledger.hashing import to_hex
    from fedledger.wire import ModelPayload
    from fl_server.artifact_store import ArtifactStore
    from fl_server.round_protocol import write_manifest

    rng = np.random.default_rng(0)
    models = [{"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.zeros(2, np.float32)}]
    np.savez(tmp_path / "initial_model.npz", **models[0])
    store = ArtifactStore(tmp_path)
    for r in range(1, rounds + 1):
        models.append({k: v + r for k, v in models[-1].items()})
        write_manifest(
            store,
            "0x" + "ab" * 32,
            r,
            to_hex(ModelPayload(arrays=models[-2]).digest()),
            ModelPayload(arrays=models[-1]),
            [],
        )
        if checkpoints:
            store.write_checkpoint(r, models[-1])
    spec = {
        "run_dir": str(tmp_path),
        "initial_model": str(tmp_path / "initial_model.npz"),
        "study_id": "0x" + "ab" * 32,
    }
    return spec, models


def test_resume_point_fresh_run_starts_at_round_one(tmp_path):
    from fl_server.resume import resume_point

    spec, models = _fake_run(tmp_path, 0)
    start, model = resume_point(spec)
    assert start == 1 and set(model.arrays) == {"w", "b"}
    np.testing.assert_array_equal(model.arrays["w"], models[0]["w"])


def test_resume_point_refuses_recorded_rounds_without_resume(tmp_path):
    from fl_server.resume import ResumeError, resume_point

    spec, _ = _fake_run(tmp_path, 2)
    with pytest.raises(ResumeError, match="resume"):
        resume_point(spec)


@pytest.mark.parametrize("checkpoints", [True, False])
def test_resume_point_continues_after_last_round(tmp_path, checkpoints):
    from fl_server.resume import earlier_outcomes, resume_point

    spec, models = _fake_run(tmp_path, 2, checkpoints=checkpoints)
    spec["resume"] = True
    start, model = resume_point(spec)
    assert start == 3
    for k in ("w", "b"):
        np.testing.assert_array_equal(model.arrays[k], models[2][k])
    earlier = earlier_outcomes(spec, start)
    assert [o.server_round for o in earlier] == [1, 2]


def test_parse_canonical_model_roundtrip():
    from fedledger.hashing import canonical_model_bytes
    from fl_server.resume import parse_canonical_model

    arrays = {"b": np.arange(3, dtype=np.float64), "a": np.ones((2, 2), np.float32), "s": np.array(1.5, np.float32)}
    back = parse_canonical_model(canonical_model_bytes(arrays))
    assert canonical_model_bytes(back) == canonical_model_bytes(arrays)


# -- (d) a SuperNode with the wrong CKKS key --------------------------------------------------------


@pytest.mark.slow
def test_supernode_with_the_wrong_ckks_key_is_rejected_naming_it_and_the_round_goes_on(
    tmp_path, deployment: Deployment
):
    # arrange: hospital_2 holds a secret context from another key ceremony
    from fedledger.ckks import create_keys, preset

    port = free_port()
    study = tmp_path / "study"
    provision(
        study,
        "num_rounds=2",
        "model=logreg",
        "privacy=off",
        "min_hospitals=2",
        "strategy.round_timeout_s=300",
        *deploy_flags(3, "none", port, secure=False),
    )
    foreign = create_keys(tmp_path / "foreign", preset("ckks"))
    victim_ctx = hospitals_dir(study) / "hospital_2" / "secret.ctx"
    assert victim_ctx.exists()
    victim_ctx.write_bytes(foreign.secret_context.read_bytes())
    # act
    deployment.superlink(study, port)
    for h in sorted(hospitals_dir(study).iterdir()):
        deployment.hospital(h, port)
    rc = wait_exit(deployment.study(study), 900)
    # assert: every round goes on with the two hospitals holding the study's key
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2], res.get("stopped")
    for r in res["rounds"]:
        assert sorted(r["participants"]) == ["hospital_0", "hospital_1"]
        assert [x["hospital"] for x in r["rejected"]] == ["hospital_2"]
    for r in res["rounds"]:
        refusal = r["rejected"][0]
        assert (
            refusal["kind"] == "refusal"
            and refusal["reason"].startswith("wrong-key")
            and "CKKS key" in refusal["reason"]
        )
        assert "hospital_2" not in r["per_hospital"]  # it cannot decrypt, so it does not evaluate either
    assert res["final"]["accuracy"] > 0.85
