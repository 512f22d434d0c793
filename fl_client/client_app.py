"""The hospital's Flower ClientApp: check the model, train with DP, encrypt, sign, reply.

Every step is a function of its own module; this file only wires one round
together on the hospital side (see docs/ARCHITECTURE.md, "one round").
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log as flwr_log

from fedledger.dp.plan import DeltaError
from fedledger.hashing import model_hash, to_hex
from fedledger.model_io import flatten, num_params, unflatten
from fedledger.protocol import protocol_hash
from fedledger.round_task import EvaluationReport, Record, Refusal, RoundMessageError, RoundTask, TrainReport
from fedledger.wire import ModelPayload, checked_weight, decode, encode
from fl_client import accepted_model, personalisation, receipts, server_step
from fl_client import hospital_runtime as rt
from fl_client.accounting import BudgetExceededError
from fl_client.aggregate_bounds import KEEP_PREVIOUS, TOTAL_WEIGHT_INVALID, TOTAL_WEIGHT_MISMATCH
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import get_arrays, set_arrays
from fl_client.policy import AnswerPlan, HospitalPolicy, PolicyRefusal, check_task
from fl_client.release_signing import release_attestation
from fl_client.settings import from_context
from fl_client.tasks import Task
from fl_client.training import evaluate, train_local

log = logging.getLogger("fedledger.client")

app = ClientApp()


class Refused(Exception):
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


def _refuse(msg: Message, hospital: str, refused: Refused | PolicyRefusal) -> Message:
    log.warning("hospital %s refuses round: %s: %s", hospital, refused.code, refused.reason)
    refusal = Refusal(hospital, refused.code, refused.reason)
    return Message(content=RecordDict({Record.REFUSAL: ConfigRecord(refusal.to_wire())}), reply_to=msg)


def _report(wire: tuple[dict[str, Any], dict[str, Any]], first: dict[str, Any] | None = None) -> RecordDict:
    """A reply's records: ``first`` (the update), then the report's metrics and info."""
    metrics, info = wire
    return RecordDict({**(first or {}), Record.METRICS: MetricRecord(metrics), Record.INFO: ConfigRecord(info)})


class BadAggregate(Refused):
    """The decrypted aggregate fails a public bound (fl_client/aggregate_bounds.py); the code names which."""


def _checked_weight(payload: ModelPayload) -> int:
    """An encrypted aggregate's weight as a positive whole number of samples (before its hash is taken)."""
    try:
        return checked_weight(payload.total_weight)
    except ValueError as exc:
        raise Refused(TOTAL_WEIGHT_INVALID, f"the aggregate's total weight: {exc}") from None


def _received_model(msg: Message, settings: Any, task: RoundTask, model: Any, context: Context) -> dict:
    """Decode the global model, check its hash and weight against the round task and the chain, decrypt,
    hold the decryption to the public bounds (else :class:`BadAggregate`)."""
    payload = decode(msg.content.array_records[Record.GLOBAL])
    weight = _checked_weight(payload) if payload.encrypted else None
    global_round = task.server_round - 1 if msg.metadata.message_type == "train" else task.server_round
    digest = to_hex(payload.digest())
    if digest != task.prev_hash:
        raise Refused("hash-mismatch", f"received model hashes to {digest}, the round config says {task.prev_hash}")
    try:
        expected = rt.expected_global_hash(settings, task.study_id, task.server_round, msg.metadata.message_type)
    except rt.NotOnChain as exc:
        raise Refused("not-on-chain", str(exc)) from None
    if expected is not None and expected != digest:
        raise Refused("chain-mismatch", f"received model hashes to {digest}, but the chain records {expected}")
    if expected is not None:
        try:
            receipts.check_task_round(settings, task.study_id, global_round)
        except receipts.ChainRewritten as exc:
            raise Refused(receipts.CHAIN_REWRITTEN, str(exc)) from None
        recorded = rt.recorded_weight(settings, task.study_id, global_round) if weight is not None else None
        if recorded is not None and recorded != weight:
            raise Refused(
                TOTAL_WEIGHT_MISMATCH,
                f"the aggregate's total weight is {weight}, but the chain records {recorded} samples for round "
                f"{global_round}",
            )
    _operator_log(
        settings,
        "fedledger: hospital %s %s round %s: global model %s matches %s",
        settings.hospital_id,
        msg.metadata.message_type,
        task.server_round,
        digest,
        "the chain" if expected is not None else "the round config (no chain check)",
    )
    if task.encrypted or payload.encrypted:
        _check_study_key(settings, task)
    if not payload.encrypted:
        return _stepped(settings, context, task, global_round, payload.arrays, aggregate=False)
    template = get_arrays(model)
    flat, verdict = rt.decrypt_checked(settings, context, task, payload, num_params(template), global_round)
    if not verdict.ok:
        raise BadAggregate(str(verdict.code), f"round {global_round}'s aggregate: {verdict.reason}")
    return _stepped(settings, context, task, global_round, unflatten(flat, template), aggregate=True)


