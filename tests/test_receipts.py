"""Round receipts (issue 19, "evidence a coordinator cannot rewrite"): the signed format, a hospital
keeping and re-checking them, the auditor holding them against a rebuilt chain.

The rewrite is the attack as filed: the coordinator rebuilds the chain from
the same deployer nonce (same contract address, so the hospitals' EIP-712
commitments stay valid), raises a budget and drops the last round.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from coordinator.cli import main as cli_main
from fedledger.commitment import RoundCommitment, domain, sign_commitment
from fedledger.hashing import to_hex
from fedledger.receipt import ReceiptError, RoundReceipt, RoundRecord, SignedReceipt
from fl_client.receipts import ChainRewritten, ReceiptKeeper, check_task_round, load_receipts
from fl_client.settings import HospitalSettings
from ledger.audit.events import read_chain_view
from ledger.audit.receipt_checks import check_receipts, evidence_findings
from ledger.chains import Chain, start_chain
from ledger.client import LedgerClient
from ledger.rpc_guard import make_server
from tests.conftest_ledger import ANVIL_AVAILABLE

# -- the format: a fixed vector (docs/HASHES.md section 7) ---------------------------------

VECTOR_KEY = b"\x01" * 32  # signer 0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1
VECTOR_CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
VECTOR_RECORD = RoundRecord.from_get_round(
    b"\x11" * 32, 3, [b"\x22" * 32, b"\x33" * 32, 150, b"\x44" * 32, 3, 1_700_000_000, 42, 1], b"\x55" * 32
)
VECTOR_RECORD_HASH = "0x191f0523483cfcd9d1b71887645e40f7b14bb5240b475fe77b22b9e69284c339"
VECTOR_DIGEST = "0xe53c10f09fcb65eb5b849d386ac04a04e6666aab1c7182577f0ed4d4a379ea3a"
VECTOR_SIGNATURE = (
    "0x68e5dd862c5cee4722835dcc7c725b5ff11161aa3cf0106b1aa071ab0217c108"
    "0653cb707462ab179c1d715796ad318f5ced702435d7209efc16c1cae04160091b"
)


def _vector_receipt() -> RoundReceipt:
    return RoundReceipt(b"\x11" * 32, 3, 42, b"\x66" * 32, VECTOR_RECORD.hash())


def test_round_record_hash_fixed_vector() -> None:
    assert to_hex(VECTOR_RECORD.hash()) == VECTOR_RECORD_HASH
    assert VECTOR_RECORD.hash() != replace(VECTOR_RECORD, tx_hash=b"\x56" * 32).hash()


def test_receipt_digest_fixed_vector_and_eip712_reference() -> None:
    dom = domain(31337, VECTOR_CONTRACT)
    receipt = _vector_receipt()

    digest = receipt.digest(dom)

    assert to_hex(digest) == VECTOR_DIGEST
    m = encode_typed_data(full_message=receipt.typed_data(dom))
    assert keccak(b"\x19" + m.version + m.header + m.body) == digest


def test_signed_receipt_fixed_signature_round_trips_json() -> None:
    account = Account.from_key(VECTOR_KEY)

    signed = SignedReceipt.sign(account, 31337, VECTOR_CONTRACT, _vector_receipt(), "h1")

    assert to_hex(signed.signature) == VECTOR_SIGNATURE
    assert signed.recover() == account.address == "0x1a642f0E3c3aF545E7AcBD38b07251B3990914F1"
    assert SignedReceipt.from_json(json.loads(json.dumps(signed.to_json()))) == signed


def test_altered_receipt_recovers_another_signer_and_bad_ones_are_named() -> None:
    account = Account.from_key(VECTOR_KEY)
    signed = SignedReceipt.sign(account, 31337, VECTOR_CONTRACT, _vector_receipt())

    moved = replace(signed, receipt=replace(signed.receipt, block_number=43))
    other_chain = replace(signed, chain_id=1)
    high_s = replace(signed, signature=signed.signature[:32] + b"\xff" * 32 + signed.signature[64:])

    assert moved.recover() != account.address
    assert other_chain.recover() != account.address
    with pytest.raises(ReceiptError, match="high s"):
        high_s.recover()
    with pytest.raises(ReceiptError, match="lacks blockHash"):
        SignedReceipt.from_json({k: v for k, v in signed.to_json().items() if k != "blockHash"})
    with pytest.raises(ReceiptError, match="not a fedledger-round-receipt-v1"):
        SignedReceipt.from_json({**signed.to_json(), "format": "v0"})


# -- a real chain and its rebuild ------------------------------------------------------------

STUDY = b"\x5a" * 32
INITIAL = b"\x01" * 32


@dataclass
class Built:
    chain: Chain
    client: LedgerClient

    @property
    def w3(self) -> Any:
        return self.chain.w3


def _build(
    rounds: int,
    budget_micro: int,
    chain: Chain | None = None,
    config_hash: bytes = b"\x02" * 32,
    model: bytes | None = None,
) -> Built:
    """Deploy (admin nonce 0), register, consent, record ``rounds`` rounds; a fresh eth_tester chain by default.

    Every round's commitments and aggregate are the same on every build, so the
    hospitals' signatures carry over to a rebuilt chain, as in the attack. ``model``: the initial
    model and every round's aggregate are this hash (a ClientApp test sends that model).
    """
    chain = chain or start_chain("eth_tester", Path("."))
    assert chain is not None
    client = LedgerClient.deploy(chain.w3, chain.admin, backoff_s=0.05)
    hospitals = chain.funded_accounts[2:4]
    now = chain.w3.eth.get_block("latest")["timestamp"]
    client.register_study(
        STUDY,
        config_hash,
        model or INITIAL,
        b"\x03" * 32,
        "test-1.0",
        chain.aggregator.address,
        now + 10**6,
        [h.address for h in hospitals],
        [budget_micro] * len(hospitals),
        1,
    )
    for h in hospitals:
        client.consent(STUDY, h, 10**6)
    prev = model or INITIAL
    for r in range(1, rounds + 1):
        cs = [RoundCommitment(STUDY, r, prev, bytes([r, i]) * 16, 50, 500_000 * r, prev) for i in range(len(hospitals))]
        sigs = [sign_commitment(h, client.domain(), c) for h, c in zip(hospitals, cs)]
        aggregate = model or bytes([0xA0 + r]) * 32
        client.record_round(STUDY, r, prev, aggregate, 100, cs, sigs, sender=chain.aggregator)
        prev = aggregate
    return Built(chain, client)


@pytest.fixture(scope="module")
def honest() -> Iterator[Built]:
    built = _build(rounds=3, budget_micro=2_000_000)
    yield built
    built.chain.stop()


@pytest.fixture(scope="module")
def rebuilt() -> Iterator[Built]:
    """The coordinator's rebuild: same deployer nonce and contract, budgets raised, round 3 dropped."""
    built = _build(rounds=2, budget_micro=5_000_000)
    yield built
    built.chain.stop()


