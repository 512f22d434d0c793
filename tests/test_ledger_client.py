"""Ledger client, chains and journal: outages, restarts, reopening for audit, keys."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
from eth_account import Account

from fedledger.commitment import RoundCommitment, recover_signer, sign_commitment
from ledger.chains import ChainError, ChainUnavailable, free_port, load_aggregator_account, reopen_anvil, start_chain
from ledger.client import LedgerClient
from ledger.compile import load_artifact
from ledger.journal import Journal, JournalError, LedgerUnavailable, RecordSubmitter, RoundRecord
from ledger.reverts import LedgerRevert, LedgerTransportError, decode_revert, error_table
from ledger.rpc import http_w3
from tests.conftest_ledger import ANVIL_AVAILABLE

needs_anvil = pytest.mark.skipif(not ANVIL_AVAILABLE, reason="anvil not installed (npm ci)")


def _record(round: int = 1, n: int = 2, study: bytes = b"\x01" * 32) -> RoundRecord:
    cs = tuple(RoundCommitment(study, round, b"\x02" * 32, os.urandom(32), 10, 5, b"\x02" * 32) for _ in range(n))
    return RoundRecord(study, round, b"\x02" * 32, os.urandom(32), 10 * n, cs, tuple(os.urandom(65) for _ in cs))


class _Study:
    """A registered, consented study on a live chain, producing signed round records."""

    def __init__(self, chain, client: LedgerClient, n: int = 2):
        self.chain, self.client = chain, client
        self.hospitals = chain.funded_accounts[2 : 2 + n]
        self.study_id, self.init = os.urandom(32), os.urandom(32)
        now = chain.w3.eth.get_block("latest")["timestamp"]
        client.register_study(
            self.study_id,
            os.urandom(32),
            self.init,
            os.urandom(32),
            "t",
            chain.aggregator.address,
            now + 86_400,
            [h.address for h in self.hospitals],
            [10_000_000] * n,
            1,
        )
        for h in self.hospitals:
            client.consent(self.study_id, h, 10**6)
        self.prev = self.init

    def next_record(self, round: int) -> RoundRecord:
        dom = self.client.domain()
        cs = tuple(
            RoundCommitment(self.study_id, round, self.prev, os.urandom(32), 7, 100 * round, self.prev)
            for _ in self.hospitals
        )
        sigs = tuple(sign_commitment(h, dom, c) for h, c in zip(self.hospitals, cs))
        rec = RoundRecord(self.study_id, round, self.prev, os.urandom(32), 7 * len(cs), cs, sigs)
        self.prev = rec.aggregate_hash
        return rec


# ------------------------------------------------------------------------------ journal


def test_journal_is_durable_and_tracks_pending(tmp_path):
    # Arrange
    j = Journal(tmp_path)
    r1, r2 = _record(1), _record(2)
    # Act
    j.append(r1)
    j.append(r2)
    j.append(r1)  # idempotent
    j.mark_submitted(r1.key, "0xabc", 7)
    reopened = Journal(tmp_path)
    # Assert
    assert reopened.pending() == [r2]
    assert reopened.records() == [r1, r2]
    assert reopened.submitted()[r1.key]["tx_hash"] == "0xabc"
    lines = (tmp_path / "ledger_journal.jsonl").read_text().splitlines()
    assert [json.loads(x)["type"] for x in lines] == ["record", "record", "submitted"]


def test_journal_rejects_a_conflicting_record_and_ignores_a_torn_tail(tmp_path):
    # Arrange
    j = Journal(tmp_path)
    r1 = _record(1)
    j.append(r1)
    with open(j.path, "a") as f:
        f.write('{"type": "record", "key": "trunc')  # crash mid-append
    # Act / Assert
    assert j.pending() == [r1]
    with pytest.raises(JournalError):
        j.append(
            RoundRecord(
                r1.study_id, 1, r1.prev_global_hash, os.urandom(32), r1.total_samples, r1.commitments, r1.signatures
            )
        )


def test_record_json_round_trip():
    r = _record(3, n=3)
    assert RoundRecord.from_json(json.loads(json.dumps(r.to_json()))) == r


# -------------------------------------------------------------------------- submitter


def test_submitter_records_in_order_and_never_twice(tmp_path):
    # Arrange
    chain = start_chain("eth_tester", tmp_path)
    client = LedgerClient.deploy(chain.w3, chain.admin)
    study = _Study(chain, client)
    journal = Journal(tmp_path)
    sub = RecordSubmitter(client.with_account(chain.aggregator), journal, limit_s=5)
    recs = [study.next_record(r) for r in (1, 2, 3)]
    # Act: journal all three, submit, then a crash-restart re-journals round 3 and flushes again
    for r in recs:
        journal.append(r)
    receipts = sub.flush()
    journal.append(recs[2])
    again = RecordSubmitter(client.with_account(chain.aggregator), Journal(tmp_path)).flush()
    # Assert
    assert len(receipts) == 3 and again == [] and journal.pending() == []
    assert [e.round for e in client.round_events(study.study_id)] == [1, 2, 3]


def test_a_round_mined_before_the_journal_mark_is_found_not_resent(tmp_path):
    # Arrange: the transaction went through but the process died before marking it
    chain = start_chain("eth_tester", tmp_path)
    client = LedgerClient.deploy(chain.w3, chain.admin)
    study = _Study(chain, client, n=1)
    rec = study.next_record(1)
    journal = Journal(tmp_path)
    journal.append(rec)
    client.record_round(
        rec.study_id,
        1,
        rec.prev_global_hash,
        rec.aggregate_hash,
        rec.total_samples,
        rec.commitments,
        rec.signatures,
        sender=chain.aggregator,
    )
    # Act
    receipts = RecordSubmitter(client.with_account(chain.aggregator), journal).flush()
    # Assert
    assert receipts == [] and journal.pending() == []
    assert journal.submitted()[rec.key]["found_on_chain"] is True


def test_a_reverting_record_raises_and_stays_pending(tmp_path):
    # Arrange: signed by nobody registered
    chain = start_chain("eth_tester", tmp_path)
    client = LedgerClient.deploy(chain.w3, chain.admin)
    study = _Study(chain, client, n=1)
    good = study.next_record(1)
    bad = RoundRecord(
        good.study_id,
        1,
        good.prev_global_hash,
        good.aggregate_hash,
        good.total_samples,
        good.commitments,
        (sign_commitment(Account.create(), client.domain(), good.commitments[0]),),
    )
    journal = Journal(tmp_path)
    # Act
    with pytest.raises(LedgerRevert) as info:
        RecordSubmitter(client.with_account(chain.aggregator), journal).record(
            bad.study_id,
            1,
            bad.prev_global_hash,
            bad.aggregate_hash,
            bad.total_samples,
            bad.commitments,
            bad.signatures,
        )
    # Assert
    assert info.value.error == "HospitalNotRegistered"
    assert journal.pending() == [bad]


@needs_anvil
def test_client_survives_the_chain_going_away_mid_study(tmp_path):
    # Arrange: a study on anvil, round 1 recorded
    chain = start_chain("anvil", tmp_path)
    try:
        client = LedgerClient.deploy(chain.w3, chain.admin, backoff_s=0.05)
        study = _Study(chain, client)
        journal = Journal(tmp_path)
        sub = RecordSubmitter(client.with_account(chain.aggregator), journal, limit_s=1.0, backoff_s=0.05)
        sub.record(*_args(study.next_record(1)))
        # Act 1: the chain goes away; rounds 2 and 3 are journaled, the limit passes
        chain.stop()
        for r in (2, 3):
            with pytest.raises(LedgerUnavailable, match=r"within 1s.*ledger_journal.jsonl"):
                sub.record(*_args(study.next_record(r)))
        assert [r.round for r in journal.pending()] == [2, 3]
        # Act 2: the chain comes back (same state file, same URL) while a submitter is waiting
        patient = RecordSubmitter(client.with_account(chain.aggregator), journal, limit_s=30, backoff_s=0.05)
        result: dict = {}
        t = threading.Thread(target=lambda: result.setdefault("receipts", patient.flush()))
        t.start()
        time.sleep(0.5)
        chain.restart()
        t.join(timeout=30)
        # Assert: every round exactly once, in order, nothing pending
        assert not t.is_alive() and len(result["receipts"]) == 2
        assert patient.attempts > 2  # it did wait
        assert journal.pending() == []
        events = client.round_events(study.study_id)
        assert [e.round for e in events] == [1, 2, 3]
        assert client.last_round(study.study_id) == 3
        for e in events:
            assert e.prev_global_hash == (study.init if e.round == 1 else events[e.round - 2].aggregate_hash)
    finally:
        chain.stop()


def _args(rec: RoundRecord) -> tuple:
    """``record_round``'s arguments: the record's first seven fields, study id to signatures, in order."""
    return tuple(getattr(rec, f.name) for f in fields(rec)[:7])


# ----------------------------------------------------------------------------- chains


@needs_anvil
def test_reopened_anvil_keeps_state_and_logs_for_audit(tmp_path):
    # Arrange
    chain = start_chain("anvil", tmp_path)
    client = LedgerClient.deploy(chain.w3, chain.admin)
    study = _Study(chain, client, n=1)
    rec = study.next_record(1)
    client.record_round(*_args(rec), sender=chain.aggregator)
    chain.stop()
    # Act
    reopened = reopen_anvil(tmp_path)
    try:
        audit = LedgerClient.at(reopened.w3, client.address, deploy_block=client.deploy_block)
        events = audit.round_events(study.study_id)
        # Assert
        assert (tmp_path / "chain" / "anvil_state.json").exists()
        assert audit.last_round(study.study_id) == 1
        (ev,) = events
        assert ev.aggregate_hash == rec.aggregate_hash
        c = ev.commitments[0]
        assert recover_signer(audit.domain(), c.commitment, c.signature) == study.hospitals[0].address
    finally:
        reopened.stop()


@needs_anvil
def test_client_retries_a_transport_error_until_the_chain_answers(tmp_path):
    # Arrange
    chain = start_chain("anvil", tmp_path)
    try:
        client = LedgerClient.deploy(chain.w3, chain.admin, backoff_s=0.1, max_attempts=8)
        chain.stop()
        threading.Timer(0.4, chain.restart).start()
        # Act
        n = client.last_round(os.urandom(32))
        # Assert
        assert n == 0
    finally:
        time.sleep(0.1)
        chain.stop()


def test_down_rpc_chain_names_the_url(monkeypatch):
    # Arrange
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("FL_TEST_AGG_KEY", Account.create().key.hex())
    # Act
    with pytest.raises(ChainUnavailable, match=url.replace(".", r"\.")):
        start_chain("rpc", Path("."), rpc_url=url, key_env="FL_TEST_AGG_KEY")
    client = LedgerClient.at(http_w3(url, timeout=1), "0x" + "00" * 20, max_attempts=2, backoff_s=0.01)
    with pytest.raises(LedgerTransportError, match=url.replace(".", r"\.")):
        client.last_round(b"\x00" * 32)


def test_none_backend_and_unknown_backend():
    assert start_chain("none", Path(".")) is None
    with pytest.raises(ChainError, match="unknown ledger backend"):
        start_chain("ganache", Path("."))


def test_aggregator_key_from_env_or_keystore_never_echoed(tmp_path, monkeypatch):
    # Arrange
    acct = Account.create()
    secret = acct.key.hex()
    monkeypatch.setenv("FL_TEST_AGG_KEY", secret)
    monkeypatch.setenv("FL_TEST_BAD_KEY", "not-a-key-" + secret[:10])
    keystore = tmp_path / "agg.json"
    keystore.write_text(json.dumps(Account.encrypt(acct.key, "pw", iterations=2)))
    # Act / Assert
    assert load_aggregator_account("FL_TEST_AGG_KEY").address == acct.address
    monkeypatch.setenv("FEDLEDGER_KEYSTORE_PASSWORD", "pw")
    assert load_aggregator_account(keystore=keystore).address == acct.address
    with pytest.raises(ChainError) as bad:
        load_aggregator_account("FL_TEST_BAD_KEY")
    assert secret[:10] not in str(bad.value)
    monkeypatch.setenv("FEDLEDGER_KEYSTORE_PASSWORD", "wrong")
    with pytest.raises(ChainError) as wrong:
        load_aggregator_account(keystore=keystore)
    assert "wrong" not in str(wrong.value)
    with pytest.raises(ChainError, match="FL_TEST_UNSET"):
        load_aggregator_account("FL_TEST_UNSET")


@needs_anvil
def test_rpc_backend_deploys_with_a_key_from_the_environment(tmp_path, monkeypatch):
    # Arrange: an "existing" chain (anvil) reached by URL, key from the environment
    local = start_chain("anvil", tmp_path)
    try:
        operator = Account.create()
        local.fund(operator.address)
        monkeypatch.setenv("FL_TEST_AGG_KEY", operator.key.hex())
        # Act
        chain = start_chain("rpc", tmp_path, rpc_url=local.rpc_url, key_env="FL_TEST_AGG_KEY")
        client = LedgerClient.deploy(chain.w3, chain.funded_accounts[0])
        # Assert
        assert chain.chain_id == local.chain_id and chain.funded_accounts[0].address == operator.address
        assert client.w3.eth.get_code(client.address) != b""
    finally:
        local.stop()


def test_revert_decoding_names_custom_errors_and_standard_ones():
    # Arrange
    table = error_table(load_artifact()["abi"])
    from eth_abi import encode
    from eth_utils import keccak

    custom = keccak(text="EpsilonOverBudget(address,uint64,uint64)")[:4] + encode(
        ["address", "uint64", "uint64"], ["0x" + "11" * 20, 5, 4]
    )
    string_err = keccak(text="Error(string)")[:4] + encode(["string"], ["nope"])
    # Act / Assert
    err = decode_revert(table, "0x" + custom.hex(), "recordRound")
    assert err.error == "EpsilonOverBudget" and err.error_args["budgetMicro"] == 4
    assert "EpsilonOverBudget" in str(err) and "recordRound" in str(err)
    assert decode_revert(table, string_err).error_args == {"message": "nope"}
    assert decode_revert(table, b"\xde\xad\xbe\xef").error == "UnknownRevert"
