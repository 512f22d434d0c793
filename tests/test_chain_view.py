"""The hospital's chain read: pinned calldata, the same answer as the full client, named errors."""

from __future__ import annotations

import pytest

from fl_client.chain_view import get_round_calldata, recorded_global_hash, wait_for_recorded_hash
from ledger.reverts import LedgerRevert


def test_get_round_calldata_is_pinned():
    # selector keccak("getRound(bytes32,uint64)")[:4], then the two 32-byte words
    data = get_round_calldata("0x" + "11" * 32, 3)
    assert data.hex() == "cc65a3ba" + "11" * 32 + "00" * 31 + "03"


def test_get_round_calldata_refuses_a_short_study_id():
    with pytest.raises(ValueError, match="expected 32 bytes"):
        get_round_calldata("0x1234", 1)


def test_recorded_hash_matches_the_chain_and_names_a_missing_round(make_study, ledger_chain):
    if ledger_chain.rpc_url is None:
        pytest.skip("the hospital reads over JSON-RPC; eth-tester has no endpoint")
    # arrange
    study = make_study(n=2)
    study.record(1)
    sid = "0x" + study.study_id.hex()
    # act
    round0 = recorded_global_hash(ledger_chain.rpc_url, study.client.address, sid, 0)
    round1 = recorded_global_hash(ledger_chain.rpc_url, study.client.address, sid, 1)
    # assert
    assert round0 == "0x" + study.initial_model_hash.hex()
    assert round1 == "0x" + study.aggregates[1].hex()
    with pytest.raises(LedgerRevert, match="RoundNotRecorded"):
        recorded_global_hash(ledger_chain.rpc_url, study.client.address, sid, 2)


def test_a_hospital_waits_for_a_round_being_mined(make_study, ledger_chain):
    if ledger_chain.rpc_url is None:
        pytest.skip("the hospital reads over JSON-RPC; eth-tester has no endpoint")
    # arrange: round 1 is recorded only after the hospital has started to look for it
    import threading

    study = make_study(n=2)
    sid = "0x" + study.study_id.hex()
    recorder = threading.Timer(0.3, study.record, args=(1,))
    # act
    recorder.start()
    try:
        got = wait_for_recorded_hash(ledger_chain.rpc_url, study.client.address, sid, 1, wait_s=20)
    finally:
        recorder.join()
    # assert
    assert got == "0x" + study.aggregates[1].hex()


def test_a_round_that_never_appears_is_named_after_the_wait(make_study, ledger_chain):
    if ledger_chain.rpc_url is None:
        pytest.skip("the hospital reads over JSON-RPC; eth-tester has no endpoint")
    # arrange: a fake clock that moves 1 s per sleep, so the 3 s wait ends at once
    study = make_study(n=2)
    now = [0.0]
    # act / assert
    with pytest.raises(LedgerRevert, match="RoundNotRecorded"):
        wait_for_recorded_hash(
            ledger_chain.rpc_url,
            study.client.address,
            "0x" + study.study_id.hex(),
            5,
            wait_s=3,
            sleep=lambda s: now.__setitem__(0, now[0] + 1.0),
            clock=lambda: now[0],
        )
    assert now[0] >= 3.0