def _keeper(built: Built, tmp_path: Path, index: int = 0) -> ReceiptKeeper:
    account = built.chain.funded_accounts[2 + index]
    return ReceiptKeeper(
        built.w3,
        tmp_path / f"h{index}" / "round_receipts.jsonl",
        account,
        built.w3.eth.chain_id,
        built.client.address,
        STUDY,
        f"hospital_{index}",
    )


def test_rebuild_keeps_the_contract_address(honest: Built, rebuilt: Built) -> None:
    assert rebuilt.client.address == honest.client.address
    assert rebuilt.w3.eth.chain_id == honest.w3.eth.chain_id


def test_hospital_keeps_one_signed_receipt_per_round_append_only(honest: Built, tmp_path: Path) -> None:
    keeper = _keeper(honest, tmp_path)

    first = [keeper.check_and_keep(r) for r in (1, 2, 3)]
    again = keeper.check_and_keep(3)

    kept = load_receipts(keeper.path)
    assert again is None
    assert [s.receipt.round for s in kept] == [1, 2, 3] and kept == first
    assert all(s.recover() == keeper.account.address for s in kept)
    block = honest.w3.eth.get_block(kept[2].receipt.block_number)
    assert kept[2].receipt.block_hash == bytes(block["hash"])


def test_hospital_refuses_a_rebuilt_chain_naming_the_round(honest: Built, rebuilt: Built, tmp_path: Path) -> None:
    keeper = _keeper(honest, tmp_path)
    for r in (1, 2, 3):
        keeper.check_and_keep(r)
    on_rebuilt = replace(keeper, w3=rebuilt.w3)

    with pytest.raises(ChainRewritten, match="receipt of round 3"):
        on_rebuilt.check_and_keep(2)

    assert len(load_receipts(keeper.path)) == 3  # nothing signed about the rebuilt chain


