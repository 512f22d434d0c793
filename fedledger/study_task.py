"""The round task a study spec (``study.json``) defines: what every hospital receives, and the protocol's preimage.

The aggregator sends it (each round with its own round number and model hash),
the coordinator registers its protocol hash (:func:`fedledger.protocol.protocol_hash`)
as the study's ``configHash``, and the auditor rebuilds it from the study spec
to recompute each hospital's epsilon (``ledger/audit/epsilon_checks.py``),
trusting it only when it hashes to the chain's ``configHash``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedledger.config import (
    check_on_bad_aggregate,
    check_personalisation_epochs,
    check_proximal_mu,
    release_quorum,
)
from fedledger.round_task import RoundTask
from fedledger.server_opt import server_opt_settings
from fedledger.tasks import DEFAULT_TASK, check_num_outputs, task_options_text

__all__ = ["round_task"]


def round_task(spec: Mapping[str, Any]) -> RoundTask:
    """The study's task, as every hospital receives it; each round sends it with its own round and model hash."""
    cfg = spec["config"]
    chain = spec.get("chain") or {}
    task = spec.get("task") or {}  # the study's task (fedledger/tasks.py); a spec without one: binary
    own = cfg["model"].get("name") == "own"  # the researcher's own class; its source hash is the spec's
    opt = server_opt_settings(cfg["strategy"])
    return RoundTask(
        model=cfg["model"]["name"],
        hidden=int(cfg["model"]["hidden"]),
        seed=int(cfg["seed"]),
        local_epochs=int(cfg["train"]["local_epochs"]),
        batch_size=int(cfg["train"]["batch_size"]),
        lr=float(cfg["train"]["lr"]),
        momentum=float(cfg["train"]["momentum"]),
        weight_decay=float(cfg["train"]["weight_decay"]),
        personalisation_epochs=check_personalisation_epochs(cfg["train"].get("personalisation_epochs", 0)),
        num_rounds=int(cfg["num_rounds"]),
        strategy=str(cfg["strategy"]["name"]),
        proximal_mu=check_proximal_mu(str(cfg["strategy"]["name"]), cfg["strategy"].get("proximal_mu", 0.0)),
        server_lr=opt.server_lr if opt else 0.0,
        server_momentum=opt.server_momentum if opt else 0.0,
        server_beta1=opt.beta1 if opt else 0.0,
        server_beta2=opt.beta2 if opt else 0.0,
        server_tau=opt.tau if opt else 0.0,
        on_bad_aggregate=check_on_bad_aggregate(str(cfg["strategy"].get("on_bad_aggregate", "keep-previous"))),
        release_quorum=release_quorum(cfg["ledger"].get("release_quorum"), int(cfg["num_hospitals"])),
        privacy=cfg["privacy"],
        encrypted=bool(cfg["encryption"]["enabled"]),
        context_fingerprint=str((spec.get("keys") or {}).get("fingerprint") or ""),
        ledger=bool(chain.get("contract")),
        chain_id=int(chain.get("chain_id", 0)),
        contract=str(chain.get("contract", "")),
        study_id=spec["study_id"],
        server_round=0,  # run_rounds sets both per round (RoundTask.for_round)
        prev_hash="",
        task=str(task.get("name", DEFAULT_TASK)),
        num_outputs=check_num_outputs(str(task.get("name", DEFAULT_TASK)), int(task.get("num_outputs", 1))),
        model_target=str(cfg["model"]["_target_"]) if own else "",
        model_kwargs=dict(cfg["model"].get("kwargs") or {}) if own else {},
        model_source_hash=str(spec.get("model_source_hash") or "") if own else "",
        model_fix_batchnorm=bool(cfg["model"].get("fix_batchnorm", False)) if own else False,
        task_options=task_options_text(task.get("options")),
    )
