"""Protocol binding: the study protocol's hash (configHash v4), the hospital's refusal, the auditor's check."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, fields, replace

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message

from fedledger.config import PrivacyConfig
from fedledger.hashing import model_hash, to_hex
from fedledger.protocol import PROTOCOL_FIELDS, protocol_bytes, protocol_hash
from fedledger.round_task import RoundMessageError, RoundTask
from fl_client import hospital_runtime
from fl_client.chain_view import get_study_calldata
from fl_client.client_app import evaluate_global, train
from fl_client.settings import SettingsError, from_node_config
from tests.test_audit import honest, ledger  # noqa: F401
from tests.test_client_app import context, initial, node_config, round_config, task, task_identity  # noqa: F401

STUDY = "0x" + "11" * 32
DP = {"enabled": True, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "accountant": "rdp"}

# the vector of docs/HASHES.md section 3a (the layout test below writes every field out)
VECTOR_TASK = RoundTask.from_wire(
    dict(round_config("", DP, **{"server-round": 0, "local-epochs": 2, "lr": 1.0, "num-rounds": 3}))
)
VECTOR_HASH = "0x809823436dfadc013a220173a6a0499c8f76a4bc7f845da57ba27ccc27914bbe"


# -- the hash -------------------------------------------------------------------------


def test_fixed_vector():
    assert to_hex(protocol_hash(VECTOR_TASK)) == VECTOR_HASH
    assert to_hex(hashlib.sha256(protocol_bytes(VECTOR_TASK)).digest()) == VECTOR_HASH


def test_layout_by_hand():
    """docs/HASHES.md section 3a, written out independently of fedledger.protocol."""

    def name(n: str) -> bytes:
        return bytes([len(n)]) + n.encode()

    def text(s: str) -> bytes:
        return b"\x04" + struct.pack("<H", len(s)) + s.encode()

    def f64(x: float) -> bytes:
        return b"\x03" + struct.pack("<d", x)

    def i64(x: int) -> bytes:
        return b"\x02" + struct.pack("<q", x)

    def flag(b: bool) -> bytes:
        return b"\x01" + bytes([b])

    body = [
        name("study-id") + b"\x05" + struct.pack("<H", 32) + b"\x11" * 32,
        name("model") + text("logreg"),
        name("hidden") + i64(0),
        name("seed") + i64(0),
        name("local-epochs") + i64(2),
        name("batch-size") + i64(32),
        name("lr") + f64(1.0),
        name("momentum") + f64(0.0),
        name("weight-decay") + f64(0.0),
        name("num-rounds") + i64(3),
        name("strategy") + text("fedavg"),
        name("proximal-mu") + f64(0.0),
        name("on-bad-aggregate") + text("keep-previous"),
        name("release-quorum") + i64(1),
        name("encrypted") + flag(False),
        name("context-fingerprint") + b"\x05" + struct.pack("<H", 0),
        name("privacy.enabled") + flag(True),
        name("privacy.noise_multiplier") + f64(1.1),
        name("privacy.target_epsilon") + b"\x00",
        name("privacy.delta") + b"\x00",
        name("privacy.max_grad_norm") + f64(1.0),
        name("privacy.accountant") + text("rdp"),
        name("privacy.grad_sample_mode") + text("ew"),
        name("privacy.secure_mode") + flag(False),
        name("privacy.budget") + b"\x00",
        name("privacy.noise_source") + text("seeded"),
        name("task") + text("binary"),
        name("num-outputs") + i64(1),
        name("model-target") + b"\x00",  # a built-in model: the own-model fields are absent
        name("model-kwargs") + b"\x00",
        name("model-source-hash") + b"\x00",
        name("model-fix-batchnorm") + b"\x00",
        name("server-lr") + f64(0.0),
        name("server-momentum") + f64(0.0),
        name("server-beta1") + f64(0.0),
        name("server-beta2") + f64(0.0),
        name("server-tau") + f64(0.0),
        name("personalisation-epochs") + i64(0),
        name("task-options") + text(""),
        name("privacy.stats_per_site") + flag(False),
    ]
    expected = b"FEDLEDGER-PROTOCOL-v4" + struct.pack("<H", len(body)) + b"".join(body)
    assert protocol_bytes(VECTOR_TASK) == expected


def test_every_privacy_setting_is_in_the_protocol():
    """A new PrivacyConfig field must be placed in (or deliberately left out of) a new protocol version."""
    assert {n.removeprefix("privacy.") for n, _, _ in PROTOCOL_FIELDS if n.startswith("privacy.")} == {
        f.name for f in fields(PrivacyConfig)
    }


@pytest.mark.parametrize(
    "change",
    [
        dict(privacy=dict(DP, noise_multiplier=0.5)),
        dict(privacy=dict(DP, max_grad_norm=10.0)),
        dict(privacy=dict(DP, noise_multiplier=None, target_epsilon=8.0)),
        dict(privacy=dict(DP, delta=1e-3)),
        dict(privacy=dict(DP, accountant="prv")),
        dict(privacy={"enabled": False}),
        dict(model="mlp", hidden=32),
        dict(lr=0.5),
        dict(batch_size=64),
        dict(local_epochs=5),
        dict(num_rounds=30),
        dict(strategy="fedmedian"),
        dict(strategy="fedprox", proximal_mu=0.01),
        dict(strategy="fedadam", server_lr=0.1, server_beta1=0.9, server_beta2=0.99, server_tau=1e-3),
        dict(strategy="fedadam", server_lr=0.1, server_beta1=0.9, server_beta2=0.999, server_tau=1e-3),
        dict(strategy="fedavgm", server_lr=1.0, server_momentum=0.9),
        dict(personalisation_epochs=1),
        dict(on_bad_aggregate="stop"),
        dict(release_quorum=3),
        dict(encrypted=True, context_fingerprint="0x" + "ab" * 32),
        dict(study_id="0x" + "22" * 32),
        dict(task="regression"),
        dict(task="multiclass", num_outputs=5),
        dict(model="own", model_target="mynet.SmallNet", model_source_hash="0x" + "ab" * 32),
    ],
)
def test_each_protocol_field_changes_the_hash(change):
    assert protocol_hash(replace(VECTOR_TASK, **change)) != protocol_hash(VECTOR_TASK)


def test_per_round_fields_addressing_defaults_and_number_forms_do_not():
    same = [
        VECTOR_TASK.for_round(7, "0x" + "33" * 32),
        replace(VECTOR_TASK, ledger=True, chain_id=31337, contract="0x" + "cd" * 20),
        replace(VECTOR_TASK, privacy=dict(DP, grad_sample_mode="ew", budget=None, unknown_key=1)),  # defaults
        replace(VECTOR_TASK, privacy=dict(DP, max_grad_norm=1)),  # 1 and 1.0 are one value
        RoundTask.from_wire(VECTOR_TASK.to_wire()),
    ]
    assert {protocol_hash(t) for t in same} == {protocol_hash(VECTOR_TASK)}


def test_a_field_of_the_wrong_type_cannot_be_hashed():
    with pytest.raises(RoundMessageError, match="privacy.noise_multiplier"):
        protocol_hash(replace(VECTOR_TASK, privacy=dict(DP, noise_multiplier="1.1")))


def test_get_study_calldata_is_pinned():
    assert get_study_calldata(STUDY).hex() == "56ee002a" + "11" * 32  # keccak256("getStudy(bytes32)")[:4]


def test_node_config_protocol_hash_is_checked_at_load():
    assert from_node_config(node_config(**{"protocol-hash": VECTOR_HASH.upper().replace("0X", "0x")})).protocol_hash
    with pytest.raises(SettingsError, match="protocol-hash"):
        from_node_config(node_config(**{"protocol-hash": "0x1234"}))


# -- the hospital refuses a changed protocol ------------------------------------------------


def refusal_code(reply: Message) -> str | None:
    refusal = reply.content.config_records.get("refusal")
    return None if refusal is None else str(refusal["code"])


def study_round(arrays: dict, server_round: int, privacy: dict, kind: str) -> Message:
    cfg = round_config(to_hex(model_hash(arrays)), privacy, **{"server-round": server_round, "num-rounds": 4})
    return task(arrays, cfg, kind)


def test_an_aggregator_that_changes_the_noise_in_round_3_is_refused_by_every_hospital(initial):
    # arrange: the study registered its protocol with noise 1.1; the aggregator lowers it from round 3
    registered = to_hex(
        protocol_hash(RoundTask.from_wire(dict(study_round(initial, 1, DP, "train").content.config_records["config"])))
    )
    hospitals = [
        context(node_config(**{"hospital-id": f"h{i}", "partition-index": i, "protocol-hash": registered}))
        for i in range(2)
    ]
    hostile = dict(DP, noise_multiplier=0.3)
    # act
    codes = {
        (r, kind, h.node_config["hospital-id"]): refusal_code(
            handler(study_round(initial, r, DP if r < 3 else hostile, kind), h)
        )
        for r in range(1, 5)
        for kind, handler in (("train", train), ("evaluate", evaluate_global))
        for h in hospitals
    }
    # assert
    assert {k: c for k, c in codes.items() if k[0] < 3} == {k: None for k in codes if k[0] < 3}
    assert {k: c for k, c in codes.items() if k[0] >= 3} == {k: "protocol-mismatch" for k in codes if k[0] >= 3}


def test_the_refusal_names_both_hashes_and_comes_before_training(initial, monkeypatch):
    registered = to_hex(protocol_hash(replace(VECTOR_TASK, study_id=STUDY)))
    monkeypatch.setattr("fl_client.client_app.train_local", lambda *a, **k: pytest.fail("trained"))
    reply = train(study_round(initial, 3, DP, "train"), context(node_config(**{"protocol-hash": registered})))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "protocol-mismatch" and registered in str(refusal["reason"])
    assert "update" not in reply.content.array_records


def test_without_a_registered_protocol_the_hospital_behaves_as_before(initial):
    assert refusal_code(train(study_round(initial, 1, DP, "train"), context(node_config()))) is None


def test_a_hospital_that_reads_a_chain_takes_the_registered_hash_from_it(monkeypatch):
    calls: list[tuple] = []

    def read(rpc: str, contract: str, study: str) -> str:
        calls.append((rpc, contract, study))
        return VECTOR_HASH

    monkeypatch.setattr("fl_client.chain_view.registered_config_hash", read)
    on_chain = from_node_config(
        node_config(**{"chain-rpc": "http://x", "contract": "0x" + "cd" * 20, "protocol-hash": "0x" + "00" * 32})
    )
    assert hospital_runtime.registered_protocol_hash(on_chain, STUDY) == VECTOR_HASH
    assert calls == [("http://x", "0x" + "cd" * 20, STUDY)]
    assert hospital_runtime.registered_protocol_hash(replace(on_chain, chain_rpc=None), STUDY) == "0x" + "00" * 32


# -- the auditor -----------------------------------------------------------------------


def test_the_auditor_flags_a_round_sent_under_another_protocol():
    from ledger.audit.artifacts import check_protocol

    view = type("View", (), {"config_hash": bytes.fromhex(VECTOR_HASH[2:])})()
    assert check_protocol(view, 1, {"protocol_hash": VECTOR_HASH}).status == "pass"  # type: ignore[arg-type]
    assert check_protocol(view, 2, {}).status == "skip"  # type: ignore[arg-type]
    bad = check_protocol(view, 3, {"protocol_hash": "0x" + "99" * 32})  # type: ignore[arg-type]
    assert bad.status == "fail" and bad.round == 3 and "round 3" in bad.message


def test_manifest_records_the_protocol_hash(tmp_path):
    from fedledger.wire import ModelPayload
    from fl_server.artifact_store import ArtifactStore
    from fl_server.round_protocol import write_manifest

    arrays = {"w": np.zeros(2, np.float32)}
    m = write_manifest(
        ArtifactStore(tmp_path), STUDY, 1, "0x" + "00" * 32, ModelPayload(arrays=arrays), [], protocol=VECTOR_HASH
    )
    assert (
        json.loads((tmp_path / "artifacts" / "rounds" / "round_00001.json").read_text())["protocol_hash"] == VECTOR_HASH
    )
    assert m["format"] == "fedledger-round-v1"


# -- the round protocol, hospitals answering through their ClientApp ---------------------


@dataclass(frozen=True, kw_only=True)
class LowersTheNoiseFromRound3(RoundTask):
    """A hostile aggregator's study task: honest in rounds 1-2, less noise from round 3."""

    def hostile(self, sent: RoundTask) -> RoundTask:
        return replace(sent, privacy=dict(sent.privacy, noise_multiplier=0.3))

    def for_round(self, server_round: int, prev_hash: str) -> RoundTask:
        sent = super().for_round(server_round, prev_hash)
        return self.hostile(sent) if server_round >= 3 else sent


