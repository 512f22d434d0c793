"""StudyLedger v2 on a real EVM: registered cohort sizes (issue 18) and k-of-n hospital-signed releases (issue 19)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from eth_account import Account

from fedledger.commitment import sign_commitment
from fedledger.release_attestation import ModelRelease, recover_release_signer, release_digest, sign_release
from ledger.reverts import LedgerRevert


def _revert(fn, *args, **kwargs) -> LedgerRevert:
    with pytest.raises(LedgerRevert) as info:
        fn(*args, **kwargs)
    return info.value


def _signed(s, accounts, round: int, model: bytes) -> list[bytes]:
    return [sign_release(a, s.client.domain(), ModelRelease(s.study_id, round, model)) for a in accounts]


# ---------------------------------------------------------------------------- cohort caps


def test_consent_registers_the_cohort_cap_and_emits_it(make_study):
    # Arrange
    s = make_study(n=2, consent=[True, False], max_samples=120)
    late = s.hospitals[1]
    # Act
    bad = [_revert(s.client.consent, s.study_id, late, cap).error for cap in (0, 2**56)]
    receipt = s.client.consent(s.study_id, late, 2**56 - 1)
    # Assert
    assert bad == ["InvalidSampleCap", "InvalidSampleCap"]
    assert s.client.read_hospital(s.study_id, s.hospitals[0].address).max_samples == 120
    assert s.client.read_hospital(s.study_id, late.address).max_samples == 2**56 - 1
    (ev,) = s.client.events("HospitalConsented", s.study_id, from_block=receipt.block)
    assert (ev["args"]["hospital"], ev["args"]["maxSamples"]) == (late.address, 2**56 - 1)


def test_inflated_sample_count_is_refused(make_study):
    # Arrange: hospital_1 registered 1,000 records and claims 100,000
    s = make_study(n=3, max_samples=1_000)
    cs, _ = s.commitments(1, samples=50)
    inflated = [cs[0], replace(cs[1], sample_count=100_000), cs[2]]
    sigs = [sign_commitment(h, s.client.domain(), c) for h, c in zip(s.hospitals, inflated)]
    # Act
    err = _revert(s.record, 1, inflated, sigs)
    # Assert
    assert err.error == "SampleCountAboveCap"
    assert err.error_args["hospital"].lower() == s.hospitals[1].address.lower()
    assert (err.error_args["sampleCount"], err.error_args["cap"]) == (100_000, 1_000)
    assert s.client.last_round(s.study_id) == 0


def test_sample_count_at_the_cap_is_recorded(make_study):
    # Arrange: samples 998, 999, 1000 against a cap of 1,000
    s = make_study(n=3, max_samples=1_000)
    cs, sigs = s.commitments(1, samples=998)
    # Act
    receipt = s.record(1, cs, sigs)
    # Assert
    assert receipt.gas_used > 0 and s.client.read_round(s.study_id, 1).total_samples == 998 + 999 + 1000
    h = s.client.read_hospital(s.study_id, s.hospitals[2].address)
    assert (h.last_round, h.status, h.max_samples) == (1, "consented", 1_000)  # the cap survives the Yul write


# ------------------------------------------------------------------------------- releases


def test_release_digest_matches_the_contract(make_study):
    # Arrange
    s = make_study(n=1)
    model = os.urandom(32)
    # Act
    onchain = s.client.onchain_release_digest(s.study_id, 7, model)
    # Assert
    assert onchain == release_digest(s.client.domain(), ModelRelease(s.study_id, 7, model))
    sig = _signed(s, s.hospitals, 7, model)[0]
    assert recover_release_signer(s.client.domain(), ModelRelease(s.study_id, 7, model), sig) == s.hospitals[0].address


def test_honest_release_with_a_quorum_of_signatures_is_recorded(make_study):
    # Arrange: 2 of 3 hospitals must agree
    s = make_study(n=3, quorum=2)
    s.record(1)
    model = os.urandom(32)
    signers = [s.hospitals[2], s.hospitals[0]]
    # Act
    receipt = s.client.release_model(s.study_id, 1, model, _signed(s, signers, 1, model))
    # Assert
    assert s.client.released_model(s.study_id, 1) == model
    assert s.client.read_study(s.study_id).release_quorum == 2
    (ev,) = s.client.events("ModelReleased", s.study_id, from_block=receipt.block)
    assert (ev["args"]["round"], bytes(ev["args"]["modelHash"])) == (1, model)
    assert list(ev["args"]["signers"]) == [h.address for h in signers]
    again = _revert(s.client.release_model, s.study_id, 1, model, _signed(s, signers, 1, model))
    assert again.error == "ModelAlreadyReleased"


def test_forged_release_is_refused(make_study):
    # Arrange: hospitals signed the true decryption; the coordinator releases another hash
    s = make_study(n=3, quorum=2)
    s.record(1)
    true_model, forged = os.urandom(32), os.urandom(32)
    honest = _signed(s, s.hospitals[:2], 1, true_model)
    # Act
    unsigned = _revert(s.client.release_model, s.study_id, 1, forged, [])
    reused = _revert(s.client.release_model, s.study_id, 1, forged, honest)
    # Assert
    assert unsigned.error == "ReleaseQuorumNotMet"
    assert (unsigned.error_args["signers"], unsigned.error_args["quorum"]) == (0, 2)
    assert reused.error == "ReleaseSignerNotHospital"  # the signatures recover to addresses of no hospital
    assert s.client.released_model(s.study_id, 1) is None


def test_release_signature_guards(make_study):
    # Arrange
    s = make_study(n=3, consent=[True, True, False], quorum=2)
    s.record(1, *s.commitments(1, hospitals=s.hospitals[:2]))
    model = os.urandom(32)
    a, b, unconsented = _signed(s, s.hospitals, 1, model)
    outsider = _signed(s, [Account.create()], 1, model)[0]
    # Act / Assert
    assert _revert(s.client.release_model, s.study_id, 1, model, [a]).error == "ReleaseQuorumNotMet"
    assert _revert(s.client.release_model, s.study_id, 1, model, [a, a]).error == "DuplicateReleaseSigner"
    assert _revert(s.client.release_model, s.study_id, 1, model, [a, outsider]).error == "ReleaseSignerNotHospital"
    assert _revert(s.client.release_model, s.study_id, 1, model, [a, unconsented]).error == "ReleaseSignerNotHospital"
    assert _revert(s.client.release_model, s.study_id, 1, model, [a, b[:64]]).error == "InvalidReleaseSignature"
    assert _revert(s.client.release_model, s.study_id, 2, model, [a, b]).error == "RoundNotRecorded"
    err = _revert(s.client.release_model, s.study_id, 1, model, [a, b], sender=s.aggregator)
    assert err.error == "NotStudyAdmin"
    assert s.client.release_model(s.study_id, 1, model, [b, a]).gas_used > 0
