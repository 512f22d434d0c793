"""Bounded influence under encryption (issue 18) and the weight hospitals divide by (issue 19.1).

A hostile hospital builds its ciphertext with SEAL directly, bypassing
``encrypt_update``'s own bound: the aggregator cannot see values and passes
it; the hospitals refuse the decrypted aggregate (``aggregate-wrapped``,
``aggregate-step-too-large``). A hostile aggregator sends one hospital
another weight: the weight is in the aggregate's hash (v2) and refused when
not a positive whole number (``total-weight-invalid``).
"""

from __future__ import annotations

import hashlib
import os
import struct

import numpy as np
import pytest
import tenseal.sealapi as sealapi
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedledger import ckks
from fedledger.ckks.format import layout
from fedledger.hashing import aggregate_hash, model_hash, to_hex
from fedledger.model_io import flatten
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload, decode, encode
from fl_client.aggregate_bounds import (
    AGGREGATE_STEP_TOO_LARGE,
    AGGREGATE_WRAPPED,
    BATCH_TAIL,
    NOISE_TAIL,
    STEP_SLACK,
    check_aggregate,
    step_bound,
)
from fl_client.client_app import evaluate_global, train
from fl_client.models import build_model, get_arrays
from tests.test_client_app import round_config as client_round_config

N_PARAMS = 31  # logreg on the 30 breast-cancer features


@pytest.fixture(autouse=True)
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    paths = ckks.create_keys(tmp_path_factory.mktemp("ckks") / "keys", ckks.PRESETS["ckks"])
    return paths, ckks.load_secret_context(paths.secret_context), ckks.load_aggregator_context(paths.aggregator_context)


def hostile_blob(sec, value: float, times: int, size: int = N_PARAMS) -> bytes:
    """A ciphertext built with SEAL directly: ``value`` in every slot, added to itself ``times - 1`` times."""
    lay = layout(sec)
    sc = sec.seal_context().data
    encoder, encryptor, evaluator = (
        sealapi.CKKSEncoder(sc),
        sealapi.Encryptor(sc, sec.secret_key().data),
        sealapi.Evaluator(sc),
    )
    pt = sealapi.Plaintext()
    encoder.encode([value] * lay.slots, lay.scale, pt)
    one, acc = sealapi.Ciphertext(sc), sealapi.Ciphertext(sc)
    encryptor.encrypt_symmetric(pt, one)
    encryptor.encrypt_symmetric(pt, acc)
    for _ in range(times - 1):
        evaluator.add_inplace(acc, one)
    fd = os.memfd_create("hostile")
    try:
        acc.save(f"/proc/self/fd/{fd}")
        return ckks.wrap_seal_ciphertext(os.pread(fd, os.fstat(fd).st_size, 0), size, lay.scale)
    finally:
        os.close(fd)


def headroom(sec) -> float:
    """``encrypt_update``'s own limit on a weighted value: 2^(data bits - 2) / scale."""
    return 2.0 ** (60 - 2) / layout(sec).scale