@dataclass(frozen=True, kw_only=True)
class RaisesTheLearningRateFromRound3(LowersTheNoiseFromRound3):
    """A change a hospital's accountant does not notice by itself (its resumed state checks the noise)."""

    def hostile(self, sent: RoundTask) -> RoundTask:
        return replace(sent, lr=5.0)


class ClientAppGrid:
    """Two hospitals answering in process through the real ClientApp handlers, each with its own context."""

    def __init__(self, **node_config_extra: object) -> None:
        self.contexts = {
            n: context(node_config(**{"hospital-id": f"h{n}", "partition-index": n - 1, **node_config_extra}))
            for n in (1, 2)
        }

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        handler = {"train": train, "evaluate": evaluate_global}
        return [handler[m.metadata.message_type](m, self.contexts[m.metadata.dst_node_id]) for m in messages]


def hostile_study(
    tmp_path, grid: ClientAppGrid, rounds: int, initial_arrays: dict, monkeypatch, kind=LowersTheNoiseFromRound3
):
    from fedledger.wire import ModelPayload
    from fl_server import round_protocol
    from fl_server.artifact_store import ArtifactStore
    from fl_server.strategy import FedAvgStrategy

    monkeypatch.setattr(  # commit, then evaluate (the overlap has its own tests in test_round_protocol.py)
        round_protocol,
        "send_and_receive_around",
        lambda g, msgs, work, timeout: (work(), g.send_and_receive(msgs))[::-1],
    )
    study = kind(**{f.name: getattr(VECTOR_TASK, f.name) for f in fields(RoundTask)})
    store = ArtifactStore(tmp_path)
    outcomes: list = []
    stopped = None
    try:
        round_protocol.run_rounds(
            grid,  # type: ignore[arg-type]
            FedAvgStrategy(template=initial_arrays),
            ModelPayload(arrays=initial_arrays),
            study,
            num_rounds=rounds,
            min_hospitals=2,
            store=store,
            on_round=outcomes.append,
        )
    except round_protocol.StudyStopped as exc:
        stopped = str(exc)
    return outcomes, stopped, store


