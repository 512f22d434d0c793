"""Personalisation: each hospital also reports the global model fine-tuned on its own records.

With ``train.personalisation_epochs`` k > 0, a hospital evaluating round r's
global model fine-tunes a copy of it for k local epochs and reports that
copy's metrics next to the global model's, so it sees what the study gives
its own population. The copy never leaves the hospital, but the metrics do,
so the fine-tuning is DP-SGD with the study's noise, clipping and sample
rate, and it is paid for: when the hospital trains round r, its accountant is
charged for round r's training *and* the k epochs it will fine-tune for at
round r's evaluation (the plan counts ``local_epochs + k`` epochs a round,
``RoundTask.dp_epochs``), before its budget check and its signed commitment.
So the committed epsilon, the budget refusal and the auditor's recomputation
all include it. Round r's evaluation fine-tunes only when round r's training
charged for it, and only once (``state_dir/personalisation_<study id>.json``,
else Flower's context state): a hospital that did not train round r, or is
asked again, reports the global model's metrics only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context

from fedledger.round_task import RoundTask
from fl_client.dp_training import HospitalPrivacy
from fl_client.settings import HospitalSettings
from fl_client.tasks import Task
from fl_client.training import evaluate, train_local

STATE_KEY = "personalisation-"  # + the study id
SEED_OFFSET = 500_009  # the fine-tune's seed: the round's training seed plus this


def _file(settings: HospitalSettings, study_id: str) -> Path | None:
    return Path(settings.state_dir) / f"personalisation_{study_id.lower()}.json" if settings.state_dir else None


def _load(settings: HospitalSettings, context: Context, study_id: str) -> dict[str, list[int]]:
    path = _file(settings, study_id)
    if path is not None and path.exists():
        return dict(json.loads(path.read_text()))
    record = context.state.config_records.get(STATE_KEY + study_id.lower())
    return dict(json.loads(str(record["state"]))) if record is not None else {"charged": [], "used": []}


def _save(settings: HospitalSettings, context: Context, study_id: str, state: dict[str, list[int]]) -> None:
    context.state.config_records[STATE_KEY + study_id.lower()] = ConfigRecord({"state": json.dumps(state)})
    path = _file(settings, study_id)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state))


def charge(settings: HospitalSettings, context: Context, task: RoundTask, privacy: HospitalPrivacy | None) -> None:
    """After training round r: charge the accountant for round r's fine-tuning (before its state is saved and
    the commitment signed) and record that round r's evaluation may fine-tune."""
    if task.personalisation_epochs == 0:
        return
    if privacy is not None:
        privacy.charge(privacy.steps_per_round(task.personalisation_epochs))
    state = _load(settings, context, task.study_id)
    state["charged"] = sorted({*state["charged"], task.server_round})
    _save(settings, context, task.study_id, state)


def personal_metrics(
    settings: HospitalSettings,
    context: Context,
    task: RoundTask,
    model: torch.nn.Module,
    data: Any,
    privacy: HospitalPrivacy | None,
    study_task: Task,
    seed: int,
) -> dict[str, float | None] | None:
    """The metrics of the global model fine-tuned on this hospital's training rows; None when not charged for.

    ``privacy`` is a fresh account with the study's plan (its spend was charged at training): only its
    noise, clipping and sampling are used, and it is never saved.
    """
    if task.personalisation_epochs == 0:
        return None
    state = _load(settings, context, task.study_id)
    if privacy is not None:
        if task.server_round not in state["charged"] or task.server_round in state["used"]:
            return None
        state["used"] = sorted({*state["used"], task.server_round})
        _save(settings, context, task.study_id, state)  # before the fine-tune: a crash never runs it twice
    personal = copy.deepcopy(model)
    cfg = task.train_config(task.personalisation_epochs)
    train_local(personal, data.X_train, data.y_train, cfg, seed=seed + SEED_OFFSET, privacy=privacy, task=study_task)
    res = evaluate(personal, data.X_test, data.y_test, study_task, data.target_scale)
    return {"loss": float(res.loss), **{k: None if v is None else float(v) for k, v in res.metrics.items()}}