def dp_task(**extra) -> RoundTask:
    fields = {
        "model": "logreg",
        "hidden": 0,
        "local_epochs": 2,
        "batch_size": 32,
        "lr": 1.0,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "num_rounds": 10,
        "privacy": {"enabled": True, "target_epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0},
        "encrypted": True,
        "prev_hash": "0x" + "00" * 32,
        "study_id": "0x" + "11" * 32,
        "server_round": 2,
    }
    return RoundTask(**{**fields, **extra})


# -- the weight is hashed -----------------------------------------------------------------------

AGG_ABC_3 = "0x7247d3637f4e4b907f25f9c041a8f22f0a1f3a1b504ee2e67d7c668f5fdbbf7d"
AGG_TWO_1000 = "0x30b771b2f461a8ab77fa3fc9ed145f325797584bc0bcd074a35ccd01250c90db"


def test_aggregate_hash_v2_vectors_by_hand():
    by_hand = b"FEDLEDGER-CKKS-AGGREGATE-v2" + struct.pack("<Q", 3) + struct.pack("<I", 1) + struct.pack("<Q", 3)
    assert to_hex(hashlib.sha256(by_hand + b"abc").digest()) == AGG_ABC_3
    assert to_hex(aggregate_hash([b"abc"], 3)) == AGG_ABC_3
    assert to_hex(aggregate_hash([b"\x01\x02", b""], 1000)) == AGG_TWO_1000


def test_an_aggregates_hash_covers_its_weight_and_refuses_a_bad_one():
    base = ModelPayload(ciphertexts=[b"abc"], total_weight=3.0)
    assert base.digest() == aggregate_hash([b"abc"], 3)
    assert ModelPayload(ciphertexts=[b"abc"], total_weight=4.0).digest() != base.digest()
    for bad in (-453.0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive whole number"):
            ModelPayload(ciphertexts=[b"abc"], total_weight=bad).digest()
    with pytest.raises(ValueError, match="positive integer"):
        aggregate_hash([b"abc"], -453)


# -- the wrap and the step bound ----------------------------------------------------------------


def test_a_ciphertext_added_to_itself_until_it_wraps_passes_the_aggregator_but_not_the_hospitals(keys):
    _, sec, pub = keys
    honest = ckks.encrypt_update(sec, np.full(N_PARAMS, 0.1), 100.0)
    hostile = [hostile_blob(sec, 0.9 * headroom(sec), times=3)]
    # the aggregator, which sees no values, validates and sums it
    ckks.validate_ciphertexts(pub, hostile, 1, 1 << 30, n_params=N_PARAMS)
    agg = ckks.sum_ciphertexts(pub, [honest, hostile])

    flat, wrap = ckks.decrypt_aggregate(sec, agg, N_PARAMS, 200)
    verdict = check_aggregate(flat, wrap, None, dp_task(), 200, 1)

    assert verdict.code == AGGREGATE_WRAPPED and "wrap point" in verdict.reason
    # it did wrap: off by q/scale from the true sum 10 + 3 * 0.9 * headroom
    q_over_scale = 2 * ckks.wrap_point(sec)
    assert flat[0] * 200 == pytest.approx(10 + 3 * 0.9 * headroom(sec) - q_over_scale, rel=1e-6)
    honest_flat, honest_wrap = ckks.decrypt_aggregate(sec, ckks.sum_ciphertexts(pub, [honest, honest]), N_PARAMS, 200)
    assert check_aggregate(honest_flat, honest_wrap, None, dp_task(), 200, 1).ok


def test_an_oversized_update_that_does_not_wrap_is_refused_by_the_step_bound(keys):
    _, sec, pub = keys
    previous = np.zeros(N_PARAMS)
    honest = ckks.encrypt_update(sec, previous + 0.05, 100.0)
    huge = ckks.encrypt_update(sec, previous + 1_000.0, 100.0)  # within the encryption headroom
    flat, wrap = ckks.decrypt_aggregate(sec, ckks.sum_ciphertexts(pub, [honest, huge]), N_PARAMS, 200)

    verdict = check_aggregate(flat, wrap, previous, dp_task(), 200, 1)

    assert wrap.ok and verdict.code == AGGREGATE_STEP_TOO_LARGE
    assert "honest hospitals move it at most" in verdict.reason
    # without DP there is no public bound on a step: only the wrap is checked
    assert check_aggregate(flat, wrap, previous, dp_task(privacy={"enabled": False}), 200, 1).ok


def test_a_wrap_that_lands_inside_the_margin_is_still_refused_by_the_step_bound(keys):
    _, sec, pub = keys
    hostile = [hostile_blob(sec, 0.9 * headroom(sec), times=4)]  # wraps to about -0.2 of the wrap point
    honest = ckks.encrypt_update(sec, np.full(N_PARAMS, 0.1), 100.0)
    flat, wrap = ckks.decrypt_aggregate(sec, ckks.sum_ciphertexts(pub, [honest, hostile]), N_PARAMS, 200)

    verdict = check_aggregate(flat, wrap, np.zeros(N_PARAMS), dp_task(), 200, 1)

    assert wrap.ok and verdict.code == AGGREGATE_STEP_TOO_LARGE


def test_step_bound_by_hand():
    task = dp_task(
        privacy={"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 2.0},
        batch_size=16,
        local_epochs=1,
        lr=0.5,
        momentum=0.5,
    )
    bound = step_bound(task, total_weight=64, n_params=9, start_norm=0.0)
    assert bound is not None
    b_hi = 16 + BATCH_TAIL * 4 + BATCH_TAIL**2
    g = 2.0 * b_hi / 16 + 1.0 * 2.0 * (3 + NOISE_TAIL) / 16
    v1, v2, v3, v4 = g, 1.5 * g, 1.75 * g, 1.875 * g  # v = 0.5 v + g over 64 // 16 = 4 steps
    assert bound.steps == 4 and bound.per_step_gradient == pytest.approx(g)
    assert bound.bound == pytest.approx(0.5 * (v1 + v2 + v3 + v4) + STEP_SLACK)
    assert step_bound(dp_task(privacy={"enabled": False}), 64, 9, 0.0) is None


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2, 3, 4))])
def test_honest_dp_ckks_rounds_of_the_default_study_pass_the_bounds(keys, seed):
    """No false positives: the default study's 4 hospitals (DP target epsilon 3, lr 1, 2 epochs, batch 32),
    seed 0 fast, seeds 1-4 slow."""
    from fedledger.config import PrivacyConfig, TrainConfig
    from fedledger.model_io import unflatten
    from fl_client.data import load_hospitals
    from fl_client.dp_training import HospitalPrivacy
    from fl_client.models import set_arrays
    from fl_client.training import train_local

    _, sec, pub = keys
    task = dp_task()
    hospitals = load_hospitals({"name": "breast_cancer", "partitioner": "iid"}, 4, seed)
    privacy = [
        HospitalPrivacy(PrivacyConfig(**task.privacy), int(h.n_train), 32, task.num_rounds, task.local_epochs)
        for h in hospitals
    ]
    template = get_arrays(build_model("logreg", 30, 0, seed=0))
    global_flat, ratios = flatten(template), []
    for r in range(1, 4):
        updates, total = [], 0
        for i, (h, p) in enumerate(zip(hospitals, privacy)):
            model = build_model("logreg", 30, 0, seed=0)
            set_arrays(model, unflatten(global_flat, template))
            tcfg = TrainConfig(local_epochs=2, batch_size=32, lr=1.0, momentum=0.0, weight_decay=0.0)
            train_local(model, h.X_train, h.y_train, tcfg, seed=100_000 * seed + 1000 * r + i, privacy=p)
            updates.append(ckks.encrypt_update(sec, flatten(get_arrays(model)), float(h.n_train)))
            total += int(h.n_train)
        flat, wrap = ckks.decrypt_aggregate(sec, ckks.sum_ciphertexts(pub, updates), N_PARAMS, total)
        verdict = check_aggregate(flat, wrap, global_flat, task.for_round(r + 1, task.prev_hash), total, 1)
        assert verdict.ok, verdict.reason
        assert verdict.step is not None and verdict.bound is not None
        ratios.append(verdict.step / verdict.bound.bound)
        global_flat = flat
    print(f"seed {seed}: honest step / bound per round: {[f'{x:.4f}' for x in ratios]}")
    assert max(ratios) < 0.25  # generous: the honest step is a small fraction of the bound