def test_round_protocol_a_noise_change_in_round_3_stops_the_study_and_the_auditor_sees_it(
    tmp_path, initial, monkeypatch
):
    from ledger.audit.artifacts import check_protocol

    registered = to_hex(protocol_hash(VECTOR_TASK))
    view = type("View", (), {"config_hash": bytes.fromhex(registered[2:])})()
    # act: hospitals that check the protocol; then hospitals with nothing registered to compare with, sent a
    # changed learning rate (a lowered noise would stop them anyway: their resumed accountant fails on it)
    outcomes, stopped, store = hostile_study(
        tmp_path / "checked", ClientAppGrid(**{"protocol-hash": registered}), 4, initial, monkeypatch
    )
    blind, blind_stopped, blind_store = hostile_study(
        tmp_path / "blind", ClientAppGrid(), 3, initial, monkeypatch, RaisesTheLearningRateFromRound3
    )
    # assert: rounds 1-2 ran under the registered protocol; in round 3 both hospitals refused
    assert [o.server_round for o in outcomes] == [1, 2]
    assert stopped is not None and stopped.startswith("round 3:")
    assert stopped.count("protocol-mismatch") == 2 and "h1" in stopped and "h2" in stopped
    assert [check_protocol(view, r, store.read_round(r)).status for r in (1, 2)] == ["pass", "pass"]  # type: ignore[arg-type]
    # the hospitals that could not check trained round 3; its manifest shows the changed protocol to the auditor
    assert blind_stopped is None and len(blind) == 3
    audit = [check_protocol(view, r, blind_store.read_round(r)) for r in (1, 2, 3)]  # type: ignore[arg-type]
    assert [(f.status, f.round) for f in audit] == [("pass", 1), ("pass", 2), ("fail", 3)]


