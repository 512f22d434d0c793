"""Algorithm comparison of a sweep (conf/experiment/algorithms.yaml): table and plot per partition.

For each partition (the dataset's partitioner and its concentration) and
each aggregation rule, the final accuracy and ROC-AUC, mean ± sd over the
seeds; a rule "beats FedAvg" on a partition when its mean accuracy exceeds
FedAvg's by more than the larger of the two standard deviations (the issue's
"by more than one standard deviation over 5 seeds", taken conservatively).
Writes ``<sweep dir>/algorithms.md``, ``algorithms.json`` and ``algorithms.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from experiments.plots import new_axes, save_png
from experiments.sweep_runs import load_runs, run_stats

BASELINE = "fedavg"


def partition_label(dataset: dict[str, Any]) -> str:
    """``iid``, ``dirichlet 0.1``, ``quantity 0.5``; a CSV study's partition is its files."""
    kind = dataset.get("partitioner")
    if kind is None:
        return f"{dataset.get('name', 'csv')} (own files)"
    if kind == "dirichlet":
        return f"dirichlet {dataset.get('alpha'):g}"
    if kind == "quantity":
        return f"quantity {dataset.get('quantity_alpha'):g}"
    return str(kind)


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (partition, rule): accuracy and AUC stats over the seeds, and the verdict against FedAvg."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        key = (partition_label(r["config"]["dataset"]), r["config"]["strategy"]["name"])
        cells.setdefault(key, []).append(r)
    rows = []
    for (partition, rule), members in sorted(cells.items()):
        final = [m.get("final") or {} for m in members]
        rows.append(
            {
                "partition": partition,
                "strategy": rule,
                "seeds": sorted(int(m["config"]["seed"]) for m in members),
                "accuracy": run_stats([f.get("accuracy") for f in final]),
                "auc": run_stats([f.get("auc") for f in final]),
            }
        )
    base = {row["partition"]: row["accuracy"] for row in rows if row["strategy"] == BASELINE}
    for row in rows:
        ref, acc = base.get(row["partition"]), row["accuracy"]
        if row["strategy"] == BASELINE or ref is None or ref["mean"] is None or acc["mean"] is None:
            row["vs_fedavg"] = None
            continue
        diff = acc["mean"] - ref["mean"]
        sd = max(acc["std"] or 0.0, ref["std"] or 0.0)
        row["vs_fedavg"] = {"difference": diff, "sd": sd, "beats": diff > sd}
    return rows


def _cell(stats: dict[str, Any]) -> str:
    return "n/a" if stats["mean"] is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| partition | strategy | final accuracy (mean ± sd) | final AUC (mean ± sd) | seeds | vs FedAvg (accuracy) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = row["vs_fedavg"]
        versus = (
            "—"
            if verdict is None
            else f"{verdict['difference']:+.3f} (sd {verdict['sd']:.3f}): {'beats' if verdict['beats'] else 'no'}"
        )
        lines.append(
            f"| {row['partition']} | {row['strategy']} | {_cell(row['accuracy'])} | {_cell(row['auc'])} "
            f"| {len(row['seeds'])} | {versus} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: one group per partition, one bar per rule, the seeds' sd as error bars."""
    partitions = sorted({r["partition"] for r in rows})
    rules = sorted({r["strategy"] for r in rows}, key=lambda s: (s != BASELINE, s))
    width = 0.8 / max(1, len(rules))
    fig, ax = new_axes((7.5, 4))
    x = np.arange(len(partitions))
    for i, rule in enumerate(rules):
        stats = [
            next((r["accuracy"] for r in rows if r["partition"] == p and r["strategy"] == rule), None)
            for p in partitions
        ]
        means = [s["mean"] if s and s["mean"] is not None else np.nan for s in stats]
        sds = [s["std"] if s and s["std"] is not None else 0.0 for s in stats]
        ax.bar(x + (i - (len(rules) - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=rule)
    finite = [r["accuracy"]["min"] for r in rows if r["accuracy"]["min"] is not None]
    ax.set(xlabel="partition", ylabel="final accuracy", title="algorithms across partitions (mean ± sd over seeds)")
    ax.set_xticks(x, partitions)
    ax.set_ylim(max(0.0, min(finite, default=0.0) - 0.05), 1.0)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def algorithms_report(sweep_dir: Path) -> Path | None:
    """The comparison of a sweep over ``strategy`` (None when it ran one rule only)."""
    runs = load_runs(sweep_dir)
    if len({r["config"]["strategy"]["name"] for r in runs}) < 2:
        return None
    rows = compare(runs)
    (sweep_dir / "algorithms.json").write_text(json.dumps(rows, indent=2))
    (sweep_dir / "algorithms.md").write_text(table(rows))
    return plot(rows, sweep_dir / "algorithms.png")
