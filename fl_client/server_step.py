"""The server optimizer's step, taken by each hospital on the aggregate it decrypted (CKKS studies).

With encryption the aggregator holds only ciphertexts, so it cannot apply
FedAvgM, FedAdam, FedYogi or FedAdagrad (fedledger/server_opt.py). Every
hospital decrypts the same aggregate with the same key, so every hospital
takes the same step from the same state, once per global round: the first
task carrying round g's aggregate (evaluation, then the next round's
training) steps from the model of round g - 1; later tasks reuse the result.
The state (the stepped model, the round it belongs to, the optimizer's
buffers and steps) is kept next to the DP accountant's state
(``state_dir/server_opt_<study id>.npz``, else Flower's per-node context
state). A round whose aggregate the hospital refused (keep-previous) is a
round without a step: the model and buffers stay, the round advances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context

from fedledger.files import load_npz, save_npz
from fedledger.round_task import RoundTask
from fedledger.server_opt import SERVER_OPTIMIZERS, HeldModel, ServerOptSettings
from fl_client.settings import HospitalSettings

ARRAYS_KEY = "server-opt-"  # + the study id
SERVER_OPT_STATE = "server-opt-state"  # the refusal code when the hospital cannot take the round's step


class ServerStepError(ValueError):
    """The hospital's optimizer state cannot produce this round's model (missing, or rounds behind)."""


def settings_of(task: RoundTask) -> ServerOptSettings | None:
    """The task's server optimizer when the hospitals must apply it (encrypted study); else None."""
    if task.strategy not in SERVER_OPTIMIZERS or not task.encrypted:
        return None
    return ServerOptSettings(
        task.strategy, task.server_lr, task.server_momentum, task.server_beta1, task.server_beta2, task.server_tau
    )


def _file(settings: HospitalSettings, study_id: str) -> Path | None:
    return Path(settings.state_dir) / f"server_opt_{study_id.lower()}.npz" if settings.state_dir else None


def save(settings: HospitalSettings, context: Context, study_id: str, held: HeldModel) -> None:
    """Persist the state (state file and context state) before the reply leaves the hospital."""
    arrays = held.pack()
    context.state.array_records[ARRAYS_KEY + study_id.lower()] = ArrayRecord(
        array_dict={k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()}
    )
    path = _file(settings, study_id)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, arrays)


def load(
    settings: HospitalSettings, context: Context, study_id: str, opt: ServerOptSettings, n_params: int
) -> HeldModel | None:
    """The study's state (state file first, else context state), refused unless it is the study's optimizer's."""
    path = _file(settings, study_id)
    if path is not None and path.exists():
        return HeldModel.unpack(load_npz(path), opt, n_params)
    record = context.state.array_records.get(ARRAYS_KEY + study_id.lower())
    if record is None:
        return None
    return HeldModel.unpack({k: record[k].numpy() for k in record}, opt, n_params)


def global_model(
    settings: HospitalSettings,
    context: Context,
    task: RoundTask,
    global_round: int,
    received: np.ndarray,
    *,
    aggregate: bool,
) -> np.ndarray:
    """The global model of ``global_round``: the received initial model (round 0, ``aggregate`` False), or the
    step from round ``global_round - 1``'s model with the decrypted aggregate ``received``; taken once, then reused.

    Raises :class:`ServerStepError` when the hospital holds no state for the previous round.
    """
    opt = settings_of(task)
    if opt is None:
        return received
    held = load(settings, context, task.study_id, opt, int(received.size))
    if held is not None and held.round == global_round:
        return held.model
    if not aggregate:  # the registered initial model: the optimizer starts here
        held = HeldModel.start(opt, received, global_round)
    elif held is None or held.round != global_round - 1:
        have = "none" if held is None else f"round {held.round}'s"
        raise ServerStepError(
            f"{opt.name} steps round {global_round}'s aggregate from round {global_round - 1}'s global model, and "
            f"this hospital holds {have} (it missed a round's aggregate, so its model would differ from the others')"
        )
    else:
        held.advance(global_round, received)
    save(settings, context, task.study_id, held)
    return held.model


def skip_round(settings: HospitalSettings, context: Context, task: RoundTask, global_round: int, n_params: int) -> None:
    """A refused aggregate (keep-previous): the optimizer takes no step, its model and buffers carry to this round."""
    opt = settings_of(task)
    if opt is None:
        return
    held = load(settings, context, task.study_id, opt, n_params)
    if held is not None and held.round < global_round:
        held.round = global_round
        save(settings, context, task.study_id, held)