def test_a_hospital_reading_an_anvil_chain_refuses_a_task_that_is_not_the_registered_protocol(
    tmp_path, initial, monkeypatch
):
    from fl_client.chain_view import registered_config_hash
    from ledger.chains import start_chain
    from ledger.client import LedgerClient

    chain = start_chain("anvil", tmp_path)
    try:
        client = LedgerClient.deploy(chain.w3, chain.admin)
        study = "0x" + "22" * 32
        honest = round_config(to_hex(model_hash(initial)), DP, **{"study-id": study})
        registered = protocol_hash(RoundTask.from_wire(dict(honest)))
        client.register_study(
            study, registered, model_hash(initial), b"\x00" * 32, "test", chain.aggregator.address, 2**40,
            [chain.funded_accounts[2].address], [10**9], 1,
        )  # fmt: skip
        nc = context(node_config(**{"chain-rpc": chain.rpc_url, "contract": client.address}))
        hostile = round_config(to_hex(model_hash(initial)), dict(DP, max_grad_norm=10.0), **{"study-id": study})
        # act
        with monkeypatch.context() as m:  # one bare eth_call, not the contract machinery
            m.setattr(LedgerClient, "read_study", lambda *a: pytest.fail("read through the client"))
            read = registered_config_hash.__wrapped__(chain.rpc_url, client.address, study)
        trained = train(task(initial, honest), nc)
        refused = train(task(initial, hostile), nc)
    finally:
        chain.stop()
    # assert
    assert read == to_hex(registered)
    assert refusal_code(trained) is None and "update" in trained.content.array_records
    assert refusal_code(refused) == "protocol-mismatch"


