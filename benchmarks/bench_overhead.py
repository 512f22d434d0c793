"""Round overhead of privacy over plain Flower, side by side.

    python -m benchmarks.bench_overhead [--rounds 6] [--repeats 1] [--models logreg,mlp]

The same study (breast_cancer, 4 hospitals) runs as real ``python -m
experiments.run`` subprocesses (Flower Simulation Engine on Ray) with:

    plain   privacy=off        encryption=off  ledger=none   (plain Flower FedAvg)
    dp      privacy=target_eps encryption=off  ledger=none
    ckks    privacy=off        encryption=ckks ledger=none
    ledger  privacy=off        encryption=off  ledger=anvil
    all     privacy=target_eps encryption=ckks ledger=anvil

Configurations are interleaved (repeat-major, then model, then
configuration) so that drift of a shared machine hits all of them alike.
``baselines=false audit=false`` for every run; round 1 (Ray actor start-up,
imports) is dropped from the per-round mean. The audit of the ``all`` run is
timed separately (``fedledger audit --run-dir``). Ratios are to ``plain``
of the same model. Writes benchmarks/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.output import finish

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "overhead.json"

CONFIGS: dict[str, list[str]] = {
    "plain": ["privacy=off", "encryption=off", "ledger=none"],
    "dp": ["privacy=target_eps", "encryption=off", "ledger=none"],
    "ckks": ["privacy=off", "encryption=ckks", "ledger=none"],
    "ledger": ["privacy=off", "encryption=off", "ledger=anvil"],
    "all": ["privacy=target_eps", "encryption=ckks", "ledger=anvil"],
}
TARGET_RATIO = 1.5


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def import_psutil() -> Any:
    """psutil ships inside Ray (ray/thirdparty_files) when it is not installed on its own."""
    try:
        import psutil
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("ray")
        sys.path.append(str(Path(spec.origin).parent / "thirdparty_files"))
        import psutil
    return psutil


class TreeMemorySampler:
    """Peak of the summed RSS of a process and all its descendants (driver, raylet, Ray workers, anvil).

    RSS counts shared pages (Ray's object store in /dev/shm, shared libraries)
    once per process, so the sum is an upper bound of the real footprint.
    """

    def __init__(self, pid: int, interval: float = 0.5):
        psutil = import_psutil()
        self._psutil = psutil
        self.pid, self.interval = pid, interval
        self.peak_bytes = 0
        self.peak_excl_anvil_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        ps = self._psutil
        try:
            root = ps.Process(self.pid)
            procs = [root] + root.children(recursive=True)
        except ps.Error:
            return
        total = anvil = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
                total += rss
                if p.name().startswith("anvil"):
                    anvil += rss
            except ps.Error:
                pass
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_excl_anvil_bytes = max(self.peak_excl_anvil_bytes, total - anvil)
        self.peak_processes = max(self.peak_processes, len(procs))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_study(
    overrides: list[str], run_dir: Path, log_path: Path, timeout: float = 3600.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One ``python -m experiments.run`` subprocess; returns results.json plus wall/memory figures."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "experiments.run", *overrides, f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        with TreeMemorySampler(proc.pid) as mem:
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # the whole tree: Ray workers and anvil outlive the driver otherwise
                ps = import_psutil()
                try:
                    tree = ps.Process(proc.pid).children(recursive=True)
                except ps.Error:
                    tree = []
                proc.kill()
                for child in tree:
                    try:
                        child.kill()
                    except ps.Error:
                        pass
                proc.wait()
                rc = -9
    wall = time.perf_counter() - t0
    results_path = run_dir / "results.json"
    if rc != 0 or not results_path.exists():
        tail = log_path.read_text()[-3000:] if log_path.exists() else ""
        raise RuntimeError(f"study {' '.join(overrides)} failed (rc={rc}); log {log_path}:\n{tail}")
    results = json.loads(results_path.read_text())
    return {
        "results": results,
        "process_wall_s": wall,
        "peak_rss_bytes": mem.peak_bytes,
        "peak_rss_excl_anvil_bytes": mem.peak_excl_anvil_bytes,
        "peak_processes": mem.peak_processes,
    }


def round_stats(results: dict[str, Any], drop_first: bool = True) -> dict[str, Any]:
    rounds = results["rounds"]
    kept = rounds[1:] if drop_first and len(rounds) > 1 else rounds
    durations = [float(r["duration_s"]) for r in kept]
    gas = [int(r["ledger"]["gas_used"]) for r in kept if r.get("ledger") and r["ledger"].get("gas_used") is not None]
    phases: dict[str, list[float]] = {}
    for r in kept:
        for k, v in (r.get("phases_s") or {}).items():
            phases.setdefault(k, []).append(float(v))
    return {
        "rounds": len(rounds),
        "phases_s": {k: round(statistics.mean(v), 4) for k, v in phases.items()},
        "round1_s": round(float(rounds[0]["duration_s"]), 3),
        "round_s_mean": round(statistics.mean(durations), 4),
        "round_s_median": round(statistics.median(durations), 4),
        "round_s_all": [round(d, 3) for d in durations],
        "bytes_per_hospital": statistics.mean(float(r["bytes_per_hospital"]) for r in kept),
        "gas_per_round": round(statistics.mean(gas)) if gas else None,
        "wall_time_s": round(float(results.get("wall_time_s") or 0.0), 2),
        "final_accuracy": (results.get("final") or {}).get("accuracy"),
    }


def time_audit(run_dir: Path) -> dict[str, Any]:
    exe = Path(sys.executable).with_name("fedledger")
    cmd = (
        [str(exe), "audit", "--run-dir", str(run_dir)]
        if exe.exists()
        else [sys.executable, "-m", "coordinator.cli", "audit", "--run-dir", str(run_dir)]
    )
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return {"audit_s": round(time.perf_counter() - t0, 2), "audit_rc": p.returncode, "audit_ok": p.returncode == 0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--hospitals", type=int, default=4)
    ap.add_argument("--models", default="logreg,mlp")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workdir", type=Path, default=None, help="keep run dirs here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--resume", action="store_true", help="reuse finished runs found in --workdir")
    ap.add_argument(
        "--existing-only",
        action="store_true",
        help="summarise only the finished runs in --workdir; run nothing (missing ones are listed)",
    )
    args = ap.parse_args(argv)

    models = [m for m in args.models.split(",") if m]
    configs = [c for c in args.configs.split(",") if c]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fedledger-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    audits: dict[str, Any] = {}
    missing: list[str] = []
    t_start = time.perf_counter()
    for rep in range(args.repeats):
        for model in models:
            for name in configs:
                run_dir = work / f"{model}-{name}-{rep}"
                overrides = [
                    *CONFIGS[name],
                    f"model={model}",
                    "dataset=breast_cancer",
                    f"num_hospitals={args.hospitals}",
                    f"num_rounds={args.rounds}",
                    "baselines=false",
                    "audit=false",
                    "seed=0",
                ]
                done = run_dir / "results.json"
                if (args.resume or args.existing_only) and done.exists():
                    r = {"results": json.loads(done.read_text()), "process_wall_s": None, "peak_rss_bytes": None}
                    print(f"[overhead] rep {rep} {model:6s} {name:6s} reused {done}", flush=True)
                elif args.existing_only:
                    missing.append(f"{model}/{name}/{rep}")
                    continue
                else:
                    print(f"[overhead] rep {rep} {model:6s} {name:6s} ...", flush=True)
                    r = run_study(overrides, run_dir, work / f"{model}-{name}-{rep}.log")
                stats = round_stats(r["results"])
                row = {
                    "model": model,
                    "config": name,
                    "repeat": rep,
                    "overrides": overrides,
                    **stats,
                    "process_wall_s": round(r["process_wall_s"], 2) if r["process_wall_s"] is not None else None,
                    "peak_rss_mib": round(r["peak_rss_bytes"] / 2**20) if r["peak_rss_bytes"] is not None else None,
                }
                if name == "all" and rep == 0 and run_dir.exists():
                    audits[model] = time_audit(run_dir)
                    row.update(audits[model])
                runs.append(row)
                print(
                    f"[overhead]   round {stats['round_s_mean']:.3f}s (round 1 {stats['round1_s']:.1f}s), "
                    f"{stats['bytes_per_hospital']:.0f} B/hospital, gas {stats['gas_per_round']}",
                    flush=True,
                )

    summary: list[dict[str, Any]] = []
    models = [m for m in models if any(r["model"] == m for r in runs)]
    for model in models:
        base_rows = [r for r in runs if r["model"] == model and r["config"] == "plain"]
        base_s = statistics.mean(r["round_s_mean"] for r in base_rows) if base_rows else None
        base_b = statistics.mean(r["bytes_per_hospital"] for r in base_rows) if base_rows else None
        for name in configs:
            rows = [r for r in runs if r["model"] == model and r["config"] == name]
            if not rows:
                continue
            s = statistics.mean(r["round_s_mean"] for r in rows)
            b = statistics.mean(r["bytes_per_hospital"] for r in rows)
            phase_names = sorted({k for r in rows for k in r.get("phases_s", {})})
            entry = {
                "model": model,
                "config": name,
                "round_s": round(s, 4),
                "round_s_median": round(statistics.median(x for r in rows for x in r["round_s_all"]), 4),
                "phases_s": {
                    k: round(statistics.mean(r["phases_s"].get(k, 0.0) for r in rows), 4) for k in phase_names
                },
                "round_s_spread": [
                    min(x for r in rows for x in r["round_s_all"]),
                    max(x for r in rows for x in r["round_s_all"]),
                ],
                "rounds_s": [x for r in rows for x in r["round_s_all"]],
                "bytes_per_hospital": round(b),
                "gas_per_round": rows[0]["gas_per_round"],
                "time_ratio": round(s / base_s, 2) if base_s else None,
                "bytes_ratio": round(b / base_b, 2) if base_b else None,
            }
            if name == "all" and model in audits:
                entry["audit_s"] = audits[model]["audit_s"]
            summary.append(entry)
    all_ratios = {e["model"]: e["time_ratio"] for e in summary if e["config"] == "all"}
    out = {
        "benchmark": "round overhead over plain Flower FedAvg",
        "machine": machine(),
        "hospitals": args.hospitals,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "dropped_rounds": [1],
        "note": "round_s = mean duration_s of rounds 2..N from results.json (train + aggregate + artifacts + "
        "ledger commit + federated evaluation); round 1 includes Ray actor start-up and imports. "
        "Ratios are to 'plain' of the same model. The machine was shared with other work.",
        "target_all_ratio": TARGET_RATIO,
        "all_ratio": all_ratios,
        "meets_target": all(v is not None and v <= TARGET_RATIO for v in all_ratios.values()) if all_ratios else None,
        "not_measured": missing,
        "summary": summary,
        "runs": runs,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    finish(out, args.out, markdown, work if args.workdir is None else None)
    return out


def markdown(out: dict[str, Any]) -> str:
    lines = [
        "| model | configuration | s / round (mean) | median | x plain | train | aggregate + store | commit "
        "| evaluate | bytes / hospital / round | x plain | gas / round |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in out["summary"]:
        gas = f"{e['gas_per_round']:,}" if e.get("gas_per_round") else "-"
        ph = e.get("phases_s", {})

        def p(*names: str) -> str:
            return f"{sum(ph.get(n, 0.0) for n in names):.3f}" if ph else "-"

        lines.append(
            f"| {e['model']} | {e['config']} | {e['round_s']:.3f} | {e.get('round_s_median', 0):.3f} | "
            f"{e['time_ratio']:.2f} | {p('train')} | {p('aggregate', 'store')} | {p('commit')} | "
            f"{p('evaluate')} | {e['bytes_per_hospital']:,} | {e['bytes_ratio']:.1f} | {gas} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
