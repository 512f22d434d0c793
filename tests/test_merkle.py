"""Ledger Merkle mode: the tree (fixed vectors), the contract's recordRoundMerkle, client and journal.

Runs on the in-process eth_tester chain only (fast); the contract's other
tests cover both EVMs.
"""

from __future__ import annotations

import os

import pytest
from eth_utils import keccak

from fedledger.commitment import commitment_digest
from fedledger.merkle import (
    MerkleError,
    MerkleTree,
    commitment_leaf,
    hash_pair,
    merkle_proof,
    merkle_root,
    process_proof,
    verify_proof,
)
from ledger.journal import Journal, RecordSubmitter, RoundRecord
from ledger.records import MODE_MERKLE
from ledger.reverts import LedgerRevert


@pytest.fixture(scope="module")
def ledger_backend() -> str:  # overrides tests/conftest_ledger.py: eth_tester only
    return "eth_tester"


def _revert(fn, *args, **kwargs) -> LedgerRevert:
    with pytest.raises(LedgerRevert) as info:
        fn(*args, **kwargs)
    return info.value


def h(x: str) -> bytes:
    return bytes.fromhex(x.removeprefix("0x"))


# ------------------------------------------------------------------- tree vectors

L = [keccak(bytes([i])) for i in range(1, 6)]  # keccak256(uint8 i), i = 1..5


def test_leaf_vector():
    # HASHES.md section 4 vector: digest signed by dev key #2
    leaf = commitment_leaf(
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x6e1c9d8849495ae558ae32a6d01adf2f9195b07ee8881ea3d09b89859dba437c",
    )
    assert leaf.hex() == "06408536ae21100d540097b94c67bfc2341ab3e199e6ed9cdec9b2afd36a3874"


@pytest.mark.parametrize(
    "n, root",
    [
        (1, "5fe7f977e71dba2ea1a68e21057beebb9be2ac30c6410aa38d4f3fbe41dcffd2"),
        (2, "71d8979cbfae9b197a4fbcc7d387b1fae9560e2f284d30b4e90c80f6bc074f57"),
        (3, "eabc7452eee4f65d21a7edc9987de7047c7f2554db3dfeab6bff2d80e61c2022"),
        (5, "74ca41639f96e1540a34fccf3a3cf9307e7dcb18f3238ffeef27804595aabc82"),
    ],
)
def test_root_vectors(n, root):
    assert merkle_root(L[:n]).hex() == root
    assert merkle_root(reversed(L[:n])).hex() == root  # order-independent (leaves are sorted)


def test_proof_vectors_and_odd_node_promotion():
    t = MerkleTree(L)
    # sorted leaves: 5fe7.., 69c3.., dbb8.., f2ee.., f343..; the fifth is promoted twice
    assert [x.hex()[:8] for x in t.leaves] == ["5fe7f977", "69c322e3", "dbb8d0f4", "f2ee15ea", "f3436814"]
    assert [p.hex() for p in t.proof(L[0])] == [
        "69c322e3248a5dfc29d73c5b0553b0185a35cd5bb6386747517ef7e53b15e287",
        "82142e1c0ddd298cd66ef6caeaffb602a56f7379941f173a60d5d604cd34c9e3",
        "f343681465b9efe82c933c3e8748c70cb8aa06539c361de20f72eac04e766393",
    ]
    assert [p.hex() for p in t.proof(t.leaves[4])] == [
        "5057ac0e50fd0490de6ec149ae4e7d67ab7c0f330960feaf5145d909e2da442d"
    ]
    assert t.root == hash_pair(t.levels[-2][0], t.levels[-2][1])
    for leaf in L:
        assert verify_proof(t.proof(leaf), t.root, leaf)
        assert merkle_proof(L, leaf) == t.proof(leaf)
    assert MerkleTree(L[:1]).proof(L[0]) == []
    # wrong leaf, wrong proof, truncated proof
    assert not verify_proof(t.proof(L[0]), t.root, L[1])
    assert not verify_proof(t.proof(L[0])[:-1], t.root, L[0])
    assert not verify_proof(["0x12"], t.root, L[0])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 9, 33])
