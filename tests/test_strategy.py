"""FedAvg, reply validation and the wrappers, on hand-checkable replies (no Flower runtime)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

from fedledger.wire import ModelPayload, decode, encode
from fl_server.strategy import FedAvgStrategy, RoundStrategy, TrainResult
from fl_server.validation import parse_evaluate_replies, parse_train_replies

TEMPLATE = {"w": np.zeros((2,), np.float32), "b": np.zeros((1,), np.float32)}


@pytest.fixture(autouse=True)
def task_identity():
    """Flower messages need a run id; the simulation sets one, unit tests set it here."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


def instruction(node: int) -> Message:
    return Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=node, message_type="train"
    )


def reply(
    node: int, arrays: dict | ModelPayload, n: int, hospital: str | None = None, fingerprint: str | None = None
) -> Message:
    payload = arrays if isinstance(arrays, ModelPayload) else ModelPayload(arrays=arrays)
    info = {"hospital": hospital or f"h{node}"} | ({"context-fingerprint": fingerprint} if fingerprint else {})
    content = RecordDict(
        {
            "update": encode(payload),
            "metrics": MetricRecord({"num-examples": n, "train-loss": 0.5}),
            "info": ConfigRecord(info),
        }
    )
    return Message(content=content, reply_to=instruction(node))


def arrays(w: list[float], b: float) -> dict[str, np.ndarray]:
    return {"w": np.array(w, np.float32), "b": np.array([b], np.float32)}


def aggregate(s: RoundStrategy, replies: list[Message], server_round: int = 1, names=None) -> TrainResult:
    """What the round protocol does with a round's replies."""
    return s.aggregate_outcome(server_round, parse_train_replies(replies, names))


def test_fedavg_is_sample_weighted():
    # arrange
    s = FedAvgStrategy(template=TEMPLATE)
    replies = [reply(1, arrays([1, 2], 0), 1), reply(2, arrays([4, 5], 3), 2)]
    # act
    result = aggregate(s, replies)
    # assert: (1*[1,2] + 2*[4,5]) / 3 = [3, 4]; b = (0 + 6) / 3 = 2
    avg = result.aggregate.arrays
    np.testing.assert_allclose(avg["w"], [3, 4])
    np.testing.assert_allclose(avg["b"], [2])
    assert result.num_examples == 3 and result.train_loss == pytest.approx(0.5)
    assert [r.hospital for r in result.accepted] == ["h1", "h2"] and not result.rejected


def test_flowers_aggregate_train_returns_the_same_model_as_a_record():
    # arrange
    s = FedAvgStrategy(template=TEMPLATE)
    replies = [reply(1, arrays([1, 2], 0), 1), reply(2, arrays([4, 5], 3), 2)]
    # act
    record, metrics = s.aggregate_train(1, replies)
    # assert
    expected = aggregate(s, replies).aggregate
    assert decode(record).digest() == expected.digest()
    assert metrics["num-examples"] == 3 and metrics["train-loss"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (lambda: Message(Error(code=3, reason="client crashed"), reply_to=instruction(9)), "client crashed"),
        (lambda: reply(9, {"w": np.zeros(3, np.float32), "b": np.zeros(1, np.float32)}, 5), "shape"),
        (lambda: reply(9, arrays([np.nan, 1], 0), 5), "NaN"),
        (lambda: reply(9, {"w": np.zeros(2, np.float32)}, 5), "do not match"),
        (lambda: reply(9, arrays([1, 1], 0), 0), "positive integer"),
        (
            lambda: Message(
                content=RecordDict(
                    {
                        "refusal": ConfigRecord(
                            {"hospital": "h9", "code": "budget-exceeded", "reason": "epsilon 3.2 > 3"}
                        )
                    }
                ),
                reply_to=instruction(9),
            ),
            "budget-exceeded",
        ),
        (
            lambda: Message(
                content=RecordDict({"metrics": MetricRecord({"num-examples": 3})}), reply_to=instruction(9)
            ),
            "lacks",
        ),
    ],
    ids=["node-error", "wrong-shape", "nan", "missing-array", "zero-examples", "refusal", "no-update"],
)
def test_bad_reply_is_dropped_logged_with_node_and_round_goes_on(bad, reason, caplog):
    # arrange
    s = FedAvgStrategy(template=TEMPLATE)
    # act
    with caplog.at_level(logging.WARNING, logger="fedledger.server"):
        result = aggregate(s, [reply(1, arrays([1, 1], 1), 4), bad()])
    # assert
    assert result.aggregate.arrays["w"].tolist() == [1, 1]
    assert len(result.rejected) == 1 and result.rejected[0].node_id == 9
    assert reason in result.rejected[0].reason
    assert "node=9" in caplog.text and reason in caplog.text


