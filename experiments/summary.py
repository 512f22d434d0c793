"""Multirun summary: mean and spread across a sweep, and the privacy-utility table and plot.

Registered as a Hydra callback in conf/config.yaml, so every `-m` sweep ends
with `<sweep dir>/summary.json` and `summary.csv`; a sweep over
`privacy.target_epsilon` also gets `privacy_utility.md` and `.png`.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.plots import new_axes, save_png

METRICS = ("accuracy", "auc", "loss")


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(sweep_dir.glob("*/results.json")):
        results = json.loads(path.read_text())
        results["_dir"] = str(path.parent)
        runs.append(results)
    return runs


def _stats(values: list[float]) -> dict[str, float | int | None]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def group_key(results: dict[str, Any]) -> float | None:
    privacy = results["config"]["privacy"]
    return privacy.get("target_epsilon") if privacy.get("enabled") else None


def summarize(sweep_dir: Path) -> dict[str, Any]:
    runs = load_runs(sweep_dir)
    summary = {
        "runs": len(runs),
        "overall": {m: _stats([(r.get("final") or {}).get(m) for r in runs]) for m in METRICS},
        "per_run": [
            {
                "dir": r["_dir"],
                "seed": r["config"]["seed"],
                "target_epsilon": group_key(r),
                **{m: (r.get("final") or {}).get(m) for m in METRICS},
                "max_epsilon": max((p["epsilon"][-1] for p in (r.get("privacy") or {}).values()), default=None),
            }
            for r in runs
        ],
    }
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(sweep_dir / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(summary["per_run"][0]) if runs else ["dir"])
        w.writeheader()
        w.writerows(summary["per_run"])
    return summary


def privacy_utility(sweep_dir: Path, non_private: dict[str, Any] | None) -> Path | None:
    """Accuracy against epsilon with the non-private federated, pooled and local baselines."""
    runs = [r for r in load_runs(sweep_dir) if group_key(r) is not None]
    if not runs:
        return None
    by_eps: dict[float, list[dict[str, Any]]] = {}
    for r in runs:
        by_eps.setdefault(float(group_key(r)), []).append(r)
    rows = []
    for eps in sorted(by_eps):
        acc = _stats([r["final"].get("accuracy") for r in by_eps[eps]])
        spent = _stats([max(p["epsilon"][-1] for p in r["privacy"].values()) for r in by_eps[eps]])
        rows.append((eps, acc, spent))
    base = runs[0].get("baselines") or {}
    ref = {
        "non-private federated": (non_private or {}).get("final", {}).get("accuracy"),
        "pooled (centralised)": (base.get("pooled") or {}).get("accuracy"),
        "local only (mean)": (base.get("local") or {}).get("accuracy"),
    }
    lines = [
        "| target epsilon | epsilon spent (max over hospitals, mean over runs) | final accuracy (mean ± sd) | runs |",
        "|---|---|---|---|",
    ]
    for eps, acc, spent in rows:
        lines.append(f"| {eps:g} | {spent['mean']:.3f} | {acc['mean']:.3f} ± {acc['std']:.3f} | {acc['n']} |")
    lines += ["", "| reference (no DP) | final accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ref.items() if v is not None]
    (sweep_dir / "privacy_utility.md").write_text("\n".join(lines) + "\n")

    fig, ax = new_axes((6.5, 4))
    ax.errorbar(
        [r[0] for r in rows],
        [r[1]["mean"] for r in rows],
        yerr=[r[1]["std"] for r in rows],
        marker="o",
        capsize=3,
        label="federated + DP-SGD",
    )
    for (name, value), style in zip(ref.items(), ("-", "--", ":")):
        if value is not None:
            ax.axhline(value, linestyle=style, color="gray", label=name)
    ax.set(
        xscale="log",
        xlabel="target epsilon per hospital (delta fixed)",
        ylabel="final accuracy",
        title="privacy-utility trade-off",
    )
    ax.set_xticks([r[0] for r in rows], [f"{r[0]:g}" for r in rows])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    return save_png(fig, sweep_dir / "privacy_utility.png")


class SummaryCallback(Callback):
    """Hydra callback: summarise a multirun when it ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = summarize(sweep_dir)
        non_private = None
        if any(r["target_epsilon"] is not None for r in summary["per_run"]):
            non_private = self._non_private_reference(config, sweep_dir)
            privacy_utility(sweep_dir, non_private)
        acc = summary["overall"]["accuracy"]
        if acc["mean"] is not None:
            print(
                f"summary of {summary['runs']} runs: accuracy {acc['mean']:.3f} ± {acc['std']:.3f} -> {sweep_dir}/summary.json"
            )

    @staticmethod
    def _non_private_reference(config: DictConfig, sweep_dir: Path) -> dict[str, Any]:
        """One extra study with DP off and otherwise the sweep's settings."""
        from experiments.simulation import run_simulated_study

        out = sweep_dir / "non_private"
        if (out / "results.json").exists():
            return json.loads((out / "results.json").read_text())
        cfg = OmegaConf.to_container(config, resolve=False)
        cfg.pop("hydra", None)
        cfg["privacy"]["enabled"] = False
        cfg["privacy"]["target_epsilon"] = None
        cfg["audit"] = False
        return run_simulated_study(cfg, out)
