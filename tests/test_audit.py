"""The auditor: an honest study audits clean; every tamper is caught, naming the round and hospital.

Studies are built directly (no Flower): CKKS keys on the smallest preset, toy
updates encrypted by each hospital, summed with the public context, manifests
written with fl_server.round_protocol.write_manifest, commitments signed by the
hospitals and recorded through ledger.client on an in-process eth_tester chain,
checkpoints decrypted and released.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fedledger import ckks
from fedledger.hashing import model_hash, sha256, to_hex
from fedledger.model_io import flatten, unflatten
from fedledger.wire import ModelPayload
from fl_server.artifact_store import ArtifactStore
from fl_server.round_protocol import write_manifest
from ledger import audit as A
from tests.audit_builders import (
    deployed_ledger,
    register_consenting,
    release_signatures,
    signed_reply,
    start_hash,
)
from tests.eip712_by_hand import commitment_digest_independent, domain_separator

ZERO = b"\x00" * 32


# ================================================================ builder


@dataclass
class BuiltStudy:
    run_dir: Path
    study_id: bytes
    hospitals: list[str]  # addresses, index = hospital index
    names: list[str]
    client: Any
    chain: Any
    start_block: int = 0
    cached: A.ChainView | None = None

    def view(self, fresh: bool = False) -> A.ChainView:
        """The chain view, read once right after the build (eth_tester log scans grow with the chain)."""
        if fresh or self.cached is None:
            self.cached = A.read_chain_view(
                self.chain.w3, self.client.address, self.study_id, from_block=self.start_block
            )
        return copy.deepcopy(self.cached)

    def context_bytes(self) -> bytes:
        return (self.run_dir / "keys" / "ckks" / ckks.AGGREGATOR_NAME).read_bytes()

    def audit(self, store: Path | None = None, view: A.ChainView | None = None, **kw) -> A.AuditResult:
        store = self.run_dir if store is None else store
        ctx = (store / "keys" / "ckks" / ckks.AGGREGATOR_NAME).read_bytes()
        return A.audit(view or self.view(), store, ctx, **kw)


_counter = [0]


def build_study(
    chain,
    client,
    root: Path,
    *,
    n_hospitals: int = 3,
    n_rounds: int = 3,
    seed: int = 0,
    n_params: int = 8,
    omit: tuple[int, int] | None = None,
    extra: int | None = None,
    extra_in_manifest: bool = True,
    release: bool = True,
    budget: float = 10.0,
    other_start: tuple[int, int] | None = None,
) -> BuiltStudy:
    """A small honest study (or one whose aggregator cheats in one round; ``other_start`` = (round, hospital
    index): that hospital is given another starting model in that round)."""
    _counter[0] += 1
    rng = np.random.default_rng(seed)
    run_dir = root / f"study_{_counter[0]}"
    keys = ckks.create_keys(run_dir / "keys" / "ckks", ckks.preset("ckks_n4096"))
    sec = ckks.load_secret_context(keys.secret_context)
    pub = ckks.load_aggregator_context(keys.aggregator_context)
    store = ArtifactStore(run_dir)
    admin, aggregator = chain.admin, chain.aggregator
    accounts = chain.funded_accounts[2 : 2 + n_hospitals]
    names = [f"hospital_{i}" for i in range(n_hospitals)]
    template = {
        "b": np.zeros(2, np.float32),
        "w": rng.normal(size=(n_params - 2) // 2 * 2).astype(np.float32).reshape(-1, 2),
    }
    init_hash = model_hash(template)
    study_id = sha256(b"audit-test" + seed.to_bytes(4, "big") + _counter[0].to_bytes(4, "big"))
    start_block = register_consenting(
        chain, client, study_id, init_hash, keys.fingerprint.read_text().strip(), accounts, budget
    )
    dom = client.domain()
    prev = start = init_hash
    n = flatten(template).size
    for r in range(1, n_rounds + 1):
        replies, blobs_all = [], []
        for i, acct in enumerate(accounts):
            given = sha256(b"another model" + start) if other_start == (r, i) else start
            replies.append(signed_reply(sec, rng, n, dom, study_id, r, prev, i, acct, given))
            blobs_all.append(replies[-1].payload.ciphertexts)
        summed = [b for j, b in enumerate(blobs_all) if not (omit and omit[0] == r and omit[1] == j)]
        listed = list(replies)
        if extra == r:
            intruder = ckks.encrypt_update(sec, rng.normal(size=n), 7.0)
            summed.append(intruder)
            if extra_in_manifest:
                listed.append(
                    SimpleNamespace(
                        hospital="intruder",
                        node_id=999,
                        num_examples=0,
                        payload=ModelPayload(ciphertexts=intruder),
                        commitment=None,
                    )
                )
        agg = ModelPayload(
            ciphertexts=ckks.sum_ciphertexts(pub, summed), total_weight=float(sum(x.num_examples for x in replies))
        )
        manifest = write_manifest(store, to_hex(study_id), r, to_hex(prev), agg, listed)
        manifest["aggregate"]["total_weight"] = int(sum(x.num_examples for x in replies))
        store.write_round(manifest)
        client.record_round(
            study_id,
            r,
            prev,
            agg.digest(),
            int(agg.total_weight),
            [x.c for x in replies],
            [x.sig for x in replies],
            sender=aggregator,
        )
        if release:
            arrays = unflatten(ckks.decrypt_update(sec, agg.ciphertexts, n, agg.total_weight), template)
            store.write_checkpoint(r, arrays)
            mh = model_hash(arrays)
            client.release_model(
                study_id, r, mh, release_signatures(client, accounts[:1], study_id, r, mh), sender=admin
            )
        prev, start = agg.digest(), start_hash(sec, agg, template)
    # The secret context stays with the hospitals; the run dir keeps only the public one for the auditor.
    keys.secret_context.unlink()
    spec = {
        "format": "fedledger-study-v1",
        "study_id": to_hex(study_id),
        "run_dir": str(run_dir),
        "keys": {"aggregator_context": str(keys.aggregator_context), "fingerprint": keys.fingerprint_hex},
        "hospitals": [{"id": nm, "address": a.address} for nm, a in zip(names, accounts)],
        "chain": {
            "backend": chain.backend,
            "rpc_url": chain.rpc_url,
            "chain_id": client.chain_id,
            "contract": client.address,
            "deploy_block": start_block,
        },
    }
    (run_dir / "study.json").write_text(json.dumps(spec, indent=1))
    built = BuiltStudy(run_dir, study_id, [a.address for a in accounts], names, client, chain, start_block)
    built.view()
    return built


# ================================================================ fixtures


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return deployed_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def honest(ledger) -> BuiltStudy:
    return build_study(ledger.chain, ledger.client, ledger.root, seed=0)


@pytest.fixture(scope="module")
def honest_result(honest) -> A.AuditResult:
    return honest.audit()


def copy_run(study: BuiltStudy, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(study.run_dir, dst)
    return dst


def fails(result: A.AuditResult) -> list[tuple[str, int | None, str | None]]:
    return [(f.check, f.round, f.hospital) for f in result.failures]


# ================================================================ honest


def test_honest_study_audits_clean(honest_result):
    # Act happened in the fixture; Assert
    assert honest_result.ok, fails(honest_result)
    j = honest_result.to_json()
    assert j["ok"] is True and j["rounds_on_chain"] == 3
    for check in (
        "hash_chain",
        "signature",
        "consent",
        "budget",
        "samples",
        "privacy",
        "manifest",
        "participants",
        "blobs",
        "update_hash",
        "resum",
        "checkpoint",
        "context",
    ):
        assert j["checks"][check]["pass"] >= 1 and j["checks"][check]["fail"] == 0, check
    assert j["checks"]["resum"]["pass"] == 3 and j["checks"]["checkpoint"]["pass"] == 3 + 3  # file + release quorum
    # labels learnt from the manifests; epsilon per hospital per round reported
    assert {h["label"] for h in j["hospitals"].values()} == {"hospital_0", "hospital_1", "hospital_2"}
    assert all(len(h["epsilon"]) == 3 for h in j["hospitals"].values())


@pytest.mark.parametrize(
    "kw",
    [
        dict(seed=1, n_hospitals=2, n_rounds=4),
        dict(seed=2, n_hospitals=4, n_rounds=2, n_params=2100),  # 2 ciphertexts/update
        dict(seed=3, n_hospitals=1, n_rounds=2, release=False),
    ],
)
def test_honest_studies_have_no_false_positives(ledger, kw):
    study = build_study(ledger.chain, ledger.client, ledger.root, **kw)
    result = study.audit()
    assert result.ok, fails(result)
    chain_only = A.audit(study.view(), reference_signatures=True)
    assert chain_only.ok and not chain_only.artifacts


# ================================================================ artifact tampering


def test_flipped_ciphertext_byte_is_caught(honest, tmp_path):
    run = copy_run(honest, tmp_path)
    m = json.loads((run / "artifacts/rounds/round_00002.json").read_text())
    blob = run / "artifacts/blobs" / m["updates"][1]["blobs"][0]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))

    result = honest.audit(store=run)

    assert not result.ok
    h1 = honest.hospitals[1]
    f = fails(result)
    assert ("blobs", 2, h1) in f and ("update_hash", 2, h1) in f
    assert any(c == "resum" and r == 2 for c, r, _ in f)
    assert {r for _, r, _ in f} == {2}


def test_update_left_out_of_the_sum_is_caught(ledger):
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=4, omit=(2, 1))

    result = study.audit()

    assert not result.ok
    assert fails(result) == [("resum", 2, study.hospitals[1])]
    assert "left out" in result.failures[0].message


def test_extra_update_added_is_caught(ledger):
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=5, extra=3)

    result = study.audit()

    f = fails(result)
    assert ("participants", 3, "intruder") in f and ("resum", 3, "intruder") in f
    assert {r for _, r, _ in f} == {3}


def test_extra_update_hidden_from_manifest_is_caught(ledger):
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=6, extra=1, extra_in_manifest=False)

    result = study.audit()

    assert fails(result) == [("resum", 1, None)]


def test_altered_checkpoint_is_caught(honest, tmp_path):
    run = copy_run(honest, tmp_path)
    store = ArtifactStore(run)
    arrays = store.read_checkpoint(3)
    arrays["w"] = arrays["w"].copy()
    arrays["w"].flat[0] += 1e-3
    store.write_checkpoint(3, arrays)

    result = honest.audit(store=run)

    assert fails(result) == [("checkpoint", 3, None)]


def test_artifact_store_from_another_study_is_caught(ledger, honest):
    other = build_study(ledger.chain, ledger.client, ledger.root, seed=7)

    result = honest.audit(store=other.run_dir)

    f = fails(result)
    assert ("context", None, None) in f
    assert {r for c, r, _ in f if c == "manifest"} == {1, 2, 3}
    assert any("different study" in x.message for x in result.failures if x.check == "manifest")


def test_round_missing_from_the_chain_is_named(honest):
    view = honest.view()
    view.rounds = [rv for rv in view.rounds if rv.round != 2]

    result = honest.audit(view=view)

    f = fails(result)
    assert ("hash_chain", 2, None) in f and ("hash_chain", 3, None) in f
    assert "round 2 is missing" in next(x.message for x in result.failures if x.round == 2 and x.check == "hash_chain")
    assert ("manifest", 2, None) in f  # in the store but not on chain


def test_store_ahead_of_a_shorter_chain(ledger, honest):
    short = build_study(ledger.chain, ledger.client, ledger.root, seed=8, n_rounds=2)
    view = short.view()

    result = A.audit(view, honest.run_dir, short.context_bytes())

    assert ("manifest", 3, None) in fails(result)


# ================================================================ chain-view checks (pure)


def test_forged_signature_and_policy_violations_are_named(honest):
    view = honest.view()
    rv = view.rounds[0]
    h0, h1, h2 = honest.hospitals
    cv0 = rv.commitments[0]
    rv.commitments[0] = replace(cv0, signature=rv.commitments[1].signature)  # someone else's signature
    view.hospitals[h1].events.append((rv.block - 1, 0, "withdrawn"))  # withdrew before round 1
    view.hospitals[h2].budget_micro = 1  # budget tiny
    view.rounds[2].commitments[0] = replace(
        view.rounds[2].commitments[0], commitment=replace(view.rounds[2].commitments[0].commitment, epsilon_micro=0)
    )  # epsilon decreased

    f = fails(A.audit(view))

    assert ("signature", 1, h0) in f
    assert ("consent", 1, h1) in f
    assert ("budget", 1, h2) in f and ("privacy", 1, h2) in f
    assert ("privacy", 3, h0) in f and ("signature", 3, h0) in f


def test_signer_verifier_fast_path_agrees_with_reference(honest):
    view = honest.view()
    fast = A.SignerVerifier(view.domain)
    ref = A.SignerVerifier(view.domain, reference=True)
    for rv in view.rounds:
        for cv in rv.commitments:
            assert (
                fast.recover(cv.commitment, cv.signature, cv.hospital)
                == ref.recover(cv.commitment, cv.signature, cv.hospital)
                == cv.hospital
            )
    cv = view.rounds[0].commitments[0]
    assert (
        fast.digest(cv.commitment)
        == commitment_digest_independent(domain_separator(view.domain), cv.commitment)
        == honest.client.onchain_digest(cv.commitment)
    )


def test_secret_context_is_refused(tmp_path):
    keys = ckks.create_keys(tmp_path / "k", ckks.preset("ckks_n4096"))
    with pytest.raises(ckks.KeyHandlingError):
        A.load_public_context(keys.secret_context.read_bytes())


# ================================================================ CLI and reports


def test_reports_are_written(honest_result, tmp_path):
    from ledger.audit.report import write_html, write_json

    write_json(honest_result, tmp_path / "a.json")
    write_html(honest_result, tmp_path / "a.html", alert_share=0.8)

    assert json.loads((tmp_path / "a.json").read_text())["ok"] is True
    html = (tmp_path / "a.html").read_text()
    assert "data:image/png;base64," in html and "PASS" in html


@pytest.fixture(scope="module")
def anvil_study(tmp_path_factory):
    from ledger.chains import ChainError, start_chain
    from ledger.client import LedgerClient

    root = tmp_path_factory.mktemp("anvil")
    try:
        chain = start_chain("anvil", root / "run")
    except ChainError as exc:  # pragma: no cover - anvil comes from npm ci
        pytest.skip(f"anvil not available: {exc}")
    try:
        client = LedgerClient.deploy(chain.w3, chain.admin)
        study = build_study(chain, client, root, seed=9, n_rounds=2)
    finally:
        chain.stop()
    run = study.run_dir
    shutil.move(str(root / "run" / "chain"), str(run / "chain"))  # the state file lives in the run dir
    return study


def test_cli_exit_codes_on_honest_and_tampered_run_dir(anvil_study, tmp_path):
    from coordinator.cli import main

    honest_rc = main(["audit", "--run-dir", str(anvil_study.run_dir)])
    assert honest_rc == 0
    verdict = json.loads((anvil_study.run_dir / "audit.json").read_text())
    assert verdict["ok"] is True and (anvil_study.run_dir / "audit.html").exists()

    tampered = copy_run(anvil_study, tmp_path)
    ckpt = ArtifactStore(tampered).read_checkpoint(2)
    ckpt["b"] = ckpt["b"] + 1
    ArtifactStore(tampered).write_checkpoint(2, ckpt)

    rc = main(["audit", "--run-dir", str(tampered), "--json", str(tmp_path / "t.json")])

    assert rc == 1
    v = json.loads((tmp_path / "t.json").read_text())
    assert v["ok"] is False and [(f["check"], f["round"]) for f in v["failures"]] == [("checkpoint", 2)]


def test_follow_mode_prints_rounds_and_alerts(anvil_study, capsys):
    from coordinator.cli import main

    rc = main(
        [
            "audit",
            "--run-dir",
            str(anvil_study.run_dir),
            "--follow",
            "--max-polls",
            "2",
            "--poll-interval",
            "0.05",
            "--alert-share",
            "0.05",
        ]
    )

    out = capsys.readouterr().out
    assert rc == 1  # the alert share is exceeded by every hospital
    assert "round 1" in out and "round 2" in out and "ALERT" in out


def test_follow_without_from_block_does_not_flag_the_constructors_role_grant():
    """`--follow --rpc` without --from-block: the deployment's own RoleGranted is not an unexpected event."""
    from ledger.audit.follow import _role_notices

    class Client:
        def events(self, name, study, from_block):
            def ev(block):
                return {"blockNumber": block, "args": {"role": b"\x00" * 32, "account": f"0x{block:040x}"}}

            return {"RoleGranted": [ev(1), ev(7)], "RoleRevoked": [ev(9)]}[name]

    assert [n.split(":")[0] for n in _role_notices(Client(), 0)] == ["block 7", "block 9"]
    assert [n.split(":")[0] for n in _role_notices(Client(), 7)] == ["block 9"]


def test_audit_run_dir_api(anvil_study):
    from ledger.audit import audit_run_dir

    verdict = audit_run_dir(anvil_study.run_dir)

    assert verdict["ok"] is True and verdict["checks"]["resum"]["pass"] == 2


@pytest.mark.slow
def test_real_simulated_study_audits_clean_and_tamper_is_caught(tmp_path):
    import subprocess
    import sys

    from coordinator.cli import main

    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "num_rounds=2", f"hydra.run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((run / "audit.json").read_text())["ok"] is True

    m = json.loads((run / "artifacts/rounds/round_00002.json").read_text())
    blob = run / "artifacts/blobs" / m["updates"][0]["blobs"][0]
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF
    blob.write_bytes(bytes(data))

    assert main(["audit", "--run-dir", str(run), "--json", str(tmp_path / "t.json")]) == 1
    failed = json.loads((tmp_path / "t.json").read_text())["failures"]
    assert {f["round"] for f in failed} == {2} and {"blobs", "update_hash"} <= {f["check"] for f in failed}