def test_no_valid_reply_gives_no_model():
    s = FedAvgStrategy(template=TEMPLATE)
    replies = [reply(3, arrays([np.inf, 0], 0), 2)]
    assert aggregate(s, replies).aggregate is None
    record, metrics = s.aggregate_train(1, replies)
    assert record is None and metrics is None


def test_evaluation_keeps_undefined_auc_undefined():
    # arrange: hospital h2 holds one class, so its AUC is undefined
    s = FedAvgStrategy()
    rows = [
        MetricRecord({"loss": 0.2, "accuracy": 1.0, "auc": 0.9, "auc-defined": 1, "num-examples": 10}),
        MetricRecord({"loss": 0.4, "accuracy": 0.5, "auc": 0.0, "auc-defined": 0, "num-examples": 30}),
    ]
    replies = [
        Message(
            content=RecordDict({"metrics": m, "info": ConfigRecord({"hospital": f"h{i}"})}), reply_to=instruction(i)
        )
        for i, m in enumerate(rows, start=1)
    ]
    # act
    result = s.aggregate_evaluation(1, parse_evaluate_replies(replies)[0])
    record = s.aggregate_evaluate(1, replies)
    # assert: accuracy weighted by examples, AUC only over hospitals where it is defined
    assert result.overall["accuracy"] == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    assert result.overall["auc"] == pytest.approx(0.9)
    row = result.rows()["h2"]
    assert {k: v for k, v in row.items() if not k.endswith("-ci")} == {
        "loss": 0.4,
        "accuracy": 0.5,
        "auc": None,
        "num-examples": 30,
    }
    assert [round(v, 3) for v in row["accuracy-ci"]] == [0.332, 0.668] and row["auc-ci"] is None  # Wilson, 15 of 30
    assert record["accuracy"] == result.overall["accuracy"] and record["num-examples"] == 40


def test_an_evaluation_refusal_keeps_its_code_and_reaches_the_round_table():
    # arrange: h1 evaluates, h2 refuses the evaluation task under its policy, node 3 crashes
    from rich.console import Console

    from fedledger.round_task import Refusal
    from fl_server.progress import RoundTable
    from fl_server.round_protocol import RoundOutcome

    ok = MetricRecord({"loss": 0.2, "accuracy": 1.0, "auc": 0.9, "auc-defined": 1, "num-examples": 10})
    refusal = Refusal("h2", "policy-model-not-allowed", "model 'logreg' is not in allowed-models").to_wire()
    replies = [
        Message(content=RecordDict({"metrics": ok, "info": ConfigRecord({"hospital": "h1"})}), reply_to=instruction(1)),
        Message(content=RecordDict({"refusal": ConfigRecord(refusal)}), reply_to=instruction(2)),
        Message(Error(code=3, reason="boom"), reply_to=instruction(3)),
    ]
    # act
    reports, rejected = parse_evaluate_replies(replies)
    outcome = RoundOutcome(1, "0x", "0x", ["h1"], [], 10, {}, {}, None, 0.0, 0.0)
    outcome.evaluation_rejected = [r.as_dict() for r in rejected]
    console = Console(record=True, width=200)
    RoundTable(1, console)(outcome)
    # assert
    assert list(reports) == ["h1"]
    assert [(r.hospital, r.kind) for r in rejected] == [("h2", "refusal"), ("node-3", "error")]
    assert rejected[0].reason.startswith("policy-model-not-allowed: ")
    assert "h2 (evaluate: policy-model-not-allowed)" in console.export_text()


@pytest.fixture(scope="module")
def ckks_keys(tmp_path_factory):
    from fedledger.ckks import create_keys, preset

    return create_keys(tmp_path_factory.mktemp("keys"), preset("ckks_n4096"))


