"""The hospital's Flower ClientApp: check the model, train with DP, encrypt, sign, reply.

Every step is a function of its own module; this file only wires one round
together on the hospital side (see docs/ARCHITECTURE.md, "one round").
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log as flwr_log

from fedledger.config import TrainConfig
from fedledger.hashing import to_hex
from fedledger.model_io import flatten, unflatten
from fedledger.wire import ModelPayload, decode, encode
from fl_client import hospital_runtime as rt
from fl_client.models import build_model, get_arrays, set_arrays
from fl_client.settings import from_context
from fl_client.training import evaluate, train_local

log = logging.getLogger("fedledger.client")

app = ClientApp()


class Refusal(Exception):
    """The hospital declines this round (budget spent, model not the one on chain)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _operator_log(settings: Any, fmt: str, *args: Any) -> None:
    """A hospital operator's per-task record: Flower's logger in a SuperNode's output (INFO); in a
    simulation, where a researcher reads the round table instead, only at DEBUG."""
    if settings.simulation:
        log.debug(fmt, *args)
    else:
        flwr_log(logging.INFO, fmt, *args)


def _refuse(msg: Message, hospital: str, refusal: Refusal) -> Message:
    log.warning("hospital %s refuses round: %s", hospital, refusal.reason)
    content = RecordDict(
        {"refusal": ConfigRecord({"hospital": hospital, "code": refusal.code, "reason": refusal.reason})}
    )
    return Message(content=content, reply_to=msg)


def _received_model(msg: Message, settings: Any, cfg: ConfigRecord, model: Any) -> dict:
    """Decode the global model, check its hash against the round config and the chain, decrypt."""
    payload = decode(msg.content.array_records["global"])
    digest = to_hex(payload.digest())
    if digest != cfg["prev-hash"]:
        raise Refusal("hash-mismatch", f"received model hashes to {digest}, the round config says {cfg['prev-hash']}")
    try:
        expected = rt.expected_global_hash(
            settings, str(cfg["study-id"]), int(cfg["server-round"]), msg.metadata.message_type
        )
    except rt.NotOnChain as exc:
        raise Refusal("not-on-chain", str(exc)) from None
    if expected is not None and expected != digest:
        raise Refusal("chain-mismatch", f"received model hashes to {digest}, but the chain records {expected}")
    _operator_log(
        settings,
        "fedledger: hospital %s %s round %s: global model %s matches %s",
        settings.hospital_id,
        msg.metadata.message_type,
        cfg["server-round"],
        digest,
        "the chain" if expected is not None else "the round config (no chain check)",
    )
    template = get_arrays(model)
    if cfg.get("encrypted", False) or payload.encrypted:
        _check_study_key(settings, cfg)
    if not payload.encrypted:
        return payload.arrays
    ctx = rt.secret_context(settings)
    flat = rt.decrypt(ctx, payload.ciphertexts, flatten(template).size) / payload.total_weight
    return unflatten(flat, template)


def _check_study_key(settings: Any, cfg: ConfigRecord) -> None:
    """A hospital holding another study's CKKS key says so before it trains or decrypts anything."""
    study_key = str(cfg.get("context-fingerprint", ""))
    own_key = rt.context_fingerprint(settings)
    if study_key and own_key != study_key:
        raise Refusal(
            "wrong-key",
            f"this hospital's CKKS key (context fingerprint {own_key}) is not the study's "
            f"({study_key}); ask the coordinator for the study's secret context",
        )


def _round_setup(msg: Message, context: Context) -> tuple[Any, Any, ConfigRecord, Any]:
    settings = from_context(dict(context.node_config))
    data = rt.hospital_data(settings)
    cfg = msg.content.config_records["config"]
    model = build_model(str(cfg["model"]), data.X_train.shape[1], int(cfg["hidden"]), seed=int(cfg.get("seed", 0)))
    return settings, data, cfg, model


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings, data, cfg, model = _round_setup(msg, context)
    server_round = int(cfg["server-round"])
    try:
        set_arrays(model, _received_model(msg, settings, cfg, model))
        privacy = rt.privacy_for(settings, cfg, data.n_train, context)
        if privacy is not None:
            rt.check_budget(privacy, server_round)
    except Refusal as refusal:
        return _refuse(msg, settings.hospital_id, refusal)
    except rt.BudgetRefusal as exc:
        return _refuse(msg, settings.hospital_id, Refusal("budget-exceeded", str(exc)))

    tcfg = TrainConfig(
        local_epochs=int(cfg["local-epochs"]),
        batch_size=int(cfg["batch-size"]),
        lr=float(cfg["lr"]),
        momentum=float(cfg["momentum"]),
        weight_decay=float(cfg["weight-decay"]),
    )
    stats = train_local(
        model, data.X_train, data.y_train, tcfg, seed=rt.round_seed(settings, server_round), privacy=privacy
    )
    arrays = get_arrays(model)
    n = int(data.n_train)

    if cfg.get("encrypted", False):
        blobs = rt.encrypt(rt.secret_context(settings), flatten(arrays), float(n))
        update = ModelPayload(ciphertexts=blobs)
    else:
        update = ModelPayload(arrays=arrays)

    metrics = MetricRecord({"num-examples": n, "train-loss": float(stats.loss)})
    content = RecordDict({"update": encode(update), "metrics": metrics})
    meta = {"hospital": settings.hospital_id}
    if update.encrypted:
        meta["context-fingerprint"] = rt.context_fingerprint(settings)
    epsilon = 0.0
    if privacy is not None:
        summary = privacy.summary()
        epsilon = float(summary["epsilon"])
        metrics["epsilon"] = epsilon
        metrics["delta"] = float(summary["delta"])
        metrics["noise-multiplier"] = float(summary["noise_multiplier"])
        metrics["max-grad-norm"] = float(summary["max_grad_norm"])
        if summary.get("budget") is not None:
            metrics["budget"] = float(summary["budget"])
        meta["accountant"] = str(summary["accountant"])
        rt.save_privacy(settings, privacy, context)
    _operator_log(
        settings,
        "fedledger: hospital %s round %d: trained on %d records, epsilon spent %.3f (budget %s)",
        settings.hospital_id,
        server_round,
        n,
        epsilon,
        settings.budget if settings.budget is not None else "none",
    )
    content["info"] = ConfigRecord(meta)
    commitment = rt.commitment_for(settings, cfg, update.digest(), n, epsilon)
    if commitment is not None:
        content["commitment"] = ConfigRecord(commitment)
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_global(msg: Message, context: Context) -> Message:
    settings, data, cfg, model = _round_setup(msg, context)
    try:
        set_arrays(model, _received_model(msg, settings, cfg, model))
    except Refusal as refusal:
        return _refuse(msg, settings.hospital_id, refusal)
    res = evaluate(model, data.X_test, data.y_test)
    metrics = MetricRecord(
        {
            "loss": float(res.loss),
            "accuracy": float(res.accuracy),
            "num-examples": int(res.n),
            "auc": float(res.auc) if res.auc is not None else 0.0,
            "auc-defined": int(res.auc is not None),
        }
    )
    content = RecordDict({"metrics": metrics, "info": ConfigRecord({"hospital": settings.hospital_id})})
    return Message(content=content, reply_to=msg)