# -- the hospital's ClientApp -------------------------------------------------------------------


def node_config(secret: str, **extra) -> dict:
    return {
        "hospital-id": "h0",
        "data-path": "builtin:breast_cancer",
        "partition-index": 0,
        "num-partitions": 2,
        "seed": 0,
        "secret-context": secret,
        "noise-source": "seeded",
        **extra,
    }


def round_config(server_round: int, prev_hash: str, **extra) -> ConfigRecord:
    """tests/test_client_app.py's task, encrypted, with DP and three rounds."""
    dp = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"}
    return client_round_config(
        prev_hash, dp, **{"server-round": server_round, "num-rounds": 3, "encrypted": True, **extra}
    )


def message(payload: ModelPayload, cfg: ConfigRecord, kind: str = "train") -> Message:
    return Message(content=RecordDict({"global": encode(payload), "config": cfg}), dst_node_id=3, message_type=kind)


@pytest.fixture
def round1(keys):
    """A hospital that trained round 1 from the initial model; its context holds that accepted model."""
    paths = keys[0]
    nc = node_config(str(paths.secret_context))
    ctx = Context(run_id=1, node_id=3, node_config=nc, state=RecordDict(), run_config={})
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    reply = train(message(ModelPayload(arrays=initial), round_config(1, to_hex(model_hash(initial)))), ctx)
    update = decode(reply.content.array_records["update"])
    n = int(reply.content.metric_records["metrics"]["num-examples"])
    return ctx, initial, update.ciphertexts, n


def test_a_weight_of_minus_453_is_refused_by_name(round1):
    ctx, _, blobs, _ = round1
    for bad in (-453.0, 12.5, 0.0):
        payload = ModelPayload(ciphertexts=blobs, total_weight=bad)
        reply = train(message(payload, round_config(2, "0x" + "ab" * 32)), ctx)
        refusal = reply.content.config_records["refusal"]
        assert refusal["code"] == "total-weight-invalid" and repr(bad) in refusal["reason"], refusal