def test_every_proof_verifies(n):
    leaves = [keccak(os.urandom(8)) for _ in range(n)]
    t = MerkleTree(leaves)
    for leaf in leaves:
        assert process_proof(t.proof(leaf), leaf) == t.root
    assert len(t.proof(leaves[0])) <= max(1, (n - 1).bit_length())


def test_tree_refuses_bad_input():
    with pytest.raises(MerkleError):
        MerkleTree([])
    with pytest.raises(MerkleError):
        MerkleTree([L[0], L[1], L[0]])
    with pytest.raises(MerkleError):
        MerkleTree(L[:2]).proof(L[3])


# ----------------------------------------------------------------------- contract


def _merkle_round(s, r, eps_micro=1_000_000, hospitals=None):
    hs = list(s.hospitals if hospitals is None else hospitals)
    cs, sigs = s.commitments(r, eps_micro, hospitals=hs)
    dom = s.client.domain()
    leaves = [commitment_leaf(a.address, commitment_digest(dom, c)) for a, c in zip(hs, cs)]
    return cs, sigs, leaves, MerkleTree(leaves)


def test_contract_stores_the_python_root_and_verifies_python_proofs(make_study):
    # Arrange
    s = make_study(n=5)
    cs, sigs, leaves, tree = _merkle_round(s, 1, eps_micro=[1, 2, 3, 4, 5])
    agg = os.urandom(32)
    # Act
    rec = s.client.record_round_merkle(
        s.study_id,
        1,
        s.initial_model_hash,
        agg,
        sum(c.sample_count for c in cs),
        tree.root,
        len(cs),
        5,
        sender=s.aggregator,
    )
    s.aggregates[1] = agg
    # Assert: the stored root is Python's, mode 2, and the contract agrees on every leaf and proof
    info = s.client.read_round(s.study_id, 1)
    assert (info.commitments_hash, info.mode, info.participants) == (tree.root, MODE_MERKLE, 5)
    assert info.total_samples == sum(c.sample_count for c in cs) and info.block_number == rec.block
    assert s.client.last_round(s.study_id) == 1
    for a, c, sig, leaf in zip(s.hospitals, cs, sigs, leaves):
        assert s.client.onchain_leaf(a.address, c) == leaf
        assert s.client.merkle_member(s.study_id, 1, c, sig, tree.proof(leaf)) == a.address
    # a wrong proof, a signature by someone else, a per-hospital round: not a member
    assert s.client.merkle_member(s.study_id, 1, cs[0], sigs[0], tree.proof(leaves[1])) is None
    assert s.client.merkle_member(s.study_id, 1, cs[0], sigs[1], tree.proof(leaves[0])) is None
    # per-hospital state untouched by a Merkle round (budgets move to the auditor)
    assert s.client.read_hospital(s.study_id, s.hospitals[0].address).last_round == 0
    # the round event carries the root and mode 2; the next round chains from it in either mode
    ev = s.client.round_events(s.study_id)
    assert len(ev) == 1 and ev[0].mode == MODE_MERKLE and ev[0].commitments_root == tree.root
    assert ev[0].max_epsilon_micro == 5 and ev[0].commitments == ()
    s.record(2, eps_micro=6)
    _cs3, _sigs3, _l3, tree3 = _merkle_round(s, 3)
    s.client.record_round_merkle(
        s.study_id, 3, s.aggregates[2], os.urandom(32), 1, tree3.root, 5, 1, sender=s.aggregator
    )
    assert [e.mode for e in s.client.round_events(s.study_id)] == [2, 1, 2]
    assert s.client.read_round(s.study_id, 2).mode == 1


