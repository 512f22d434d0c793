"""The hospital's chain read: pinned calldata, the same answer as the full client, named errors."""

from __future__ import annotations

import pytest

from fl_client.chain_view import get_round_calldata, recorded_global_hash
from ledger.client import LedgerRevert


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
