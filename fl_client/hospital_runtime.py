"""Hospital-side services the ClientApp calls: cached data and keys, DP state, signing, chain checks.

Kept out of client_app.py so the Flower wiring stays readable and each
service can be tested without Flower.
"""

from __future__ import annotations

import json
import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context

from fedledger.config import PrivacyConfig
from fedledger.dp.epsilon import memo_export, memo_import
from fedledger.hashing import from_hex, to_hex
from fedledger.round_task import RoundTask
from fedledger.tasks import parse_task_options, task_options_text
from fl_client import accepted_model
from fl_client.aggregate_bounds import Verdict, check_aggregate
from fl_client.data import HospitalData, load_hospital
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model
from fl_client.own_model import build_own_model
from fl_client.policy import HospitalPolicy, load_policy
from fl_client.settings import HospitalSettings
from fl_client.tasks import Task, task_for

if TYPE_CHECKING:
    from fedledger.commitment import SignedCommitment

log = logging.getLogger("fedledger.client")
# Flower prints its records through its own handler; Opacus' import-time logging.basicConfig puts a
# second handler on the root logger, which would print each of them again.
logging.getLogger("flwr").propagate = False

PRIVACY_STATE_KEY = "privacy-accountant"
PRIVACY_MEMO_KEY = "privacy-memo"


@lru_cache(maxsize=8)
def _data(dataset_json: str, index: int, num_hospitals: int, seed: int, simulated: bool) -> HospitalData:
    cfg = json.loads(dataset_json)
    data_log = logging.getLogger("fl_client.data")
    level = data_log.level
    if simulated:  # the simulation logged every data warning once when it prepared the study
        data_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True):  # each DataWarning is logged by the loader itself
            warnings.simplefilter("always")
            if cfg.get("name") == "csv" and len(cfg.get("hospitals", [])) == 1:
                # A deployed hospital sees only its own CSV: no study-wide single-class check
                # (load_hospitals would call this one file "the study"); a single class only warns.
                return load_hospital(cfg, 0, 1, seed)
            return load_hospital(cfg, index, num_hospitals, seed)
    finally:
        data_log.setLevel(level)


def hospital_data(settings: HospitalSettings) -> HospitalData:
    """This hospital's own train/test split, loaded once per process."""
    return _data(settings.dataset, settings.index, settings.num_hospitals, settings.seed, settings.simulation)


@lru_cache(maxsize=4)
def _secret_context(path: str) -> Any:
    from fedledger.ckks import load_secret_context

    return load_secret_context(Path(path))


def secret_context(settings: HospitalSettings) -> Any:
    if not settings.secret_context:
        raise ValueError(
            f"hospital {settings.hospital_id} received an encrypted model but has no secret-context configured"
        )
    return _secret_context(settings.secret_context)


@lru_cache(maxsize=4)
def _fingerprint(path: str) -> str:
    from fedledger.ckks import context_fingerprint, serialize_aggregator_context

    return to_hex(context_fingerprint(serialize_aggregator_context(_secret_context(path))))


def context_fingerprint(settings: HospitalSettings) -> str:
    """Fingerprint of the public context derived from this hospital's secret key; the aggregator checks it."""
    secret_context(settings)
    return _fingerprint(str(settings.secret_context))


def encrypt(ctx: Any, flat: np.ndarray, weight: float) -> list[bytes]:
    from fedledger.ckks import encrypt_update

    return encrypt_update(ctx, flat, weight)


def decrypt(ctx: Any, blobs: list[bytes], n_params: int) -> np.ndarray:
    from fedledger.ckks import decrypt_update

    return decrypt_update(ctx, blobs, n_params)


def decrypt_checked(
    settings: HospitalSettings, context: Context, task: RoundTask, payload: Any, n_params: int, global_round: int
) -> tuple[np.ndarray, Verdict]:
    """Decrypt the aggregate of round ``global_round`` and hold it to the public bounds (fl_client/aggregate_bounds.py):
    the wrap, then the step from the last accepted global model this hospital holds."""
    from fedledger.ckks import decrypt_aggregate

    weight = int(payload.total_weight)  # checked a positive whole number before the hash was compared
    flat, wrap = decrypt_aggregate(secret_context(settings), payload.ciphertexts, n_params, weight)
    held = accepted_model.load(settings, context, task.study_id)
    previous = held.flat if held is not None and held.flat.size == flat.size else None
    apart = global_round - held.round if held is not None else 1
    return flat, check_aggregate(flat, wrap, previous, task, weight, apart)


def recorded_weight(settings: HospitalSettings, study_id: str, server_round: int) -> int | None:
    """The round's ``totalSamples`` on the chain this hospital reads (None: it reads none)."""
    if not settings.chain_rpc or not settings.contract:
        return None
    from fl_client.chain_view import recorded_total_samples  # defers web3 to hospitals that read a chain

    return recorded_total_samples(settings.chain_rpc, settings.contract, study_id, server_round)