def test_record_round_merkle_reverts(make_study, ledger_chain):
    # Arrange
    s = make_study(n=2, ttl=600)
    root, init = os.urandom(32), s.initial_model_hash
    c = s.client
    ok = dict(sender=s.aggregator)
    # Act / Assert
    assert (
        _revert(c.record_round_merkle, s.study_id, 1, init, os.urandom(32), 10, root, 2, 1, sender=s.hospitals[0]).error
        == "NotAggregator"
    )
    assert (
        _revert(c.record_round_merkle, os.urandom(32), 1, init, os.urandom(32), 10, root, 2, 1, **ok).error
        == "UnknownStudy"
    )
    assert (
        _revert(c.record_round_merkle, s.study_id, 1, init, b"\x00" * 32, 10, root, 2, 1, **ok).error
        == "ZeroAggregateHash"
    )
    assert (
        _revert(c.record_round_merkle, s.study_id, 2, init, os.urandom(32), 10, root, 2, 1, **ok).error
        == "RoundOutOfOrder"
    )
    assert (
        _revert(c.record_round_merkle, s.study_id, 0, init, os.urandom(32), 10, root, 2, 1, **ok).error
        == "RoundOutOfOrder"
    )
    e = _revert(c.record_round_merkle, s.study_id, 1, os.urandom(32), os.urandom(32), 10, root, 2, 1, **ok)
    assert e.error == "PrevHashMismatch" and e.error_args["expected"] == init
    assert (
        _revert(c.record_round_merkle, s.study_id, 1, init, os.urandom(32), 10, root, 0, 1, **ok).error
        == "NoParticipants"
    )
    assert (
        _revert(c.record_round_merkle, s.study_id, 1, init, os.urandom(32), 10, b"\x00" * 32, 2, 1, **ok).error
        == "ZeroCommitmentsRoot"
    )
    agg = os.urandom(32)
    c.record_round_merkle(s.study_id, 1, init, agg, 10, root, 2, 1, **ok)
    assert (
        _revert(c.record_round_merkle, s.study_id, 1, init, os.urandom(32), 10, root, 2, 1, **ok).error
        == "RoundAlreadyRecorded"
    )
    assert _revert(s.record, 1, prev=init).error == "RoundAlreadyRecorded"  # no second record in the other mode
    ledger_chain.increase_time(700)
    assert (
        _revert(c.record_round_merkle, s.study_id, 2, agg, os.urandom(32), 10, root, 2, 1, **ok).error == "StudyExpired"
    )


# ------------------------------------------------------------------------ journal


def test_journal_merkle_record_round_trips_and_submits(make_study, tmp_path):
    # Arrange
    s = make_study(n=3)
    _cs, _sigs, _leaves, tree = _merkle_round(s, 1)
    journal = Journal(tmp_path)
    sub = RecordSubmitter(client=s.client.with_account(s.aggregator), journal=journal, limit_s=10)
    agg = os.urandom(32)
    # Act
    receipts = sub.record_merkle(s.study_id, 1, s.initial_model_hash, agg, 150, tree.root, 3, 1_000_000)
    # Assert
    assert len(receipts) == 1 and not journal.pending()
    rec = journal.records()[0]
    assert (rec.mode, rec.commitments_root, rec.participants, rec.max_epsilon_micro) == (2, tree.root, 3, 1_000_000)
    assert RoundRecord.from_json(rec.to_json()) == rec
    assert s.client.read_round(s.study_id, 1).commitments_hash == tree.root
    # a journal line written before Merkle mode existed still reads as a per-hospital record
    old = {
        "studyId": "0x" + "11" * 32,
        "round": 1,
        "prevGlobalHash": "0x" + "22" * 32,
        "aggregateHash": "0x" + "33" * 32,
        "totalSamples": 0,
        "commitments": [],
        "signatures": [],
    }
    legacy = RoundRecord.from_json(old)
    assert legacy.mode == 1 and legacy.commitments_root is None and legacy.to_json() == old
    # resubmitting after a crash finds the round on chain
    journal2 = Journal(tmp_path / "again")
    sub2 = RecordSubmitter(client=s.client.with_account(s.aggregator), journal=journal2, limit_s=10)
    assert sub2.record_merkle(s.study_id, 1, s.initial_model_hash, agg, 150, tree.root, 3, 1_000_000) == []
    assert list(journal2.submitted().values())[0]["found_on_chain"] is True
    with pytest.raises(ValueError):
        RoundRecord(
            s.study_id, 2, agg, agg, 1, (), (), mode=2, commitments_root=None, participants=1, max_epsilon_micro=0
        )