def _stepped(
    settings: Any, context: Context, task: RoundTask, global_round: int, arrays: dict, aggregate: bool
) -> dict:
    """The global model of ``global_round`` the hospitals use: with a server optimizer under CKKS, the step
    every hospital takes from the decrypted aggregate (fl_client/server_step.py); otherwise ``arrays``."""
    if server_step.settings_of(task) is None:
        return arrays
    try:
        flat = server_step.global_model(settings, context, task, global_round, flatten(arrays), aggregate=aggregate)
    except ValueError as exc:  # ServerStepError, or a saved state that is not this study's optimizer's
        raise Refused(server_step.SERVER_OPT_STATE, str(exc)) from None
    return unflatten(flat, arrays)


def _check_study_key(settings: Any, task: RoundTask) -> None:
    """A hospital holding another study's CKKS key says so before it trains or decrypts anything."""
    own_key = rt.context_fingerprint(settings)
    if task.context_fingerprint and own_key != task.context_fingerprint:
        raise Refused(
            "wrong-key",
            f"this hospital's CKKS key (context fingerprint {own_key}) is not the study's "
            f"({task.context_fingerprint}); ask the coordinator for the study's secret context",
        )


def _check_protocol(settings: Any, task: RoundTask) -> None:
    """The task must be the protocol the study registered (its configHash): same model, training and DP."""
    registered = rt.registered_protocol_hash(settings, task.study_id)
    if registered is None:
        return
    try:
        received = to_hex(protocol_hash(task))
    except RoundMessageError as exc:
        raise Refused("protocol-mismatch", f"the round task's protocol cannot be hashed: {exc}") from None
    if received != registered.lower():
        raise Refused(
            "protocol-mismatch",
            f"round {task.server_round}: the task's protocol hashes to {received}, but the study registered "
            f"{registered} (model, training or privacy parameters changed since registration)",
        )


def _round_setup(msg: Message, context: Context) -> tuple[Any, Any, RoundTask, HospitalPolicy]:
    node_config = dict(context.node_config)
    settings = from_context(node_config)
    task = RoundTask.from_wire(msg.content.config_records[Record.CONFIG])
    return settings, rt.hospital_data(settings), task, rt.hospital_policy(settings, node_config)