def test_encrypted_aggregation_equals_plaintext_fedavg_and_drops_bad_ciphertexts(ckks_keys, caplog):
    # arrange
    from fedledger.ckks import decrypt_update, encrypt_update, load_secret_context
    from fedledger.model_io import flatten, unflatten
    from fl_server.encrypted import EncryptedAggregation

    secret = load_secret_context(ckks_keys.secret_context)
    s = EncryptedAggregation(FedAvgStrategy(), ckks_keys.aggregator_context, n_params=3, max_update_bytes=1 << 20)
    fp = ckks_keys.fingerprint_hex
    updates = {1: (arrays([1, 2], 0), 1), 2: (arrays([4, 5], 3), 2)}
    replies = [
        reply(n, ModelPayload(ciphertexts=encrypt_update(secret, flatten(a), k)), k, fingerprint=fp)
        for n, (a, k) in updates.items()
    ]
    hostile = ModelPayload(ciphertexts=[b"\x00" * 100])
    replies.append(reply(9, hostile, 5, hospital="mallory", fingerprint=fp))
    # act
    with caplog.at_level(logging.WARNING, logger="fedledger.server"):
        result = aggregate(s, replies)
    # assert
    agg = result.aggregate
    assert agg.total_weight == 3
    avg = unflatten(decrypt_update(secret, agg.ciphertexts, 3, total_weight=agg.total_weight), TEMPLATE)
    assert np.max(np.abs(avg["w"] - [3, 4])) < 1e-6 and abs(avg["b"][0] - 2) < 1e-6
    assert [r.hospital for r in result.rejected] == ["mallory"]
    assert decode(s.aggregate_train(1, replies)[0]).ciphertexts == agg.ciphertexts  # Flower's adapter
    assert "hospital=mallory" in caplog.text and "ciphertext rejected" in caplog.text


def test_aggregator_refuses_a_context_with_a_secret_key(ckks_keys):
    from fl_server.encrypted import EncryptedAggregation

    with pytest.raises(Exception, match="(?i)secret"):
        EncryptedAggregation(FedAvgStrategy(), ckks_keys.secret_context, n_params=3, max_update_bytes=1 << 20)


def test_update_under_a_different_ckks_key_is_rejected_naming_the_hospital(ckks_keys, tmp_path, caplog):
    # arrange: a hospital configured with another study's secret context
    from fedledger.ckks import create_keys, encrypt_update, load_secret_context, preset
    from fedledger.model_io import flatten
    from fl_client.hospital_runtime import _fingerprint
    from fl_server.encrypted import EncryptedAggregation

    foreign = create_keys(tmp_path / "foreign", preset("ckks_n4096"))
    s = EncryptedAggregation(FedAvgStrategy(), ckks_keys.aggregator_context, n_params=3, max_update_bytes=1 << 20)
    good = load_secret_context(ckks_keys.secret_context)
    bad = load_secret_context(foreign.secret_context)
    replies = [
        reply(
            1,
            ModelPayload(ciphertexts=encrypt_update(good, flatten(arrays([1, 1], 1)), 2)),
            2,
            fingerprint=_fingerprint(str(ckks_keys.secret_context)),
        ),
        reply(
            2,
            ModelPayload(ciphertexts=encrypt_update(bad, flatten(arrays([9, 9], 9)), 2)),
            2,
            hospital="stale-keys",
            fingerprint=_fingerprint(str(foreign.secret_context)),
        ),
    ]
    # act
    with caplog.at_level(logging.WARNING, logger="fedledger.server"):
        result = aggregate(s, replies)
    # assert: the round goes on with the valid update only
    assert result.aggregate.total_weight == 2
    assert [r.hospital for r in result.rejected] == ["stale-keys"]
    assert "different CKKS key" in caplog.text and "hospital=stale-keys" in caplog.text


def test_a_crashed_node_is_named_by_the_hospital_it_announced_earlier():
    # arrange: node 9 replied as "h9" in round 1, then crashes in round 2 (an error reply has no content)
    s = FedAvgStrategy(template=TEMPLATE)
    names: dict[int, str] = {}
    aggregate(s, [reply(1, arrays([1, 1], 1), 4), reply(9, arrays([2, 2], 2), 4)], 1, names)
    # act
    result = aggregate(
        s, [reply(1, arrays([1, 1], 1), 4), Message(Error(code=3, reason="boom"), reply_to=instruction(9))], 2, names
    )
    # assert
    assert [(r.node_id, r.hospital, r.kind) for r in result.rejected] == [(9, "h9", "error")]