def own_source_hash(task: RoundTask) -> str | None:
    """The hash of this hospital's own installed copy of a task's own model (None: built-in, or not installed)."""
    if not task.model_target:
        return None
    from fedledger.model_source import ModelSourceError, source_hash

    try:
        return source_hash(task.model_target)
    except ModelSourceError:
        return None


def task_model(task: RoundTask, n_features: int) -> torch.nn.Module:
    """The model a task asks for: a built-in, or (model=own) the class from this hospital's installed module."""
    if task.model_target:
        return build_own_model(
            task.model_target,
            task.model_kwargs,
            n_features,
            task.seed,
            task.model_fix_batchnorm,
            n_outputs=task.num_outputs,
            quiet=True,
        )
    return build_model(task.model, n_features, task.hidden, seed=task.seed, out_features=task.num_outputs)


def task_param_count(task: RoundTask, n_features: int, own_source: str | None = None) -> int | None:
    """Parameters of the model a task asks for, counted on torch's meta device (nothing allocated).

    None when the task names a model this hospital cannot build. An own model is
    built (on the CPU) only from an installed copy whose hash, ``own_source``, is
    the one the task registers: a different copy is never run.
    """
    if task.model_target:
        if own_source is None or own_source.lower() != task.model_source_hash.lower():
            return None
        try:
            return sum(p.numel() for p in task_model(task, n_features).parameters())
        except ValueError:
            return None
    try:
        with torch.device("meta"):
            model = build_model(task.model, n_features, task.hidden, seed=task.seed, out_features=task.num_outputs)
    except ValueError:
        return None
    return sum(p.numel() for p in model.parameters())


def study_task(task: RoundTask, data: HospitalData) -> Task:
    """The round's task (fl_client/tasks.py) when it is the one this hospital's data holds.

    Raises ``ValueError`` naming both when they differ (a regression round for
    a binary data set, another class count): the hospital refuses it.
    """
    held = (data.task, int(data.num_outputs))
    if (task.task, task.num_outputs) != held:
        raise ValueError(
            f"the round asks for task {task.task!r} with {task.num_outputs} output(s), but this hospital's data "
            f"is for task {held[0]!r} with {held[1]} output(s)"
        )
    held_options = task_options_text(data.task_options)
    if task.task_options != held_options:
        raise ValueError(
            f"the round's task options {task.task_options or '(none)'} differ from this hospital's data's "
            f"{held_options or '(none)'} (survival: its time grid and loss)"
        )
    return task_for(task.task, task.num_outputs, parse_task_options(task.task_options))


def hospital_policy(settings: HospitalSettings, node_config: dict[str, Any]) -> HospitalPolicy:
    """This hospital's policy (fl_client/policy.py), its own key's fingerprint read only when required."""
    return load_policy(node_config, settings, lambda: context_fingerprint(settings))


def round_seed(settings: HospitalSettings, server_round: int) -> int:
    """Distinct, reproducible seed per (study seed, hospital, round)."""
    return int(settings.seed) * 1_000_003 + settings.index * 10_007 + server_round


# -- differential privacy ----------------------------------------------------------


def privacy_state_file(settings: HospitalSettings) -> Path | None:
    """The hospital's one privacy account file (training and statistics queries); None without a state dir."""
    return Path(settings.state_dir) / "privacy_state.json" if settings.state_dir else None


def privacy_for(
    settings: HospitalSettings, task: RoundTask, n_records: int, context: Context, budget: float | None
) -> HospitalPrivacy | None:
    """The hospital's accountant for this task (noise given or derived), not resumed yet; None without DP.

    ``budget`` is the ε the accountant may reach (:meth:`HospitalPolicy.epsilon_cap`).
    A task without DP is refused by the policy check, before training, when the
    hospital's policy requires DP (fl_client/policy.py).
    """
    pcfg = task.privacy
    if not pcfg.get("enabled", False):
        return None
    _load_memo(settings, context)
    known = {k: v for k, v in pcfg.items() if k in PrivacyConfig.__dataclass_fields__}
    privacy = HospitalPrivacy(
        PrivacyConfig(**{**known, "noise_source": settings.noise_source}),  # the hospital chooses, not the task
        n_records=n_records,
        batch_size=task.batch_size,
        planned_rounds=task.num_rounds,
        local_epochs=task.dp_epochs,  # the personalisation it runs at evaluation is charged with training
        budget=budget,
    )
    privacy.study_id = task.study_id  # its saved spend is refused by another study's account
    return privacy