def test_the_audit_names_the_round_whose_manifest_records_another_protocol(honest, tmp_path):
    from fedledger.hashing import sha256
    from tests.test_audit import copy_run, fails

    run = copy_run(honest, tmp_path)
    rounds = run / "artifacts" / "rounds"
    for r, recorded in ((1, to_hex(sha256(b"cfg"))), (2, "0x" + "99" * 32)):  # the builder registers sha256("cfg")
        path = rounds / f"round_{r:05d}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "protocol_hash": recorded}))
    # act
    result = honest.audit(store=run)
    # assert: round 2 fails, round 1 passes, round 3 (no protocol_hash: an older manifest) is skipped
    assert fails(result) == [("protocol", 2, None)]
    assert result.to_json()["checks"]["protocol"] == {"pass": 1, "fail": 1, "skip": 1}
    assert any("round 2" in f.message and "configHash" in f.message for f in result.failures)


def test_a_prepared_study_registers_the_protocol_its_server_sends_and_its_hospitals_accept(tmp_path, monkeypatch):
    """study.json -> chain configHash -> the ServerApp's task -> a simulated hospital's check, end to end."""
    from coordinator.provision import compose_config
    from coordinator.study_setup import prepare_study
    from fedledger.files import load_npz
    from fedledger.study_spec import STUDY_ENV
    from fl_client.chain_view import registered_config_hash
    from fl_server.study import round_task
    from ledger.client import LedgerClient
    from ledger.rpc import http_w3

    cfg = compose_config(["num_hospitals=2", "num_rounds=2", "privacy=fixed_noise", "ledger=anvil", "baselines=false"])
    prepared = prepare_study(cfg, tmp_path / "run")
    try:
        spec = json.loads(prepared.spec_path.read_text())  # as the ServerApp reads it
        chain = spec["chain"]
        on_chain = LedgerClient.at(http_w3(chain["rpc_url"]), chain["contract"]).read_study(spec["study_id"])
        sent = round_task(spec).for_round(1, spec["initial_model_hash"])
        monkeypatch.setenv(STUDY_ENV, str(prepared.spec_path))
        reply = train(task(load_npz(spec["initial_model"]), ConfigRecord(sent.to_wire())), context({"partition-id": 0}))
        read = registered_config_hash(chain["rpc_url"], chain["contract"], spec["study_id"])
    finally:
        prepared.close()
    assert to_hex(on_chain.config_hash) == spec["protocol_hash"] == to_hex(protocol_hash(sent)) == read
    assert spec["config_hash"] != spec["protocol_hash"]  # the full config's hash stays in study.json
    assert refusal_code(reply) is None and "update" in reply.content.array_records