def test_ledger_mode_comes_from_the_study_config(monkeypatch, tmp_path):
    """The spec's ``config.ledger`` holds mode and threshold (its ``chain`` block does not); the default stays."""
    from fl_server import ledger_commit

    fake = SimpleNamespace(domain=lambda: None, with_options=lambda **kw: None, address="0x" + "00" * 20)
    monkeypatch.setattr(ledger_commit, "aggregator_client", lambda chain_spec: fake)
    spec = {
        "study_id": "0x" + "11" * 32,
        "run_dir": str(tmp_path),
        "hospitals": [{"id": "h1", "address": "0x" + "ab" * 20}],
        "chain": {"backend": "anvil", "contract": "0x" + "cd" * 20, "record_timeout_s": 5},
        "config": {"ledger": {"mode": "auto", "merkle_threshold": 3}},
    }
    commit = ledger_commit.LedgerCommit.from_spec(FedAvgStrategy(), spec)
    assert (commit.mode, commit.merkle_threshold) == ("auto", 3)
    assert commit.uses_merkle(4) and not commit.uses_merkle(3)
    default = ledger_commit.LedgerCommit.from_spec(FedAvgStrategy(), {**spec, "config": {"ledger": {}}})
    assert (default.mode, default.merkle_threshold) == ("per_hospital", 32)


def test_ledger_wrapper_keeps_only_updates_signed_by_the_registered_key_over_what_was_sent(tmp_path):
    # arrange: the round's task goes out through the wrapper; three hospitals sign their updates
    from eth_account import Account

    from fedledger.commitment import RoundCommitment, SignedCommitment, domain
    from fedledger.round_task import RoundTask
    from fl_server.ledger_commit import LedgerCommit

    dom = domain(31337, "0x" + "cd" * 20)
    keys = {f"h{i}": Account.create() for i in (1, 2, 3)}
    consented = SimpleNamespace(status="consented", max_samples=100)  # every hospital's registered cohort size
    fake = SimpleNamespace(
        domain=lambda: dom,
        with_options=lambda **kw: None,
        address=dom.verifying_contract,
        read_hospital=lambda study, address: consented,
    )
    s = LedgerCommit(
        FedAvgStrategy(template=TEMPLATE), fake, "0x" + "11" * 32, {h: a.address for h, a in keys.items()}, tmp_path, 5
    )
    prev = "0x" + "22" * 32
    sent = RoundTask(
        model="logreg",
        hidden=0,
        local_epochs=1,
        batch_size=8,
        lr=0.1,
        momentum=0.0,
        weight_decay=0.0,
        num_rounds=2,
        study_id="0x" + "11" * 32,
        server_round=1,
        prev_hash=prev,
    )
    grid = SimpleNamespace(get_node_ids=lambda: [1, 2, 3])
    config = ConfigRecord(sent.to_wire())
    s.configure_train(1, encode(ModelPayload(arrays=TEMPLATE)), config, grid)

    def signed_reply(node: int, signer, update_arrays) -> Message:
        msg = reply(node, update_arrays, 4)
        payload = ModelPayload(arrays=update_arrays)
        c = RoundCommitment(b"\x11" * 32, 1, bytes.fromhex(prev[2:]), payload.digest(), 4, 1_000, b"\x44" * 32)
        msg.content["commitment"] = ConfigRecord(SignedCommitment.sign(signer, dom, c, f"h{node}").to_json())
        return msg

    honest = signed_reply(1, keys["h1"], arrays([1, 1], 1))
    impostor = signed_reply(2, Account.create(), arrays([2, 2], 2))
    tampered = signed_reply(3, keys["h3"], arrays([3, 3], 3))
    tampered.content["update"] = encode(ModelPayload(arrays=arrays([9, 9], 9)))
    # act
    result = aggregate(s, [honest, impostor, tampered])
    # assert
    assert [r.hospital for r in result.accepted] == ["h1"]
    reasons = {r.hospital: r.reason for r in result.rejected}
    assert "not by the hospital's registered key" in reasons["h2"]
    assert "update hash does not match" in reasons["h3"]
    assert result.aggregate.arrays["w"].tolist() == [1, 1]
