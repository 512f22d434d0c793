"""The aggregator's side of a study: strategy chain, wait for hospitals, rounds, results.

The study spec (``<run dir>/study.json``) is written by the launcher
(simulation) or by ``fedledger provision`` (deployment); it carries the
resolved config, the initial model, the key and chain locations.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedledger.files import load_npz
from fl_server.artifact_store import ArtifactStore
from fl_server.progress import RoundTable
from fl_server.results import privacy_section, round_entry, write_metrics_csv, write_results
from fl_server.resume import earlier_outcomes, resume_point, save_outcome
from fl_server.round_protocol import RoundOutcome, StudyStopped, run_rounds
from fl_server.strategy import FedAvgStrategy

log = logging.getLogger("fedledger.server")


def round_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Study-wide settings every hospital receives with each task."""
    cfg = spec["config"]
    chain = spec.get("chain") or {}
    return {
        "model": cfg["model"]["name"],
        "hidden": int(cfg["model"]["hidden"]),
        "seed": int(cfg["seed"]),
        "local-epochs": int(cfg["train"]["local_epochs"]),
        "batch-size": int(cfg["train"]["batch_size"]),
        "lr": float(cfg["train"]["lr"]),
        "momentum": float(cfg["train"]["momentum"]),
        "weight-decay": float(cfg["train"]["weight_decay"]),
        "num-rounds": int(cfg["num_rounds"]),
        "privacy": json.dumps(cfg["privacy"]),
        "encrypted": bool(cfg["encryption"]["enabled"]),
        "context-fingerprint": str((spec.get("keys") or {}).get("fingerprint") or ""),
        "ledger": bool(chain.get("contract")),
        "chain-id": int(chain.get("chain_id", 0)),
        "contract": str(chain.get("contract", "")),
    }


def build_strategy(spec: dict[str, Any], n_params: int) -> Strategy:
    """FedAvg, wrapped by encryption and then by the ledger commit when the study has them."""
    cfg = spec["config"]
    strategy: Strategy = FedAvgStrategy(
        cfg["strategy"]["fraction_train"], cfg["strategy"]["fraction_evaluate"], cfg["seed"]
    )
    if cfg["encryption"]["enabled"]:
        from fl_server.encrypted import EncryptedAggregation

        strategy = EncryptedAggregation(
            strategy, Path(spec["keys"]["aggregator_context"]), n_params, int(cfg["encryption"]["max_update_bytes"])
        )
    if (spec.get("chain") or {}).get("contract"):
        from fl_server.ledger_commit import LedgerCommit

        strategy = LedgerCommit.from_spec(strategy, spec)
    return strategy


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
    initial = load_npz(spec["initial_model"])
    n_params = sum(a.size for a in initial.values())
    strategy = build_strategy(spec, n_params)
    start_round, start_model = resume_point(spec)  # rounds already recorded: only with spec "resume": true
    wait_for_hospitals(grid, int(cfg["num_hospitals"]), float(spec.get("join_timeout_s", 120)))

    outcomes: list[RoundOutcome] = earlier_outcomes(spec, start_round)
    table = RoundTable(int(cfg["num_rounds"]))

    def on_round(o: RoundOutcome) -> None:
        outcomes.append(o)
        save_outcome(run_dir, o)
        table(o)

    stopped = None
    try:
        run_rounds(
            grid,
            strategy,
            start_model,
            round_config(spec),
            int(cfg["num_rounds"]),
            int(cfg["min_hospitals"]),
            ArtifactStore(run_dir),
            spec["study_id"],
            timeout=float(cfg["strategy"]["round_timeout_s"]),
            start_round=start_round,
            on_round=on_round,
        )
    except StudyStopped as exc:
        stopped = str(exc)
        log.error("study stopped: %s", stopped)
    finally:
        if hasattr(strategy, "close"):
            strategy.close()

    results = study_results(spec, outcomes, strategy, stopped)
    write_results(run_dir / "results.json", results)
    write_metrics_csv(run_dir / "metrics.csv", outcomes)
    return results


def study_results(
    spec: dict[str, Any], outcomes: list[RoundOutcome], strategy: Strategy, stopped: str | None
) -> dict[str, Any]:
    cfg = spec["config"]
    last = outcomes[-1] if outcomes else None
    results: dict[str, Any] = {
        "config": cfg,
        "study_id": spec["study_id"],
        "rounds": [round_entry(o) for o in outcomes],
        "final": dict(last.metrics) if last else {},
        "stopped": stopped,
    }
    if cfg["privacy"]["enabled"]:
        results["privacy"] = privacy_section(outcomes)
    if cfg["encryption"]["enabled"]:
        results["encryption"] = _find(strategy, "encryption_report")(outcomes)
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


def _find(strategy: Strategy, attr: str) -> Any:
    while not hasattr(strategy, attr):
        strategy = strategy.inner
    return getattr(strategy, attr)