def _checked(
    settings: Any, data: Any, task: RoundTask, policy: HospitalPolicy, context: Context
) -> tuple[Any, HospitalPrivacy | None, Task]:
    """The hospital's policy on the task, before anything else is done with it, then the study's registered
    protocol and task type; then its model and accountant.

    Checked first on the task's own figures, then on the noise and delta the
    hospital's accountant derives from them (a target epsilon, a default delta).
    """
    own_source = rt.own_source_hash(task)
    n_params = rt.task_param_count(task, data.X_train.shape[1], own_source)
    plan = AnswerPlan(n_records=int(data.n_train), n_params=n_params, model_source_hash=own_source)
    check_task(policy, task, plan)
    _check_protocol(settings, task)
    try:
        study_task = rt.study_task(task, data)
    except ValueError as exc:
        raise Refused("task-mismatch", str(exc)) from None
    try:
        privacy = rt.privacy_for(settings, task, data.n_train, context, policy.epsilon_cap(settings.budget))
    except DeltaError as exc:  # delta not in (0, 1/n) for this hospital's records: no meaningful guarantee
        raise Refused("privacy-delta-invalid", str(exc)) from None
    if privacy is not None:
        check_task(policy, task, replace(plan, noise_multiplier=privacy.noise_multiplier, delta=privacy.delta))
    try:
        model = rt.task_model(task, data.X_train.shape[1])
    except ValueError as exc:  # an own model this hospital's copy cannot build as the task asks
        raise Refused("model-unbuildable", f"the task's model cannot be built here: {exc}") from None
    return model, privacy, study_task


def _model_to_train(
    msg: Message, settings: Any, task: RoundTask, model: Any, context: Context
) -> tuple[dict, BadAggregate | None]:
    """The received model, or (keep-previous) the last accepted one with the bound it replaced; stop: refuse."""
    try:
        return _received_model(msg, settings, task, model, context), None
    except BadAggregate as bad:
        held = accepted_model.load(settings, context, task.study_id) if task.on_bad_aggregate == KEEP_PREVIOUS else None
        if held is None:
            if task.on_bad_aggregate == KEEP_PREVIOUS:
                raise BadAggregate(bad.code, f"{bad.reason}; no accepted global model held to fall back to") from None
            raise
        log.warning(
            "hospital %s refuses %s (%s); training from the global model of round %d",
            settings.hospital_id,
            bad.reason,
            bad.code,
            held.round,
        )
        server_step.skip_round(settings, context, task, task.server_round - 1, num_params(held.arrays))
        return held.arrays, bad