def test_audit_fails_a_rebuilt_chain_naming_round_and_hospital(honest: Built, rebuilt: Built, tmp_path: Path) -> None:
    keepers = [_keeper(honest, tmp_path, i) for i in (0, 1)]
    for k in keepers:
        for r in (1, 2, 3):
            k.check_and_keep(r)
    receipts = [s for k in keepers for s in load_receipts(k.path)]
    view = read_chain_view(rebuilt.w3, rebuilt.client.address, STUDY)

    findings = check_receipts(rebuilt.w3, view, receipts)

    failed = {(f.round, f.hospital) for f in findings if not f.ok}
    assert len(view.rounds) == 2  # what --run-dir alone would have audited
    assert failed == {(r, k.account.address) for r in (1, 2, 3) for k in keepers}
    round3 = next(f for f in findings if f.round == 3 and not f.ok)
    assert "hospital_0" in round3.message or "hospital_1" in round3.message
    assert "round 3" in round3.message


def test_audit_passes_the_honest_chain_and_ignores_receipts_that_are_not_evidence(
    honest: Built, tmp_path: Path
) -> None:
    keeper = _keeper(honest, tmp_path)
    kept = [keeper.check_and_keep(r) for r in (1, 2, 3)]
    stranger = SignedReceipt.sign(Account.from_key(VECTOR_KEY), kept[0].chain_id, kept[0].contract, kept[0].receipt)
    forged = replace(kept[1], receipt=replace(kept[1].receipt, block_number=kept[1].receipt.block_number + 1))
    view = read_chain_view(honest.w3, honest.client.address, STUDY)

    findings = check_receipts(honest.w3, view, [*kept, stranger, forged])

    assert [(f.round, f.ok) for f in findings] == [(1, True), (2, True), (3, True)]
    assert any("not a hospital this study registered" in n for n in view.notices)
    assert any("was signed by" in n for n in view.notices)


def test_audit_reads_receipt_files_and_directories(honest: Built, tmp_path: Path) -> None:
    keeper = _keeper(honest, tmp_path)
    for r in (1, 2):
        keeper.check_and_keep(r)
    keeper.path.open("a").write("not json\n")
    view = read_chain_view(honest.w3, honest.client.address, STUDY)

    findings = evidence_findings(honest.w3, view, [tmp_path], require=True)

    receipt_findings = [f for f in findings if f.check == "receipt"]
    assert [(f.round, f.ok) for f in receipt_findings] == [(1, True), (2, True)]
    assert any("line 3 is not a receipt" in n for n in view.notices)
    assert [f.ok for f in findings if f.check == "evidence_chain"] == [True]  # eth_tester answers no anvil_*


