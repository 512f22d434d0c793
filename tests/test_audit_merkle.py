"""Merkle-mode studies end to end: the server's LedgerCommit writes leaves + proofs and records the root;
the auditor checks every leaf, and a leaf dropped, added or altered is caught naming round and hospital.

Small CKKS study (ckks_n4096), no Flower, in-process eth_tester chain.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fedledger import ckks
from fedledger.commitment import RoundCommitment, epsilon_to_micro, sign_commitment
from fedledger.hashing import model_hash, sha256, to_hex
from fedledger.merkle import MerkleTree
from fedledger.model_io import flatten
from fedledger.wire import ModelPayload
from fl_server.artifact_store import ArtifactStore
from fl_server.ledger_commit import CommitmentRejected, LedgerCommit
from fl_server.round_protocol import write_manifest
from ledger import audit as A
from tests.audit_builders import deployed_ledger, register_consenting, signed_reply, start_hash


def build_merkle_study(
    chain,
    client,
    root: Path,
    *,
    n_hospitals: int = 4,
    n_rounds: int = 2,
    mode: str = "merkle",
    seed: int = 7,
    other_start: tuple[int, int] | None = None,
) -> SimpleNamespace:
    """``other_start`` = (round, hospital index): that hospital is given another starting model in that round."""
    rng = np.random.default_rng(seed)
    run_dir = root / f"merkle_{mode}_{seed}"
    keys = ckks.create_keys(run_dir / "keys" / "ckks", ckks.preset("ckks_n4096"))
    sec = ckks.load_secret_context(keys.secret_context)
    pub = ckks.load_aggregator_context(keys.aggregator_context)
    store = ArtifactStore(run_dir)
    accounts = chain.funded_accounts[2 : 2 + n_hospitals]
    names = [f"hospital_{i}" for i in range(n_hospitals)]
    template = {"w": rng.normal(size=6).astype(np.float32)}
    init_hash = model_hash(template)
    study_id = sha256(b"merkle-audit" + seed.to_bytes(4, "big") + mode.encode())
    start_block = register_consenting(
        chain, client, study_id, init_hash, keys.fingerprint.read_text().strip(), accounts, 10.0
    )
    commit = LedgerCommit(
        SimpleNamespace(),
        client.with_account(chain.aggregator),
        to_hex(study_id),
        {nm: a.address for nm, a in zip(names, accounts)},
        run_dir,
        30.0,
        mode=mode,
        merkle_threshold=2,
    )
    dom = client.domain()
    prev = start = init_hash
    n = flatten(template).size
    receipts = []
    for r in range(1, n_rounds + 1):
        given = [sha256(b"another model" + start) if other_start == (r, i) else start for i in range(n_hospitals)]
        replies = [
            signed_reply(sec, rng, n, dom, study_id, r, prev, i, acct, given[i]) for i, acct in enumerate(accounts)
        ]
        agg = ModelPayload(
            ciphertexts=ckks.sum_ciphertexts(pub, [x.payload.ciphertexts for x in replies]),
            total_weight=float(sum(x.num_examples for x in replies)),
        )
        # what the server does: the policy check a Merkle round needs, manifest, then commit
        seen: set[str] = set()
        for x in replies:
            commit._check_policy(
                x.hospital,
                RoundCommitment(study_id, r, prev, ZERO, x.num_examples, int(x.commitment["epsilon-micro"]), ZERO),
                seen,
            )
        manifest = write_manifest(store, to_hex(study_id), r, to_hex(prev), agg, replies)
        receipts.append(commit.commit_round(r, manifest))
        prev, start = agg.digest(), start_hash(sec, agg, template)
    keys.secret_context.unlink()
    view = A.read_chain_view(chain.w3, client.address, study_id, from_block=start_block)
    return SimpleNamespace(
        run_dir=run_dir,
        study_id=study_id,
        accounts=accounts,
        names=names,
        view=view,
        receipts=receipts,
        commit=commit,
        ctx=keys.aggregator_context.read_bytes(),
    )


ZERO = b"\x00" * 32


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return deployed_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def study(env):
    return build_merkle_study(env.chain, env.client, env.root)


def run_audit(study, store: Path | None = None, view=None) -> A.AuditResult:
    return A.audit(view or copy.deepcopy(study.view), store or study.run_dir, study.ctx)


def fails(result):
    return sorted({(f.check, f.round, f.hospital) for f in result.failures}, key=str)


def tampered_copy(study, tmp_path: Path, r: int, edit) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(study.run_dir, dst)
    p = dst / "artifacts" / "rounds" / f"round_{r:05d}.json"
    m = json.loads(p.read_text())
    edit(m)
    p.write_text(json.dumps(m))
    return dst


# ------------------------------------------------------------------------ honest


def test_server_records_root_and_writes_leaves(study, env):
    m = ArtifactStore(study.run_dir).read_round(1)
    assert m["ledger"]["mode"] == "merkle" and m["ledger"]["participants"] == 4
    root = bytes.fromhex(m["ledger"]["commitments_root"][2:])
    assert env.client.read_round(study.study_id, 1).commitments_hash == root
    assert env.client.read_round(study.study_id, 1).mode == 2
    assert MerkleTree([u["merkle"]["leaf"] for u in m["updates"]]).root == root
    # every manifest leaf is a member according to the contract itself
    for u in m["updates"]:
        c = RoundCommitment.from_json(u["merkle"]["commitment"])
        sig = bytes.fromhex(u["commitment"]["signature"][2:])
        assert env.client.merkle_member(study.study_id, 1, c, sig, u["merkle"]["proof"]) == u["merkle"]["address"]
    assert all(r["mode"] == "merkle" and r["gas_used"] < 150_000 for r in study.receipts)
    recs = study.commit.journal.records()
    assert [r.mode for r in recs] == [2, 2] and not study.commit.journal.pending()


def test_honest_merkle_study_audits_clean(study):
    result = run_audit(study)
    assert result.ok, fails(result)
    merkle = [f for f in result.findings if f.check == "merkle"]
    assert [f.round for f in merkle] == [1, 2] and all(f.ok for f in merkle)
    sig = [f for f in result.findings if f.check == "signature" and f.round == 1]
    assert sig and not sig[0].skipped and "4 signatures" in sig[0].message
    assert [f for f in result.findings if f.check == "resum" and f.ok and not f.skipped]
    eps = result.epsilon
    assert eps[study.accounts[3].address][2] == pytest.approx(0.95)


def test_chain_only_audit_skips_merkle_leaves(study):
    result = A.audit(copy.deepcopy(study.view))
    assert result.ok
    assert any(f.skipped and f.check == "signature" for f in result.findings)
    assert any("Merkle-mode rounds" in n for n in result.view.notices)


# ------------------------------------------------------------------------ tamper


def test_altered_leaf_is_caught(study, tmp_path):
    def edit(m):
        m["updates"][1]["merkle"]["commitment"]["epsilonMicro"] = 1  # understate a hospital's epsilon

    result = run_audit(study, tampered_copy(study, tmp_path, 2, edit))
    addr = study.accounts[1].address
    got = fails(result)
    assert ("merkle", 2, addr) in got and ("signature", 2, addr) in got
    assert all(r == 2 for _, r, _ in got)


def test_dropped_leaf_is_caught(study, tmp_path):
    def edit(m):
        del m["updates"][2]["merkle"]  # the update was summed but its leaf withheld

    result = run_audit(study, tampered_copy(study, tmp_path, 1, edit))
    got = fails(result)
    assert ("merkle", 1, "hospital_2") in got  # named
    assert any(f.check == "merkle" and f.round == 1 and "3 leaves" in f.message for f in result.failures)


def test_dropped_update_and_leaf_is_caught(study, tmp_path):
    def edit(m):
        m["updates"].pop(0)  # hospital_0 vanishes from the manifest altogether

    result = run_audit(study, tampered_copy(study, tmp_path, 1, edit))
    msgs = [f.message for f in result.failures if f.check == "merkle" and f.round == 1]
    assert any("3 leaves" in x and "chain records 4" in x for x in msgs)
    assert ("resum", 1, None) in fails(result) or any(f.check == "resum" for f in result.failures)


def test_added_leaf_is_caught(study, env, tmp_path):
    # an intruder signs a valid-looking commitment and the aggregator slips it into the manifest
    intruder = env.chain.funded_accounts[9]
    dom = env.client.domain()

    def edit(m):
        u = copy.deepcopy(m["updates"][0])
        c = RoundCommitment.from_json(u["merkle"]["commitment"])
        sig = sign_commitment(intruder, dom, c)
        u["hospital"] = "intruder"
        u["commitment"].update({"hospital": "intruder", "address": intruder.address, "signature": "0x" + sig.hex()})
        from fedledger.commitment import commitment_digest
        from fedledger.merkle import commitment_leaf

        u["merkle"].update(
            {"address": intruder.address, "leaf": to_hex(commitment_leaf(intruder.address, commitment_digest(dom, c)))}
        )
        m["updates"].append(u)

    result = run_audit(study, tampered_copy(study, tmp_path, 2, edit))
    got = fails(result)
    assert ("merkle", 2, intruder.address) in got  # proof does not verify, named
    assert ("registered", 2, intruder.address) in got
    assert any(f.check == "merkle" and "5 leaves" in f.message for f in result.failures)


def test_over_budget_leaf_is_caught_by_the_auditor(env, tmp_path):
    # A Merkle round cannot enforce budgets on chain: record one with an over-budget leaf and audit it.
    s = build_merkle_study(env.chain, env.client, tmp_path, n_hospitals=2, n_rounds=1, seed=11)
    p = s.run_dir / "artifacts" / "rounds" / "round_00001.json"
    m = json.loads(p.read_text())
    assert m["ledger"]["participants"] == 2
    view = copy.deepcopy(s.view)
    view.hospitals[s.accounts[0].address].budget_micro = 100  # as if registered with a tiny budget
    result = run_audit(s, view=view)
    assert ("budget", 1, s.accounts[0].address) in fails(result)
    assert ("privacy", 1, s.accounts[0].address) in fails(result)


def test_server_policy_check_refuses_what_the_contract_would(study, env):
    commit = study.commit
    c = RoundCommitment(study.study_id, 3, ZERO, ZERO, 1, epsilon_to_micro(11.0), ZERO)
    with pytest.raises(CommitmentRejected, match="over its budget"):
        commit._check_policy("hospital_0", c, set())
    c_low = RoundCommitment(study.study_id, 3, ZERO, ZERO, 1, 1, ZERO)
    with pytest.raises(CommitmentRejected, match="below its last"):
        commit._check_policy("hospital_0", c_low, set())
    ok = RoundCommitment(study.study_id, 3, ZERO, ZERO, 1, epsilon_to_micro(5.0), ZERO)
    seen: set[str] = set()
    commit._check_policy("hospital_0", ok, seen)
    with pytest.raises(CommitmentRejected, match="already contributed"):
        commit._check_policy("hospital_0", ok, seen)
    assert commit.uses_merkle(3) and not LedgerCommit.uses_merkle(SimpleNamespace(mode="auto", merkle_threshold=32), 32)
    assert LedgerCommit.uses_merkle(SimpleNamespace(mode="auto", merkle_threshold=32), 33)


def test_leaf_above_the_registered_cohort_size_is_caught_by_the_auditor(study):
    # A Merkle round cannot check sample counts against the cap on chain: the auditor does, naming round and hospital.
    view = copy.deepcopy(study.view)
    addr = study.accounts[2].address
    view.hospitals[addr].max_samples = 4  # as if it had consented with a cohort of 4 (every leaf claims 5 or more)
    result = run_audit(study, view=view)
    got = fails(result)
    assert ("merkle", 1, addr) in got and ("merkle", 2, addr) in got
    assert all(h == addr for _, _, h in got)
    assert any("above the cohort size of 4" in f.message for f in result.failures)
    assert study.view.hospitals[addr].max_samples == 10**6  # what its consent registered on chain