def _budget_refusal(exc: BudgetExceededError, settings: Any, policy: HospitalPolicy) -> Refused:
    """The accountant's refusal, named for the policy when its max-epsilon is the cap it hit."""
    if policy.max_epsilon is not None and (settings.budget is None or policy.max_epsilon < settings.budget):
        return Refused("policy-epsilon-too-high", f"{exc} (the policy's max-epsilon)")
    return Refused("budget-exceeded", str(exc))


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings, data, task, policy = _round_setup(msg, context)
    try:
        model, privacy, study_task = _checked(settings, data, task, policy, context)
        if privacy is not None:
            try:
                rt.resume_privacy(settings, privacy, context)
            except ValueError as exc:  # its saved spend is another study's, or of another plan: never reset it
                raise Refused("privacy-state-mismatch", str(exc)) from None
        received, bad = _model_to_train(msg, settings, task, model, context)
        set_arrays(model, received)
        if privacy is not None:
            privacy.check_budget(task.server_round)
    except (Refused, PolicyRefusal) as refused:
        return _refuse(msg, settings.hospital_id, refused)
    except BudgetExceededError as exc:
        return _refuse(msg, settings.hospital_id, _budget_refusal(exc, settings, policy))

    if bad is None:
        accepted_model.save(
            settings, context, task.study_id, accepted_model.AcceptedModel(task.server_round - 1, received)
        )
    # The one point the model is what local training starts from: its hash is signed in the commitment.
    start_hash = model_hash(get_arrays(model))
    stats = train_local(
        model,
        data.X_train,
        data.y_train,
        task.train_config(),
        seed=rt.round_seed(settings, task.server_round),
        privacy=privacy,
        proximal_mu=task.proximal_mu,
        task=study_task,
    )
    arrays = get_arrays(model)
    n = int(data.n_train)

    if task.encrypted:
        blobs = rt.encrypt(rt.secret_context(settings), flatten(arrays), float(n))
        update = ModelPayload(ciphertexts=blobs)
    else:
        update = ModelPayload(arrays=arrays)

    personalisation.charge(settings, context, task, privacy)  # before the spend is saved, reported, signed
    dp: dict[str, Any] = {}
    if privacy is not None:
        summary = privacy.summary()
        dp = {
            "epsilon": float(summary["epsilon"]),
            "delta": float(summary["delta"]),
            "noise_multiplier": float(summary["noise_multiplier"]),
            "max_grad_norm": float(summary["max_grad_norm"]),
            "budget": float(summary["budget"]) if summary.get("budget") is not None else None,
            "accountant": str(summary["accountant"]),
            "noise_source": str(summary["noise_source"]),
        }
        rt.save_privacy(settings, privacy, context)
    epsilon = dp.get("epsilon", 0.0)
    _operator_log(
        settings,
        "fedledger: hospital %s round %d: trained on %d records, epsilon spent %.3f (budget %s)",
        settings.hospital_id,
        task.server_round,
        n,
        epsilon,
        settings.budget if settings.budget is not None else "none",
    )
    report = TrainReport(
        num_examples=n,
        train_loss=float(stats.loss),
        hospital=settings.hospital_id,
        context_fingerprint=rt.context_fingerprint(settings) if update.encrypted else None,
        aggregate_refused=bad.code if bad is not None else None,
        aggregate_refused_reason=bad.reason if bad is not None else None,
        **dp,
    )
    content = _report(report.to_wire(), {Record.UPDATE: encode(update)})
    signed = rt.commitment_for(settings, task, update.digest(), n, epsilon, start_hash)
    if signed is not None:
        content[Record.COMMITMENT] = ConfigRecord(signed.to_json())
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_global(msg: Message, context: Context) -> Message:
    settings, data, task, policy = _round_setup(msg, context)
    try:
        model, scratch, study_task = _checked(settings, data, task, policy, context)  # scratch: never resumed nor saved
        template = get_arrays(model)
        set_arrays(model, _received_model(msg, settings, task, model, context))
    except (Refused, PolicyRefusal) as refused:
        return _refuse(msg, settings.hospital_id, refused)
    res = evaluate(model, data.X_test, data.y_test, study_task, data.target_scale)
    # The model checked out (its hash is the chain's): sign the hash of the checkpoint as it would be released.
    stepped = flatten(get_arrays(model)) if server_step.settings_of(task) is not None else None
    release = release_attestation(settings, task, decode(msg.content.array_records[Record.GLOBAL]), template, stepped)
    binary = study_task.name == "binary"
    extra = {k: v for k, v in res.metrics.items() if k not in ("accuracy", "auc")}
    report = EvaluationReport(
        loss=float(res.loss),
        accuracy=float(res.accuracy) if binary or "accuracy" in res.metrics else None,
        num_examples=int(res.n),
        auc=float(res.auc) if res.auc is not None else None,
        hospital=settings.hospital_id,
        release=release,
        num_positives=int(data.y_test.sum()) if binary else None,
        validation=_validation(model, data, study_task),
        task_metrics=None if binary else extra,
        personal=personalisation.personal_metrics(
            settings, context, task, model, data, scratch, study_task, rt.round_seed(settings, task.server_round)
        ),
    )
    return Message(content=_report(report.to_wire()), reply_to=msg)


def _validation(model: Any, data: Any, task: Task) -> dict[str, float | None] | None:
    """The model on the hospital's validation rows (never trained on), for the best-round choice; None without."""
    if data.n_val == 0:
        return None
    res = evaluate(model, data.X_val, data.y_val, task, data.target_scale)
    if task.name == "binary":
        auc = float(res.auc) if res.auc is not None else None
        return {"loss": float(res.loss), "accuracy": float(res.accuracy), "auc": auc, "num-examples": int(res.n)}
    return {"loss": float(res.loss), **res.metrics, "num-examples": int(res.n)}