@pytest.mark.slow
@pytest.mark.skipif(not ANVIL_AVAILABLE, reason="anvil not installed (npm ci)")
def test_anvil_snapshot_rewrite_refused_by_hospital_and_failed_by_audit_cli(tmp_path: Path) -> None:
    """The attack on anvil: rounds recorded and receipted over HTTP, evm_revert to before the deployment,
    the same contract redeployed with budgets raised and round 3 dropped; through the guard the cheat
    methods are refused while the receipts still fail the audit."""
    chain = start_chain("anvil", tmp_path / "run")
    assert chain is not None and chain.rpc_url
    guard = make_server(chain.rpc_url, "127.0.0.1", 0)
    threading.Thread(target=guard.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    guard_url = f"http://127.0.0.1:{guard.server_address[1]}"
    try:
        snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]
        honest_chain = _build(rounds=3, budget_micro=2_000_000, chain=chain)
        key = tmp_path / "eth_key"
        key.write_text(chain.funded_accounts[2].key.hex())
        settings = HospitalSettings(
            "hospital_0", 0, 2, 0, "{}", eth_key=str(key), state_dir=str(tmp_path / "state"),
            chain_rpc=guard_url, contract=honest_chain.client.address, simulation=False,
        )  # fmt: skip
        for r in (1, 2, 3):
            check_task_round(settings, to_hex(STUDY), r)
        chain.w3.provider.make_request("evm_revert", [snapshot])
        rebuilt_chain = _build(rounds=2, budget_micro=5_000_000, chain=chain)

        with pytest.raises(ChainRewritten, match="round 3"):
            check_task_round(settings, to_hex(STUDY), 2)
        audit = ["audit", "--contract", rebuilt_chain.client.address, "--study", to_hex(STUDY)]
        audit += ["--receipts", str(tmp_path / "state"), "--require-evidence-chain"]
        direct = cli_main([*audit, "--rpc", chain.rpc_url, "--json", str(tmp_path / "direct.json")])
        guarded = cli_main([*audit, "--rpc", guard_url, "--json", str(tmp_path / "guarded.json")])
    finally:
        guard.shutdown()
        guard.server_close()
        chain.stop()

    assert rebuilt_chain.client.address == honest_chain.client.address
    assert direct == guarded == 1
    failures = json.loads((tmp_path / "direct.json").read_text())["failures"]
    assert {(f["check"], f["round"]) for f in failures} >= {("receipt", 3), ("evidence_chain", None)}
    assert all(f["hospital"] == chain.funded_accounts[2].address for f in failures if f["check"] == "receipt")
    guarded_failures = json.loads((tmp_path / "guarded.json").read_text())["failures"]
    assert {f["check"] for f in guarded_failures} == {"receipt"}
    assert len(load_receipts(tmp_path / "state" / "round_receipts.jsonl")) == 3


@pytest.mark.slow
@pytest.mark.skipif(not ANVIL_AVAILABLE, reason="anvil not installed (npm ci)")
def test_client_app_refuses_evaluation_on_a_rewritten_chain(tmp_path: Path) -> None:
    """The hospital's ClientApp (a deployed node config with state-dir and eth-key): it evaluates rounds 1-3,
    keeping a receipt of each; after the rewrite it refuses round 2's evaluation with chain-rewritten."""
    from flwr.supercore.task_identity import TaskIdentity

    from fedledger.hashing import model_hash
    from fedledger.protocol import protocol_hash
    from fedledger.round_task import RoundTask
    from fl_client.client_app import evaluate_global
    from fl_client.models import build_model, get_arrays
    from tests.test_client_app import context, node_config, round_config, task

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    digest = to_hex(model_hash(initial))

    def cfg(r: int) -> Any:  # a Flower ConfigRecord
        return round_config(digest, **{"study-id": to_hex(STUDY), "server-round": r})

    registered = protocol_hash(RoundTask.from_wire(dict(cfg(1))))
    chain = start_chain("anvil", tmp_path / "run")
    assert chain is not None and chain.rpc_url
    try:
        snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]
        honest_chain = _build(3, 2_000_000, chain, config_hash=registered, model=model_hash(initial))
        key = tmp_path / "eth_key"
        key.write_text(chain.funded_accounts[2].key.hex())
        extra = {"chain-rpc": chain.rpc_url, "contract": honest_chain.client.address}
        nc = node_config(**extra, **{"eth-key": str(key), "state-dir": str(tmp_path / "state")})
        before = [evaluate_global(task(initial, cfg(r), "evaluate"), context(nc)) for r in (1, 2, 3)]
        chain.w3.provider.make_request("evm_revert", [snapshot])
        _build(2, 5_000_000, chain, config_hash=registered, model=model_hash(initial))

        after = evaluate_global(task(initial, cfg(2), "evaluate"), context(nc))
    finally:
        chain.stop()

    assert all("metrics" in reply.content.metric_records for reply in before)
    refusal = after.content.config_records["refusal"]
    assert refusal["code"] == "chain-rewritten" and "round 3" in refusal["reason"]
    kept = load_receipts(tmp_path / "state" / "round_receipts.jsonl")
    assert [s.receipt.round for s in kept] == [1, 2, 3]
    assert {s.hospital for s in kept} == {"h0"} and {s.recover() for s in kept} == {chain.funded_accounts[2].address}


def test_audit_cli_refuses_receipts_with_follow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        ["audit", "--rpc", "http://127.0.0.1:9", "--contract", VECTOR_CONTRACT, "--study", to_hex(STUDY)]
        + ["--follow", "--max-polls", "1", "--receipts", str(tmp_path)]
    )

    assert code == 2
    assert "not with --follow" in capsys.readouterr().out