def test_keep_previous_trains_from_the_last_accepted_model_and_says_why(keys, round1):
    _, sec, pub = keys
    ctx, initial, blobs, n = round1
    agg = ckks.sum_ciphertexts(pub, [blobs, [hostile_blob(sec, 0.9 * headroom(sec), times=3)]])
    payload = ModelPayload(ciphertexts=agg, total_weight=float(2 * n))
    cfg = round_config(2, to_hex(payload.digest()), **{"on-bad-aggregate": "keep-previous"})

    reply = train(message(payload, cfg), ctx)

    info = reply.content.config_records["info"]
    assert info["aggregate-refused"] == AGGREGATE_WRAPPED and "round 1's aggregate" in info["aggregate-refused-reason"]
    trained = ckks.decrypt_update(sec, decode(reply.content.array_records["update"]).ciphertexts, N_PARAMS) / n
    assert np.linalg.norm(trained - flatten(initial)) < 10  # trained from the initial model, not the wrapped one
    # evaluating the refused aggregate is refused with the same code
    refusal = evaluate_global(message(payload, cfg, "evaluate"), ctx).content.config_records["refusal"]
    assert refusal["code"] == AGGREGATE_WRAPPED


def test_stop_refuses_the_task(keys, round1):
    _, sec, pub = keys
    ctx, _, blobs, n = round1
    agg = ckks.sum_ciphertexts(pub, [blobs, ckks.encrypt_update(sec, np.full(N_PARAMS, 1_000.0), float(n))])
    payload = ModelPayload(ciphertexts=agg, total_weight=float(2 * n))
    cfg = round_config(2, to_hex(payload.digest()), **{"on-bad-aggregate": "stop"})

    refusal = train(message(payload, cfg), ctx).content.config_records["refusal"]

    assert refusal["code"] == AGGREGATE_STEP_TOO_LARGE and "last accepted global model" in refusal["reason"]


def test_the_accepted_model_is_kept_per_study_in_the_state_dir(tmp_path):
    from fl_client import accepted_model
    from fl_client.settings import from_node_config

    settings = from_node_config(node_config("unused", **{"state-dir": str(tmp_path)}))
    ctx = Context(run_id=1, node_id=3, node_config={}, state=RecordDict(), run_config={})
    model = {"b": np.array([0.5]), "w": np.array([1.0, -2.0])}
    accepted_model.save(settings, ctx, "0x" + "11" * 32, accepted_model.AcceptedModel(3, model))

    fresh = Context(run_id=1, node_id=3, node_config={}, state=RecordDict(), run_config={})  # a restarted process
    held = accepted_model.load(settings, fresh, "0x" + "11" * 32)
    assert held is not None and held.round == 3 and list(held.flat) == [0.5, 1.0, -2.0]
    assert accepted_model.load(settings, fresh, "0x" + "22" * 32) is None  # another study's state is not this one's


def test_the_signed_start_model_is_the_decrypted_model_or_the_one_kept(keys, round1, tmp_path):
    """Issue 15: the commitment's start-model-hash is the plaintext the hospital trained from: round 2 its
    decryption of round 1's aggregate divided by the weight; round 3, refusing a wrapped aggregate with
    keep-previous, the model it kept (round 2's)."""
    from eth_account import Account

    from fedledger.model_io import unflatten

    _, sec, pub = keys
    ctx, initial, blobs, n = round1
    key = tmp_path / "eth_key"
    key.write_text(Account.create().key.hex())
    ctx.node_config["eth-key"] = str(key)
    ledger = {"ledger": True, "chain-id": 31337, "contract": "0x" + "cd" * 20, "on-bad-aggregate": "keep-previous"}
    honest = ModelPayload(ciphertexts=blobs, total_weight=float(n))
    wrapped = ModelPayload(
        ciphertexts=ckks.sum_ciphertexts(pub, [blobs, [hostile_blob(sec, 0.9 * headroom(sec), times=3)]]),
        total_weight=float(2 * n),
    )
    # Act
    second = train(message(honest, round_config(2, to_hex(honest.digest()), **ledger)), ctx)
    third = train(message(wrapped, round_config(3, to_hex(wrapped.digest()), **ledger)), ctx)
    # Assert
    decrypted = to_hex(model_hash(unflatten(ckks.decrypt_update(sec, blobs, N_PARAMS, float(n)), initial)))
    assert second.content.config_records["commitment"]["start-model-hash"] == decrypted
    assert decrypted != to_hex(model_hash(initial))
    assert third.content.config_records["info"]["aggregate-refused"] == AGGREGATE_WRAPPED
    assert third.content.config_records["commitment"]["start-model-hash"] == decrypted
