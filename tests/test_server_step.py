"""FedAdam under CKKS: every hospital takes the server step itself, and all end with the same state and model.

Four hospitals answer in process through the real ClientApp handlers and
round protocol (tests/test_bounded_influence_study.py's grid), with DP and
CKKS on. The aggregator only sums ciphertexts; each hospital decrypts the
aggregate and applies FedAdam (fl_client/server_step.py). The study is then
run again with encryption off, where the aggregator applies FedAdam
(fl_server/server_opt.py): the two end close, which the CKKS error bounds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedledger.ckks import decrypt_aggregate
from fedledger.ckks.release import round_for_release
from fedledger.files import load_npz
from fedledger.hashing import model_hash
from fedledger.model_io import flatten, unflatten
from fedledger.round_task import RoundTask
from fedledger.server_opt import HeldModel, server_opt_settings
from fl_client import server_step
from fl_client.models import build_model, get_arrays
from fl_client.settings import from_context
from tests.test_aggregate_bounds import N_PARAMS, keys, task_identity  # noqa: F401
from tests.test_bounded_influence_study import HospitalsGrid, run_grid

ROUNDS = 3
ADAM = server_opt_settings({"name": "fedadam", "server_lr": 0.05})
assert ADAM is not None


def _task(encrypted: bool, fingerprint: str) -> RoundTask:
    return RoundTask(
        model="logreg",
        hidden=0,
        local_epochs=1,
        batch_size=32,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        num_rounds=ROUNDS,
        strategy="fedadam",
        server_lr=ADAM.server_lr,
        server_beta1=ADAM.beta1,
        server_beta2=ADAM.beta2,
        server_tau=ADAM.tau,
        privacy={"enabled": True, "noise_multiplier": 1.0, "delta": 1e-5, "max_grad_norm": 1.0},
        encrypted=encrypted,
        context_fingerprint=fingerprint,
        prev_hash="0x" + "00" * 32,
        study_id="0x" + "33" * 32,
        server_round=0,
    )


def _run(tmp_path: Path, keys_, encrypted: bool):
    from fl_server.artifact_store import ArtifactStore
    from fl_server.encrypted import EncryptedAggregation
    from fl_server.server_opt import ServerOptStrategy
    from fl_server.strategy import FedAvgStrategy, RoundStrategy

    paths, _, _ = keys_
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    strategy: RoundStrategy = FedAvgStrategy(template=initial)
    if encrypted:
        strategy = EncryptedAggregation(strategy, paths.aggregator_context, N_PARAMS, 1 << 26)
    else:
        strategy = ServerOptStrategy(strategy, ADAM, initial, tmp_path)
    grid = HospitalsGrid(paths.secret_context)
    store = ArtifactStore(tmp_path)
    task = _task(encrypted, getattr(strategy, "fingerprint", ""))
    last, outcomes = run_grid(grid, strategy, initial, task, ROUNDS, store)
    return grid, last, outcomes, store, initial


def _release(run_dir: Path, keys_, initial: dict) -> dict:
    """experiments/release.py on the run's artifact store (no chain): the last round's released checkpoint."""
    from coordinator.study_setup import PreparedStudy
    from experiments.release import release_checkpoints
    from fedledger.files import save_npz

    save_npz(run_dir / "initial_model.npz", initial)
    spec = {
        "run_dir": str(run_dir),
        "initial_model": str(run_dir / "initial_model.npz"),
        "keys": {"secret_context": str(keys_[0].secret_context)},
        "config": {"encryption": {"enabled": True}, "strategy": {"name": "fedadam", "server_lr": ADAM.server_lr}},
    }
    release_checkpoints(PreparedStudy(run_dir / "study.json", spec, []))
    return load_npz(run_dir / "checkpoints" / f"round_{ROUNDS:05d}.npz")


@pytest.mark.slow
def test_hospitals_step_fedadam_identically_under_ckks_and_match_the_plaintext_study(tmp_path, keys):
    _, sec, _ = keys
    grid, last, outcomes, store, initial = _run(tmp_path / "ckks", keys, encrypted=True)
    assert [o.participants for o in outcomes] == [["h1", "h2", "h3", "h4"]] * ROUNDS
    task = _task(True, "")
    held = {
        f"h{n}": server_step.load(from_context(dict(ctx.node_config)), ctx, task.study_id, ADAM, N_PARAMS)
        for n, ctx in grid.contexts.items()
    }
    # every hospital holds the last round's model, after as many steps, with the same buffers
    assert all(h is not None and h.round == ROUNDS and h.optimizer.steps == ROUNDS for h in held.values())
    states = [h.pack() for h in held.values() if h is not None]
    for other in states[1:]:
        assert other.keys() == states[0].keys()
        assert all(np.array_equal(other[k], states[0][k]) for k in states[0])
    hashes = {model_hash(unflatten(h.model, initial)) for h in held.values() if h is not None}
    assert len(hashes) == 1
    # the model is FedAdam's replay over the decrypted aggregates, not the last aggregate
    replay = HeldModel.start(ADAM, flatten(initial))
    for r in range(1, ROUNDS + 1):
        agg = store.read_round(r)["aggregate"]
        mean, _ = decrypt_aggregate(sec, store.get_blobs(agg["blobs"]), N_PARAMS, int(agg["total_weight"]))
        replay.advance(r, mean)
    first = held["h1"]
    assert first is not None and np.array_equal(first.model, replay.model)
    final_mean, _ = decrypt_aggregate(sec, last.ciphertexts, N_PARAMS, int(last.total_weight))
    assert np.linalg.norm(first.model - final_mean) > 1e-3
    # the release replays the same steps: its checkpoint is the hospitals' model on the grid (what they sign)
    released = _release(tmp_path / "ckks", keys, initial)
    assert model_hash(released) == model_hash(unflatten(round_for_release(first.model), initial))

    # encryption off: the aggregator steps, and the global model hospitals receive is the stepped one
    _, plain_last, plain_outcomes, _, _ = _run(tmp_path / "plain", keys, encrypted=False)
    plain = flatten(plain_last.arrays)
    gap = float(np.max(np.abs(plain - first.model)))
    print(f"max |plaintext FedAdam - CKKS FedAdam| after {ROUNDS} rounds: {gap:.3g}")
    assert gap < 1e-3
    assert plain_outcomes[-1].metrics["accuracy"] == pytest.approx(outcomes[-1].metrics["accuracy"], abs=0.02)


@pytest.mark.slow
def test_a_hospital_that_missed_a_round_refuses_rather_than_diverge(tmp_path, keys):
    grid, _, _, _, _ = _run(tmp_path, keys, encrypted=True)
    ctx = grid.contexts[1]
    settings = from_context(dict(ctx.node_config))
    task = _task(True, "")
    held = server_step.load(settings, ctx, task.study_id, ADAM, N_PARAMS)
    assert held is not None
    with pytest.raises(server_step.ServerStepError, match="holds round 3's"):
        server_step.global_model(settings, ctx, task, ROUNDS + 2, held.model, aggregate=True)
    yogi = replace(task, strategy="fedyogi", server_lr=0.01)
    with pytest.raises(ValueError, match="is 'fedadam', not fedyogi"):
        server_step.global_model(settings, ctx, yogi, ROUNDS + 1, held.model, aggregate=True)