def resume_privacy(settings: HospitalSettings, privacy: HospitalPrivacy, context: Context) -> None:
    """The spend so far, from the state file or Flower's context state."""
    path = privacy_state_file(settings)
    resumed = path is not None and privacy.load_state(path)
    if not resumed and PRIVACY_STATE_KEY in context.state.config_records:
        privacy.load_state_dict(json.loads(str(context.state.config_records[PRIVACY_STATE_KEY]["state"])))


def _memo_file(settings: HospitalSettings) -> Path | None:
    return Path(settings.state_dir) / "privacy_memo.json" if settings.state_dir else None


def _load_memo(settings: HospitalSettings, context: Context) -> None:
    """Accountant results this hospital computed before (another worker, or before a restart)."""
    path = _memo_file(settings)
    if path is not None and path.exists():
        memo_import(json.loads(path.read_text()))
    elif PRIVACY_MEMO_KEY in context.state.config_records:
        memo_import(json.loads(str(context.state.config_records[PRIVACY_MEMO_KEY]["memo"])))


def _save_memo(settings: HospitalSettings, privacy: HospitalPrivacy, context: Context) -> None:
    mine = {k: v for k, v in memo_export().items() if repr(privacy.sample_rate) in k}
    context.state.config_records[PRIVACY_MEMO_KEY] = ConfigRecord({"memo": json.dumps(mine)})
    path = _memo_file(settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(mine))


def save_privacy(settings: HospitalSettings, privacy: HospitalPrivacy, context: Context) -> None:
    """Persist the spend after training, before the reply leaves the hospital."""
    state = privacy.state_dict()
    context.state.config_records[PRIVACY_STATE_KEY] = ConfigRecord({"state": json.dumps(state)})
    _save_memo(settings, privacy, context)
    path = privacy_state_file(settings)
    if path is not None:
        privacy.save_state(path)


# -- ledger ------------------------------------------------------------------------


def commitment_for(
    settings: HospitalSettings, task: RoundTask, update_hash: bytes, n: int, epsilon: float, start_hash: bytes
) -> SignedCommitment | None:
    """Sign the round commitment with the hospital's own key (None when the study has no ledger).

    ``start_hash`` is the model hash of the plaintext model this hospital trained from: signed, so the
    auditor can check every hospital of a round started from the same model."""
    if not task.ledger or not settings.eth_key:
        return None
    from fedledger.commitment import RoundCommitment, SignedCommitment, domain, epsilon_to_micro  # defer eth_account
    from ledger.accounts import load_eth_account

    commitment = RoundCommitment(
        study_id=from_hex(task.study_id),
        round=task.server_round,
        prev_global_hash=from_hex(task.prev_hash),
        update_hash=update_hash,
        sample_count=n,
        epsilon_micro=epsilon_to_micro(epsilon),
        start_model_hash=start_hash,
    )
    account = load_eth_account(settings.eth_key)
    return SignedCommitment.sign(account, domain(task.chain_id, task.contract), commitment, settings.hospital_id)


def registered_protocol_hash(settings: HospitalSettings, study_id: str) -> str | None:
    """The protocol hash the study registered: the chain's ``configHash`` when this hospital reads a chain,
    else its own settings' (the study spec in simulation, ``protocol-hash`` in a node config); None: neither."""
    if settings.chain_rpc and settings.contract:
        from fl_client.chain_view import registered_config_hash  # defers web3 to hospitals that read a chain

        return registered_config_hash(settings.chain_rpc, settings.contract, study_id)
    return settings.protocol_hash


CHAIN_WAIT_S = 60.0  # how long a hospital waits for a round's record to appear on its chain node


class NotOnChain(RuntimeError):
    """The chain holds no record of the model a task carries, even after waiting."""


def expected_global_hash(
    settings: HospitalSettings, study_id: str, server_round: int, message_type: str, wait_s: float | None = None
) -> str | None:
    """What the chain says the model we were sent must hash to (None: no chain reachable from here).

    Raises :class:`NotOnChain` when the round is still not on chain after ``wait_s``.
    """
    if not settings.chain_rpc or not settings.contract:
        return None
    from fl_client.chain_view import wait_for_recorded_hash  # defers web3 to hospitals that read a chain
    from ledger.reverts import LedgerRevert

    target_round = server_round - 1 if message_type == "train" else server_round
    wait_s = CHAIN_WAIT_S if wait_s is None else wait_s
    try:
        return wait_for_recorded_hash(settings.chain_rpc, settings.contract, study_id, target_round, wait_s)
    except LedgerRevert as exc:
        if exc.error != "RoundNotRecorded":
            raise
        raise NotOnChain(
            f"the chain has no record of round {target_round} of study {study_id} after waiting "
            f"{wait_s:.0f}s ({exc}); not using a model that is not on chain"
        ) from None
