"""``start_model`` (issue 15): every hospital of a round provably trained from the same plaintext model.

Studies are hand-built as in tests/test_audit.py (CKKS, eth_tester, commitments signed by the hospitals and
recorded through the contract, which checks the signatures): in one, the aggregator gives one hospital another
starting model, so that hospital signs another ``startModelHash``; the auditor names it, with no key.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from fedledger.hashing import to_hex
from ledger import audit as A
from ledger.audit.start_model import check_start_model
from tests.audit_builders import deployed_ledger
from tests.test_audit import build_study, fails
from tests.test_audit_merkle import build_merkle_study


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return deployed_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def honest(ledger):
    return build_study(ledger.chain, ledger.client, ledger.root, seed=21, n_rounds=3)


def test_honest_study_passes_start_model_in_every_round(honest):
    # Act
    result = honest.audit()
    # Assert
    assert result.ok, fails(result)
    assert result.to_json()["checks"]["start_model"] == {"pass": 3, "fail": 0, "skip": 0}
    first = next(f for f in result.findings if f.check == "start_model")
    assert first.round == 1 and "registered initial model" in first.message


def test_a_hospital_given_another_starting_model_is_named_with_its_round(ledger):
    # Arrange: round 2, hospital_1 is sent another model than hospital_0 and hospital_2
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=22, n_rounds=3, other_start=(2, 1))
    # Act
    with_store = study.audit()
    chain_only = A.audit(study.view())  # no store, no key
    # Assert
    for result in (with_store, chain_only):
        assert fails(result) == [("start_model", 2, study.hospitals[1])]
    msg = with_store.failures[0].message
    assert "hospital_1" in msg and "round 2" in msg and "2 of 3" in msg
    signed = next(r for r in study.view().rounds if r.round == 2).commitments[1].commitment.start_model_hash
    assert to_hex(signed) in msg


def test_round_one_is_held_to_the_registered_initial_model(ledger):
    # Arrange: in round 1, hospital_0 is sent another model than the one the study registered
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=23, n_rounds=1, other_start=(1, 0))
    # Act
    result = A.audit(study.view())
    # Assert
    assert fails(result) == [("start_model", 1, study.hospitals[0])]
    assert "registered initial model " + to_hex(study.view().initial_model_hash) in result.failures[0].message


def test_without_a_majority_the_first_recorded_model_is_the_reference(honest):
    # Arrange: round 3 of the honest chain view, hospitals 1 and 2 given two other models (three different)
    view = honest.view()
    rv = next(r for r in view.rounds if r.round == 3)
    for i, other in ((1, b"\x01" * 32), (2, b"\x02" * 32)):
        cv = rv.commitments[i]
        rv.commitments[i] = replace(cv, commitment=replace(cv.commitment, start_model_hash=other))
    # Act
    findings = [f for f in check_start_model(view) if not f.ok]
    # Assert
    assert [(f.round, f.hospital) for f in findings] == [(3, honest.hospitals[1]), (3, honest.hospitals[2])]
    assert all("no majority" in f.message for f in findings)


def test_a_merkle_round_is_checked_from_its_leaves(ledger):
    # Arrange: a Merkle-mode study (only the root on chain) where hospital_2 is given another model in round 2
    study = build_merkle_study(ledger.chain, ledger.client, ledger.root, seed=24, other_start=(2, 2))
    # Act
    chain_only = A.audit(copy.deepcopy(study.view))
    with_store = A.audit(copy.deepcopy(study.view), study.run_dir, study.ctx)
    # Assert: with the store's leaves the hospital is named; from the root alone the check is skipped
    assert fails(with_store) == [("start_model", 2, study.accounts[2].address)]
    assert [f.status for f in chain_only.findings if f.check == "start_model"] == ["skip", "skip"]


@pytest.mark.slow
def test_a_simulated_ckks_study_signs_equal_start_models_and_audits_clean(tmp_path):
    """The product path (Flower simulation, DP + CKKS + anvil): the hospitals sign their start models, the audit
    holds round 1's to the registered initial model and each later round's to one model, and passes."""
    import json

    from tests.test_simulation import run_study

    # Act
    proc = run_study(tmp_path, "num_hospitals=3", "num_rounds=2")
    # Assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert audit["ok"] is True and audit["checks"]["start_model"] == {"pass": 2, "fail": 0, "skip": 0}
    starts = {
        r: {u["commitment"]["start-model-hash"] for u in json.loads(p.read_text())["updates"]}
        for r, p in ((r, tmp_path / f"artifacts/rounds/round_{r:05d}.json") for r in (1, 2))
    }
    assert starts[1] == {audit["initial_model_hash"]}
    assert len(starts[2]) == 1 and starts[2] != starts[1]  # one decrypted model, not the initial one
