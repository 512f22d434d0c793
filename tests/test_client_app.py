"""The hospital's ClientApp, called directly with Flower messages (no simulation engine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedledger.hashing import model_hash, to_hex
from fedledger.protocol import protocol_hash
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload, decode, encode
from fl_client.client_app import evaluate_global, train
from fl_client.models import build_model, get_arrays


@pytest.fixture(autouse=True)
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


def node_config(**extra) -> dict:
    return {
        "hospital-id": "h0",
        "data-path": "builtin:breast_cancer",
        "partition-index": 0,
        "num-partitions": 2,
        "seed": 0,
        **extra,
    }


def round_config(prev_hash: str, privacy: dict | None = None, **extra) -> ConfigRecord:
    cfg = {
        "server-round": 1,
        "study-id": "0x" + "11" * 32,
        "prev-hash": prev_hash,
        "model": "logreg",
        "hidden": 0,
        "seed": 0,
        "local-epochs": 1,
        "batch-size": 32,
        "lr": 0.5,
        "momentum": 0.0,
        "weight-decay": 0.0,
        "num-rounds": 2,
        "privacy": json.dumps(privacy or {"enabled": False}),
        "encrypted": False,
        "ledger": False,
        "chain-id": 0,
        "contract": "",
    }
    cfg.update(extra)
    return ConfigRecord(cfg)


def task(arrays: dict, cfg: ConfigRecord, kind: str = "train") -> Message:
    return Message(
        content=RecordDict({"global": encode(ModelPayload(arrays=arrays)), "config": cfg}),
        dst_node_id=3,
        message_type=kind,
    )


def context(nc: dict) -> Context:
    return Context(run_id=1, node_id=3, node_config=nc, state=RecordDict(), run_config={})


@pytest.fixture
def initial():
    return get_arrays(build_model("logreg", 30, 0, seed=0))


def test_train_replies_with_the_update_and_its_sample_count(initial):
    reply = train(task(initial, round_config(to_hex(model_hash(initial)))), context(node_config()))
    update = decode(reply.content.array_records["update"])
    metrics = reply.content.metric_records["metrics"]
    assert set(update.arrays) == set(initial) and not np.allclose(
        update.arrays["linear.weight"], initial["linear.weight"]
    )
    assert metrics["num-examples"] > 100 and reply.content.config_records["info"]["hospital"] == "h0"


def test_a_model_that_does_not_match_the_announced_hash_is_refused(initial):
    reply = train(task(initial, round_config("0x" + "00" * 32)), context(node_config()))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "hash-mismatch" and refusal["hospital"] == "h0"


def test_spent_budget_gives_a_refusal_reply_not_a_crash(initial):
    privacy = {"enabled": True, "noise_multiplier": 0.8, "max_grad_norm": 1.0, "accountant": "rdp"}
    reply = train(
        task(initial, round_config(to_hex(model_hash(initial)), privacy)),
        context(node_config(**{"privacy-budget": 0.01})),
    )
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "budget-exceeded" and "budget" in refusal["reason"]


def test_a_delta_not_below_one_over_n_is_refused_by_name(initial):
    # issue 19 item 6: delta 0.5 is above 1/n for the hospital's ~140 records (PRV reported a negative epsilon)
    privacy = {"enabled": True, "noise_multiplier": 1.0, "delta": 0.5, "max_grad_norm": 1.0, "accountant": "prv"}
    reply = train(task(initial, round_config(to_hex(model_hash(initial)), privacy)), context(node_config()))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "privacy-delta-invalid" and "not below 1/n" in refusal["reason"]


def test_evaluation_reports_metrics_on_the_hospital_test_split(initial):
    reply = evaluate_global(
        task(initial, round_config(to_hex(model_hash(initial))), "evaluate"), context(node_config())
    )
    m = reply.content.metric_records["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and m["num-examples"] > 20 and m["auc-defined"] == 1


@pytest.mark.slow
def test_hospital_refuses_a_model_whose_hash_is_not_the_one_on_chain(tmp_path, initial, monkeypatch):
    """Inconsistent-model attack: the server sends (and announces) a model other than the recorded one."""
    from fl_client import hospital_runtime
    from ledger.chains import start_chain
    from ledger.client import LedgerClient

    chain = start_chain("anvil", tmp_path)
    try:
        client = LedgerClient.deploy(chain.w3, chain.admin)
        hospital = chain.funded_accounts[2]
        study = "0x" + "22" * 32
        # the study registers the protocol its tasks are sent under (configHash v2), as a prepared study does
        registered = protocol_hash(
            RoundTask.from_wire(dict(round_config(to_hex(model_hash(initial)), **{"study-id": study})))
        )
        client.register_study(
            study,
            registered,
            model_hash(initial),
            b"\x00" * 32,
            "test",
            chain.aggregator.address,
            2**40,
            [hospital.address],
            [10**9],
            1,
        )
        forged = {k: v + 1.0 for k, v in initial.items()}
        cfg = round_config(to_hex(model_hash(forged)), **{"study-id": study})
        nc = node_config(**{"chain-rpc": chain.rpc_url, "contract": client.address})
        # act
        reply = train(task(forged, cfg), context(nc))
        honest = train(task(initial, round_config(to_hex(model_hash(initial)), **{"study-id": study})), context(nc))
        monkeypatch.setattr(hospital_runtime, "CHAIN_WAIT_S", 0.3)
        unrecorded = evaluate_global(
            task(initial, round_config(to_hex(model_hash(initial)), **{"study-id": study}), "evaluate"), context(nc)
        )  # round 1 was never recorded
    finally:
        chain.stop()
    # assert
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "chain-mismatch" and to_hex(model_hash(initial)) in refusal["reason"]
    assert "update" in honest.content.array_records
    late = unrecorded.content.config_records["refusal"]
    assert late["code"] == "not-on-chain" and "round 1" in late["reason"]


def test_restarted_hospital_resumes_its_privacy_spend_from_its_state_dir(tmp_path, initial):
    """A restart is a fresh process: new Flower context, empty caches; only the state file survives."""
    from fl_client import hospital_runtime

    privacy = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"}
    nc = node_config(**{"state-dir": str(tmp_path / "state")})
    h0 = to_hex(model_hash(initial))
    first = train(task(initial, round_config(h0, privacy)), context(nc))
    eps1 = first.content.metric_records["metrics"]["epsilon"]
    hospital_runtime._data.cache_clear()  # the restart
    second = train(task(initial, round_config(h0, privacy, **{"server-round": 2})), context(nc))
    eps2 = second.content.metric_records["metrics"]["epsilon"]
    uninterrupted = context(node_config())
    train(task(initial, round_config(h0, privacy)), uninterrupted)
    eps2_ref = train(
        task(initial, round_config(h0, privacy, **{"server-round": 2})), uninterrupted
    ).content.metric_records["metrics"]["epsilon"]
    assert (tmp_path / "state" / "privacy_state.json").exists()
    assert eps2 > eps1 > 0
    assert eps2 == pytest.approx(eps2_ref, rel=1e-9)


def test_restarted_hospital_does_not_derive_its_noise_again(tmp_path, initial, monkeypatch):
    """The accountant memo travels with the hospital's state: a new process reuses the derived noise."""
    from fedledger.dp import epsilon as privacy_mod
    from fl_client import hospital_runtime

    privacy = {"enabled": True, "target_epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0, "accountant": "rdp"}
    nc = node_config(**{"state-dir": str(tmp_path / "state")})
    h0 = to_hex(model_hash(initial))
    train(task(initial, round_config(h0, privacy)), context(nc))
    # the restart: every in-process cache is gone, only the state dir remains
    privacy_mod._MEMO.clear()
    privacy_mod._compute_epsilon_cached.cache_clear()
    hospital_runtime._data.cache_clear()

    def no_derivation(*args):
        raise AssertionError("noise multiplier derived again after a restart")

    monkeypatch.setattr(privacy_mod, "_derive_noise_multiplier", no_derivation)
    reply = train(task(initial, round_config(h0, privacy, **{"server-round": 2})), context(nc))
    assert "update" in reply.content.array_records


def test_hospital_with_another_studys_ckks_key_refuses_before_training(tmp_path, initial):
    from fedledger.ckks import create_keys, preset

    study = create_keys(tmp_path / "study", preset("ckks_n4096"))
    other = create_keys(tmp_path / "other", preset("ckks_n4096"))
    cfg = round_config(to_hex(model_hash(initial)), encrypted=True, **{"context-fingerprint": study.fingerprint_hex})
    reply = train(task(initial, cfg), context(node_config(**{"secret-context": str(other.secret_context)})))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "wrong-key" and study.fingerprint_hex in refusal["reason"]
    ok = train(task(initial, cfg), context(node_config(**{"secret-context": str(study.secret_context)})))
    assert "update" in ok.content.array_records
    assert ok.content.config_records["info"]["context-fingerprint"] == study.fingerprint_hex


def test_deployed_hospital_whose_own_csv_holds_one_class_still_trains():
    """A SuperNode sees only its own CSV: one class there warns (as provision says), it is not a study error."""
    from pathlib import Path

    from fl_client import hospital_runtime
    from fl_client.settings import from_node_config

    example = Path(__file__).resolve().parents[1] / "examples" / "csv_study"
    nc = {
        "hospital-id": "switzerland",
        "data-path": str(example / "switzerland.csv"),
        "schema-path": str(example / "schema.yaml"),
    }
    data = hospital_runtime.hospital_data(from_node_config(nc))
    assert len(set(data.y_train.tolist()) | set(data.y_test.tolist())) == 1
    start = get_arrays(build_model("logreg", data.X_train.shape[1], 0, seed=0))
    reply = train(task(start, round_config(to_hex(model_hash(start)))), context(nc))
    assert "refusal" not in reply.content.config_records
    assert reply.content.metric_records["metrics"]["num-examples"] == data.n_train


def test_each_task_logs_the_checked_model_hash_and_the_epsilon_spent(initial, caplog):
    """What the hospital guide says the operator sees per round (Flower's logger, INFO)."""
    import logging

    h0 = to_hex(model_hash(initial))
    with caplog.at_level(logging.INFO, logger="flwr"):
        train(task(initial, round_config(h0)), context(node_config()))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fedledger: hospital h0")]
    assert any(f"global model {h0} matches the round config" in m for m in lines)
    assert any("trained on" in m and "epsilon spent" in m for m in lines)


def test_a_ledger_study_reply_carries_the_signed_commitment_the_server_verifies(tmp_path, initial):
    """The hospital's SignedCommitment record, read back by the server's one parser, recovers to its key."""
    from eth_account import Account

    from fedledger.commitment import SignedCommitment, domain

    account = Account.create()
    key = tmp_path / "eth_key"
    key.write_text(account.key.hex())
    h0 = to_hex(model_hash(initial))
    contract = "0x" + "cd" * 20
    cfg = round_config(h0, ledger=True, **{"chain-id": 31337, "contract": contract})
    # act
    reply = train(task(initial, cfg), context(node_config(**{"eth-key": str(key)})))
    # assert
    record = dict(reply.content.config_records["commitment"])
    keys = ["hospital", "address", "update-hash", "sample-count", "epsilon-micro", "start-model-hash", "signature"]
    assert list(record) == keys
    assert record["start-model-hash"] == h0  # round 1 trains from the initial model it was sent
    update = decode(reply.content.array_records["update"])
    signed = SignedCommitment.from_json(
        record,
        study_id=cfg["study-id"],
        round=1,
        prev_global_hash=h0,
        update_hash=update.digest(),
        sample_count=reply.content.metric_records["metrics"]["num-examples"],
    )
    assert signed.recover(domain(31337, contract)) == account.address == record["address"]
    assert signed.to_json() == record and record["hospital"] == "h0" and record["epsilon-micro"] == 0


def test_a_deployed_hospital_draws_its_noise_from_os_entropy_unless_its_node_config_says_seeded(initial):
    """The hospital chooses its noise source; the aggregator's task says seeded and changes nothing."""
    privacy = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"}
    cfg = round_config(to_hex(model_hash(initial)), {**privacy, "noise_source": "seeded"})
    replies = {
        source: [train(task(initial, cfg), context(node_config(**extra))) for _ in range(2)]
        for source, extra in (("os-entropy", {}), ("seeded", {"noise-source": "seeded"}))
    }

    for source, (first, second) in replies.items():
        assert first.content.config_records["info"]["noise-source"] == source
        a, b = (decode(r.content.array_records["update"]).arrays for r in (first, second))
        same = all(np.array_equal(a[k], b[k]) for k in a)
        assert same == (source == "seeded")
    with pytest.raises(ValueError, match="node config noise-source must be one of"):
        train(task(initial, cfg), context(node_config(**{"noise-source": "urandom"})))
