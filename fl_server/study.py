"""The aggregator's side of a study: strategy chain, wait for hospitals, rounds, results.

The study spec (``<run dir>/study.json``) is written by the launcher
(simulation) or by ``fedledger provision`` (deployment); it carries the
resolved config, the initial model, the key and chain locations.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.serverapp import Grid

from fedledger.files import load_npz
from fedledger.protocol import PROTOCOL_FIELDS
from fedledger.strategies import check_strategy
from fedledger.study_task import round_task
from fl_server.artifact_store import ArtifactStore
from fl_server.progress import RoundTable
from fl_server.results import privacy_section, round_entry, write_metrics_csv, write_results
from fl_server.resume import earlier_outcomes, resume_point, save_outcome
from fl_server.robust import strategy_for
from fl_server.round_protocol import RoundOutcome, StudyStopped, run_rounds
from fl_server.selection import BestRound, EarlyStopped
from fl_server.strategy import RoundStrategy

if TYPE_CHECKING:
    from fl_server.encrypted import EncryptedAggregation

log = logging.getLogger("fedledger.server")


def build_strategy(
    spec: dict[str, Any], initial: dict[str, np.ndarray]
) -> tuple[RoundStrategy, EncryptedAggregation | None]:
    """FedAvg or a robust rule (fl_server/robust.py), wrapped by encryption, then by the ledger commit.

    Returns the outermost strategy and the encryption layer (its report goes into results.json).
    """
    cfg = spec["config"]
    choice = check_strategy(
        cfg["strategy"], encrypted=bool(cfg["encryption"]["enabled"]), num_hospitals=int(cfg["num_hospitals"])
    )
    strategy: RoundStrategy = strategy_for(
        choice, cfg["strategy"]["fraction_train"], cfg["strategy"]["fraction_evaluate"], cfg["seed"], initial
    )
    encryption = None
    if cfg["encryption"]["enabled"]:
        from fl_server.encrypted import EncryptedAggregation  # defers tenseal to encrypted studies

        n_params = sum(a.size for a in initial.values())
        strategy = encryption = EncryptedAggregation(
            strategy, Path(spec["keys"]["aggregator_context"]), n_params, int(cfg["encryption"]["max_update_bytes"])
        )
    if (spec.get("chain") or {}).get("contract"):
        from fl_server.ledger_commit import LedgerCommit  # defers web3 to studies with a ledger

        strategy = LedgerCommit.from_spec(strategy, spec)
    return strategy, encryption


def wait_for_hospitals(grid: Grid, expected: int, timeout: float) -> None:
    """Deployment: SuperNodes connect in their own time; start when all (or the timeout) are there."""
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < expected and time.monotonic() < deadline:
        time.sleep(1.0)
    log.info("%d hospital node(s) connected", len(list(grid.get_node_ids())))


def run_study(grid: Grid, spec_path: Path) -> dict[str, Any]:
    spec = json.loads(Path(spec_path).read_text())
    cfg = spec["config"]
    run_dir = Path(spec["run_dir"])
    strategy, encryption = build_strategy(spec, load_npz(spec["initial_model"]))
    start_round, start_model = resume_point(spec)  # rounds already recorded: only with spec "resume": true
    wait_for_hospitals(grid, int(cfg["num_hospitals"]), float(spec.get("join_timeout_s", 120)))

    outcomes: list[RoundOutcome] = earlier_outcomes(spec, start_round)
    table = RoundTable(int(cfg["num_rounds"]), task=round_task(spec).task)
    best = BestRound(
        cfg["strategy"].get("selection_metric", "loss"),
        cfg["strategy"].get("early_stopping_patience"),
        task=round_task(spec).task,
    )
    for earlier in outcomes:  # a resumed study: its recorded rounds count towards the best round
        with contextlib.suppress(EarlyStopped):
            best.observe(earlier.server_round, earlier.validation)

    def on_round(o: RoundOutcome) -> None:
        outcomes.append(o)
        save_outcome(run_dir, o)
        table(o)
        best.observe(o.server_round, o.validation)

    stopped = None
    try:
        run_rounds(
            grid,
            strategy,
            start_model,
            round_task(spec),
            int(cfg["num_rounds"]),
            int(cfg["min_hospitals"]),
            ArtifactStore(run_dir),
            timeout=float(cfg["strategy"]["round_timeout_s"]),
            start_round=start_round,
            on_round=on_round,
        )
    except StudyStopped as exc:
        stopped = str(exc)
        log.error("study stopped: %s", stopped)
    except EarlyStopped as exc:
        log.warning("%s", exc)

    results = study_results(spec, outcomes, encryption, stopped)
    if any(o.validation for o in outcomes) or best.patience is not None:
        results["selection"] = best.section()
    write_results(run_dir / "results.json", results)
    write_metrics_csv(run_dir / "metrics.csv", outcomes)
    return results


def protocol_record(spec: dict[str, Any]) -> dict[str, Any]:
    """The protocol as it ran (defaults resolved, e.g. the release quorum), with the hash the chain registered."""
    task = round_task(spec)
    return {"hash": spec.get("protocol_hash"), **{name: read(task) for name, _, read in PROTOCOL_FIELDS}}


def study_results(
    spec: dict[str, Any], outcomes: list[RoundOutcome], encryption: EncryptedAggregation | None, stopped: str | None
) -> dict[str, Any]:
    cfg = spec["config"]
    last = outcomes[-1] if outcomes else None
    results: dict[str, Any] = {
        "config": cfg,
        "study_id": spec["study_id"],
        "rounds": [round_entry(o) for o in outcomes],
        "final": dict(last.metrics) if last else {},
        "stopped": stopped,
        "protocol": protocol_record(spec),
    }
    if cfg["privacy"]["enabled"]:
        results["privacy"] = privacy_section(outcomes)
    if encryption is not None:
        results["encryption"] = encryption.encryption_report(outcomes)
    if (spec.get("chain") or {}).get("contract"):
        chain = spec["chain"]
        results["ledger"] = {
            "backend": chain["backend"],
            "chain_id": chain["chain_id"],
            "contract": chain["contract"],
            "study_id": spec["study_id"],
            "rpc_url": chain.get("rpc_url"),
            "rounds": [dict(o.ledger, round=o.server_round) for o in outcomes if o.ledger],
        }
    return results
