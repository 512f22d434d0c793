"""StudyLedger on a real EVM (py-evm via eth-tester, and anvil): every guard reverts with its own error."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest
from eth_account import Account

from fedledger.commitment import commitment_digest, commitments_hash, recover_signer, sign_commitment
from ledger.compile import ARTIFACT_PATH, CompileError, artifact_json, compile_contract
from ledger.reverts import LedgerRevert


def _revert(fn, *args, **kwargs) -> LedgerRevert:
    with pytest.raises(LedgerRevert) as info:
        fn(*args, **kwargs)
    return info.value


# ----------------------------------------------------------------------------- artifact


def test_committed_artifact_matches_source():
    # Arrange
    if shutil.which("node") is None:
        pytest.skip("node is not installed: cannot recompile the contract to check the committed artifact")
    # Act
    try:
        fresh = compile_contract()
    except CompileError as exc:  # solc missing from node_modules
        pytest.skip(f"solc unavailable: {exc}")
    # Assert
    assert ARTIFACT_PATH.read_text(encoding="utf-8") == artifact_json(fresh), (
        "ledger/artifacts/StudyLedger.json is stale: run `python -m ledger.compile` and commit it"
    )


# ---------------------------------------------------------------------------- happy path


def test_recorded_rounds_read_back_through_views(make_study):
    # Arrange
    s = make_study(n=3)
    # Act
    r1 = s.record(1, eps_micro=1_000_000)
    r2 = s.record(2, eps_micro=2_000_000)
    # Assert
    assert s.client.last_round(s.study_id) == 2
    info = s.client.read_round(s.study_id, 2)
    assert info.prev_global_hash == s.aggregates[1]
    assert info.aggregate_hash == s.aggregates[2]
    assert info.participants == 3
    assert info.block_number == r2.block and info.timestamp > 0 and info.mode == 1
    assert s.client.read_round(s.study_id, 1).prev_global_hash == s.initial_model_hash
    study = s.client.read_study(s.study_id)
    assert study.last_round == 2 and study.aggregator == s.aggregator.address
    assert study.hospitals == tuple(h.address for h in s.hospitals) and study.code_version == "test-1.0"
    h = s.client.read_hospital(s.study_id, s.hospitals[0].address)
    assert (h.budget_micro, h.last_epsilon_micro, h.last_round, h.status) == (5_000_000, 2_000_000, 2, "consented")
    assert h.max_samples == 1_000 and study.release_quorum == 1
    assert r1.gas_used > 0


def test_events_carry_the_right_arguments(make_study):
    # Arrange
    s = make_study(n=2)
    cs, sigs = s.commitments(1, eps_micro=[700_000, 900_000])
    aggregate = os.urandom(32)
    # Act
    receipt = s.record(1, cs, sigs, aggregate=aggregate)
    events = s.client.round_events(s.study_id)
    # Assert
    (ev,) = events
    assert (ev.round, ev.prev_global_hash, ev.aggregate_hash) == (1, s.initial_model_hash, aggregate)
    assert ev.total_samples == sum(c.sample_count for c in cs) and ev.participants == 2
    assert ev.tx_hash == receipt.tx_hash and ev.block == receipt.block
    dom = s.client.domain()
    assert ev.commitments_hash == commitments_hash([commitment_digest(dom, c) for c in cs])
    assert ev.commitments_hash == s.client.read_round(s.study_id, 1).commitments_hash
    for got, c, sig, h in zip(ev.commitments, cs, sigs, s.hospitals):
        assert got.hospital == h.address and got.commitment == c and got.signature == sig
        assert recover_signer(dom, got.commitment, got.signature) == h.address
    raw = s.client.events("CommitmentRecorded", from_block=receipt.block)
    assert [
        (e["args"]["hospital"], bytes(e["args"]["updateHash"]), e["args"]["sampleCount"], e["args"]["epsilonMicro"])
        for e in raw
    ] == [(h.address, c.update_hash, c.sample_count, c.epsilon_micro) for h, c in zip(s.hospitals, cs)]


def test_python_signature_matches_what_the_contract_recovers(make_study):
    # Arrange
    s = make_study(n=1)
    (c,), (sig,) = s.commitments(1)
    # Act
    onchain_signer = s.client.onchain_recover(c, sig)
    onchain_digest = s.client.onchain_digest(c)
    # Assert
    assert onchain_signer == s.hospitals[0].address == recover_signer(s.client.domain(), c, sig)
    assert onchain_digest == commitment_digest(s.client.domain(), c)


# ------------------------------------------------------------------------------- guards


def test_non_aggregator_cannot_record(make_study):
    # Arrange
    s = make_study(n=2)
    cs, sigs = s.commitments(1)
    # Act
    err = _revert(s.record, 1, cs, sigs, sender=s.hospitals[0])
    # Assert
    assert err.error == "NotAggregator" and err.error_args["caller"].lower() == s.hospitals[0].address.lower()


def test_unregistered_hospital_reverts(make_study):
    # Arrange
    s = make_study(n=2)
    outsider = Account.create()
    cs, sigs = s.commitments(1, hospitals=[s.hospitals[0], outsider])
    # Act
    err = _revert(s.record, 1, cs, sigs)
    # Assert
    assert err.error == "HospitalNotRegistered" and err.error_args["hospital"].lower() == outsider.address.lower()


def test_non_consenting_hospital_reverts(make_study):
    # Arrange
    s = make_study(n=2, consent=[True, False])
    cs, sigs = s.commitments(1)
    # Act
    err = _revert(s.record, 1, cs, sigs)
    # Assert
    assert err.error == "HospitalNotConsented"
    assert err.error_args["hospital"].lower() == s.hospitals[1].address.lower()


def test_withdrawn_hospital_reverts(make_study):
    # Arrange
    s = make_study(n=2)
    s.record(1)
    s.client.withdraw(s.study_id, s.hospitals[1])
    cs, sigs = s.commitments(2)
    # Act
    err = _revert(s.record, 2, cs, sigs)
    # Assert
    assert err.error == "HospitalHasWithdrawn"
    assert s.client.read_hospital(s.study_id, s.hospitals[1].address).status == "withdrawn"
    assert _revert(s.client.consent, s.study_id, s.hospitals[1], 10).error == "HospitalHasWithdrawn"
    assert s.client.read_hospital(s.study_id, s.hospitals[1].address).max_samples == 1_000  # kept on withdrawal


def test_replayed_commitment_from_an_earlier_round_reverts(make_study):
    # Arrange
    s = make_study(n=2)
    cs1, sigs1 = s.commitments(1)
    s.record(1, cs1, sigs1)
    cs2, sigs2 = s.commitments(2)
    # Act: hospital 0's round-1 commitment, verbatim, in round 2
    verbatim = _revert(s.record, 2, [cs1[0], cs2[1]], [sigs1[0], sigs2[1]])
    # Act: the same signature over the commitment relabelled as round 2 (signed bytes changed)
    relabelled = replace(cs1[0], round=2, prev_global_hash=s.aggregates[1])
    forged = _revert(s.record, 2, [relabelled, cs2[1]], [sigs1[0], sigs2[1]])
    # Assert
    assert verbatim.error == "CommitmentRoundMismatch" and verbatim.error_args["index"] == 0
    assert forged.error == "HospitalNotRegistered"  # recovers to some other address


def test_round_1_recorded_twice_reverts(make_study):
    # Arrange
    s = make_study(n=1)
    cs, sigs = s.commitments(1)
    s.record(1, cs, sigs)
    # Act
    err = _revert(s.record, 1, cs, sigs, prev=s.initial_model_hash)
    # Assert
    assert err.error == "RoundAlreadyRecorded"


def test_skipping_a_round_reverts(make_study):
    # Arrange
    s = make_study(n=1)
    cs, sigs = s.commitments(2, prev=s.initial_model_hash)
    # Act
    err = _revert(s.record, 2, cs, sigs, prev=s.initial_model_hash)
    # Assert
    assert err.error == "RoundOutOfOrder"


def test_wrong_previous_hash_reverts(make_study):
    # Arrange
    s = make_study(n=1)
    s.record(1)
    wrong = os.urandom(32)
    cs, sigs = s.commitments(2, prev=wrong)
    cs_ok, sigs_ok = s.commitments(2)
    # Act
    call_err = _revert(s.record, 2, cs, sigs, prev=wrong)
    commit_err = _revert(s.record, 2, cs, sigs)  # call right, commitment signed over the wrong hash
    # Assert
    assert call_err.error == "PrevHashMismatch" and call_err.error_args["expected"] == s.aggregates[1]
    assert commit_err.error == "CommitmentPrevHashMismatch"
    assert s.record(2, cs_ok, sigs_ok).gas_used > 0


def test_commitment_for_another_study_reverts(make_study):
    # Arrange
    s, other = make_study(n=1), make_study(n=1)
    cs, sigs = other.commitments(1, prev=s.initial_model_hash)
    # Act
    err = _revert(s.record, 1, cs, sigs)
    # Assert
    assert err.error == "CommitmentStudyMismatch"


def test_epsilon_past_budget_reverts(make_study):
    # Arrange
    s = make_study(n=2, budget_micro=3_000_000)
    cs, sigs = s.commitments(1, eps_micro=[3_000_000, 3_000_001])
    # Act
    err = _revert(s.record, 1, cs, sigs)
    # Assert
    assert err.error == "EpsilonOverBudget"
    assert (err.error_args["epsilonMicro"], err.error_args["budgetMicro"]) == (3_000_001, 3_000_000)


def test_decreasing_epsilon_reverts(make_study):
    # Arrange
    s = make_study(n=1)
    s.record(1, eps_micro=2_000_000)
    cs, sigs = s.commitments(2, eps_micro=1_999_999)
    # Act
    err = _revert(s.record, 2, cs, sigs)
    # Assert
    assert err.error == "EpsilonDecreased" and err.error_args["lastEpsilonMicro"] == 2_000_000


def test_same_hospital_twice_in_a_round_reverts(make_study):
    # Arrange
    s = make_study(n=1)
    cs, sigs = s.commitments(1, hospitals=[s.hospitals[0], s.hospitals[0]], eps_micro=[1, 1])
    # Act
    err = _revert(s.record, 1, cs, sigs)
    # Assert
    assert err.error == "DuplicateHospital"


def test_sample_counts_must_add_up(make_study):
    # Arrange
    s = make_study(n=2)
    cs, sigs = s.commitments(1)
    # Act
    err = _revert(s.record, 1, cs, sigs, total=sum(c.sample_count for c in cs) + 1)
    # Assert
    assert err.error == "SampleCountMismatch"


def test_empty_round_and_bad_signatures_revert(make_study):
    # Arrange
    s = make_study(n=1)
    cs, sigs = s.commitments(1)
    high_s = sigs[0][:32] + (2**256 - 432420386565659656852420866394968145599 - 1).to_bytes(32, "big") + sigs[0][64:]
    # Act / Assert
    assert _revert(s.record, 1, [], [], total=0).error == "NoCommitments"
    assert _revert(s.record, 1, cs, []).error == "SignatureCountMismatch"
    assert _revert(s.record, 1, cs, [sigs[0][:64]]).error == "InvalidSignature"
    assert _revert(s.record, 1, cs, [high_s]).error == "InvalidSignature"


def test_study_past_expiry_refuses_rounds(make_study):
    # Arrange
    s = make_study(n=1, ttl=600)
    s.record(1)
    s.chain.increase_time(601)
    cs, sigs = s.commitments(2)
    # Act
    err = _revert(s.record, 2, cs, sigs)
    # Assert
    assert err.error == "StudyExpired"


# ------------------------------------------------------------------ admin and consent


def test_register_study_guards(ledger_chain, ledger, make_study):
    # Arrange
    s = make_study(n=1)
    now = ledger_chain.w3.eth.get_block("latest")["timestamp"]
    h = [s.hospitals[0].address]
    args = (os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(32), "v", ledger_chain.aggregator.address)
    # Act / Assert
    assert _revert(ledger.register_study, s.study_id, *args[1:], now + 99, h, [1], 1).error == "StudyAlreadyExists"
    assert _revert(ledger.register_study, *args, now + 99, h, [1], 1, sender=s.hospitals[0]).error == "NotStudyAdmin"
    assert _revert(ledger.register_study, *args, now - 1, h, [1], 1).error == "ExpiryInPast"
    assert _revert(ledger.register_study, *args, now + 99, h, [1, 2], 1).error == "HospitalsBudgetsLengthMismatch"
    assert _revert(ledger.register_study, *args, now + 99, h + h, [1, 1], 1).error == "HospitalRegisteredTwice"
    assert _revert(ledger.register_study, *args, now + 99, h, [1], 0).error == "ZeroReleaseQuorum"


def test_study_admin_role_can_register(ledger_chain, ledger):
    # Arrange
    study_admin = ledger_chain.funded_accounts[12]
    ledger.grant_study_admin(study_admin.address)
    now = ledger_chain.w3.eth.get_block("latest")["timestamp"]
    sid = os.urandom(32)
    # Act
    ledger.register_study(
        sid,
        os.urandom(32),
        os.urandom(32),
        os.urandom(32),
        "v",
        ledger_chain.aggregator.address,
        now + 99,
        [ledger_chain.funded_accounts[2].address],
        [1],
        1,
        sender=study_admin,
    )
    # Assert
    assert ledger.read_study(sid).aggregator == ledger_chain.aggregator.address


def test_consent_guards(make_study):
    # Arrange
    s = make_study(n=1)
    stranger = s.chain.funded_accounts[13]
    # Act / Assert
    assert _revert(s.client.consent, s.study_id, s.hospitals[0], 10).error == "HospitalAlreadyConsented"
    assert _revert(s.client.consent, s.study_id, stranger, 10).error == "HospitalNotRegistered"
    assert _revert(s.client.consent, os.urandom(32), stranger, 10).error == "UnknownStudy"


def test_signature_from_another_deployment_does_not_verify(make_study):
    # Arrange: same fields, signed for a different verifying contract (cross-deployment replay)
    s = make_study(n=1)
    (c,), _ = s.commitments(1)
    other_domain = replace(s.client.domain(), verifying_contract="0x" + "11" * 20)
    sig = sign_commitment(s.hospitals[0], other_domain, c)
    # Act
    err = _revert(s.record, 1, [c], [sig])
    # Assert
    assert err.error == "HospitalNotRegistered"
