"""Run one study in Flower's Simulation Engine, in-process, and everything around it.

set up (keys, chain, study spec) -> baselines -> Flower simulation -> release
checkpoints -> results.json + plots -> stop the chain -> audit.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

from coordinator.study_setup import PreparedStudy, prepare_study
from experiments.plots import plotted_metrics
from fedledger.study_spec import STUDY_ENV
from fl_client.data import DataWarning
from fl_server.results import merge_results, read_results

console = Console()
log = logging.getLogger("fedledger")


RUN_SIMULATION_DEPRECATED = "`run_simulation` function is deprecated"


class _DropOnce(logging.Filter):
    """Drops records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_flower() -> None:
    """The round table is what a researcher reads: every other line prints once, or not at all.

    Flower logs every message at INFO, and to its own handler and the root
    logger's both (each line twice under Hydra): flwr keeps its handler, stops
    propagating. ``run_simulation`` is deprecated in favour of ``flwr run``,
    which runs the ServerApp in a SuperLink process of its own: it cannot see
    the in-process eth_tester chain, the study spec's environment or this
    process's run folder, so the simulation keeps the one in-process engine
    Flower has and drops the notice. Each round's transaction is in the table's
    ledger column and results.json, so the ledger's per-round log lines stay at
    WARNING here. A DataWarning is logged by the loader itself
    (fl_client/data/preprocess.warn); its warnings.warn copy is for library callers.
    """
    for name in ("flwr", "ray", "alembic", "fedledger.ledger.journal", "fedledger.ledger.client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    flwr = logging.getLogger("flwr")
    flwr.propagate = False
    if not any(isinstance(f, _DropOnce) for f in flwr.filters):
        flwr.addFilter(_DropOnce(RUN_SIMULATION_DEPRECATED))
    warnings.filterwarnings("ignore", category=DataWarning)
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def simulate(prepared: PreparedStudy, cfg: dict[str, Any]) -> None:
    from flwr.simulation import run_simulation

    from fl_client.client_app import app as client_app
    from fl_server.server_app import app as server_app

    os.environ[STUDY_ENV] = str(prepared.spec_path)
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": int(cfg["ray_num_cpus"]), "logging_level": logging.WARNING, "log_to_driver": True},
    }
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=int(cfg["num_hospitals"]),
        backend_config=backend_config,
    )


def run_simulated_study(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The whole study; returns results.json's content."""
    quiet_flower()
    run_dir = Path(run_dir).resolve()
    t0 = time.perf_counter()
    console.rule(f"[bold]FedLedger study[/] -> {run_dir}")
    prepared = prepare_study(cfg, run_dir)
    try:
        spec = prepared.spec
        console.print(
            f"study {spec['study_id'][:18]}.. | {cfg['num_hospitals']} hospitals | {cfg['num_rounds']} rounds | "
            f"DP {'on' if cfg['privacy']['enabled'] else 'off'} | CKKS {'on' if cfg['encryption']['enabled'] else 'off'} | "
            f"ledger {cfg['ledger']['backend']}" + (f" @ {spec['chain']['contract']}" if spec.get("chain") else "")
        )
        baselines = None
        if cfg.get("baselines", True):
            from experiments.baselines import compute_baselines

            baselines = compute_baselines(prepared.hospitals, cfg)
        simulate(prepared, cfg)
        results_path = run_dir / "results.json"
        if not results_path.exists():
            raise RuntimeError(f"the simulation ended without writing {results_path}; see the log above")
        if cfg["encryption"]["enabled"] or spec.get("chain"):
            from experiments.release import release_checkpoints

            released = release_checkpoints(prepared)
            merge_results(results_path, released={str(r): h for r, h in released.items()})
        results = merge_results(results_path, baselines=baselines, wall_time_s=time.perf_counter() - t0)
    finally:
        prepared.close()

    from experiments.plots import plot_all

    plot_all(results, run_dir)
    if prepared.spec.get("task", {}).get("name") == "survival":
        from experiments.survival_plot import plot_survival_calibration

        plot_survival_calibration(run_dir, prepared.hospitals, cfg)
    if cfg.get("audit", True) and spec.get("chain"):
        from ledger.audit import audit_run_dir

        verdict = audit_run_dir(run_dir, console=console)
        results = merge_results(run_dir / "results.json", audit=verdict)
    print_summary(read_results(run_dir / "results.json"))
    return results


def _interval(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def print_summary(results: dict[str, Any]) -> None:
    final = results.get("final") or {}
    b = results.get("baselines") or {}

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    console.rule("[bold]result")
    if results.get("stopped"):
        console.print(f"[red]study stopped early:[/] {results['stopped']}")
    selection = results.get("selection") or {}
    if selection.get("best_round") is not None:
        stop = selection.get("stopped_early_after_round")
        console.print(
            f"best round {selection['best_round']} by validation {selection['metric']} {selection['best_value']:.4f}"
            + (f"; early stopping after round {stop}" if stop else "")
        )
    metrics = plotted_metrics(results)  # the task's metrics, then the loss
    console.print("final " + "  ".join(f"{m} {f(final.get(m))}" for m in metrics))
    last = (results.get("rounds") or [{}])[-1].get("per_hospital", {})
    if last:
        console.print("per hospital, with 95% intervals where defined (accuracy: Wilson; AUC: Hanley-McNeil):")
    for hospital, m in last.items():
        shown = [x for x in metrics if x != "loss"]
        console.print(
            f"  {hospital} (test n={m.get('num-examples')}): "
            + "  ".join(f"{x} {_interval(m.get(x), m.get(f'{x}-ci'))}" for x in shown)
        )
    if b:
        head = metrics[0]
        console.print(
            f"baselines: pooled {head} {f(b['pooled'].get(head))}, local-only {head} {f(b['local'].get(head))}"
        )
    for hospital, p in (results.get("privacy") or {}).items():
        console.print(
            f"  {hospital}: epsilon {p['epsilon'][-1]:.3f} (budget {p.get('budget')}, delta {p.get('delta'):.1e}, "
            f"noise {p.get('noise_source')})"
        )
    if results.get("ledger"):
        led = results["ledger"]
        console.print(f"ledger: {len(led['rounds'])} rounds on chain {led['chain_id']} contract {led['contract']}")
    if results.get("audit"):
        console.print(f"audit: [bold]{'PASS' if results['audit'].get('ok') else 'FAIL'}[/]")
