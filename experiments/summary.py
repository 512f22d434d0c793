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

from experiments.plots import new_axes, plotted_metrics, save_png

METRICS = ("accuracy", "auc", "loss")  # a binary study's; another task's are its own (docs/TASKS.md)


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


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``a.b.c`` -> value, so two runs' settings compare key by key."""
    if not isinstance(cfg, dict):
        return {prefix: cfg}
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def settings_groups(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Runs grouped by every setting but the seed; each group named by the settings that differ between groups.

    Averaging runs at different settings (e.g. two epsilons) would describe no study that ran.
    """
    flat = [{k: v for k, v in _flatten(r["config"]).items() if k != "seed"} for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    varying = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for r, f in zip(runs, flat, strict=True):
        settings = {k: f.get(k) for k in varying}
        groups.setdefault(json.dumps(settings, sort_keys=True, default=str), (settings, []))[1].append(r)
    return list(groups.values())


def _metrics(runs: list[dict[str, Any]]) -> list[str]:
    """The study task's metrics, then the loss (binary: METRICS)."""
    return plotted_metrics(runs[0]) if runs else list(METRICS)


def _metric_stats(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    return {m: _stats([(r.get("final") or {}).get(m) for r in runs]) for m in _metrics(runs)}


def _baseline_stats(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Pooled and local-only headline metric (binary: accuracy; regression: RMSE) over every run's own
    baselines (each run's seed draws its own splits)."""
    head = _metrics(runs)[0]
    return {
        name: _stats([((r.get("baselines") or {}).get(name) or {}).get(head) for r in runs])
        for name in ("pooled", "local")
    }


def summarize(sweep_dir: Path) -> dict[str, Any]:
    """``summary.json``: one entry per group of runs that differ only by seed; ``overall`` only when there is one group."""
    runs = load_runs(sweep_dir)
    groups = settings_groups(runs)
    summary: dict[str, Any] = {
        "runs": len(runs),
        "groups": [
            {
                "settings": settings,
                "runs": len(members),
                "seeds": sorted(r["config"].get("seed") for r in members),
                **_metric_stats(members),
                "baselines": _baseline_stats(members),
            }
            for settings, members in groups
        ],
        "per_run": [
            {
                "dir": r["_dir"],
                "seed": r["config"]["seed"],
                "target_epsilon": group_key(r),
                **{m: (r.get("final") or {}).get(m) for m in _metrics(runs)},
                "max_epsilon": max((p["epsilon"][-1] for p in (r.get("privacy") or {}).values()), default=None),
            }
            for r in runs
        ],
    }
    if len(groups) == 1:
        summary["overall"] = _metric_stats(runs)
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    with open(sweep_dir / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(summary["per_run"][0]) if runs else ["dir"])
        w.writeheader()
        w.writerows(summary["per_run"])
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The terminal lines: one per group, named by what differs, never a mean across groups."""
    lines = []
    for g in summary["groups"]:
        acc = g["accuracy"]
        if acc["mean"] is None:
            continue
        label = ", ".join(f"{k}={v}" for k, v in g["settings"].items()) or "all runs"
        lines.append(f"{label}: accuracy {acc['mean']:.3f} ± {acc['std']:.3f} over {acc['n']} run(s)")
    return lines


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
    base = _baseline_stats(runs)  # every run's own baselines, not the first seed's
    ref = {
        "non-private federated": (non_private or {}).get("final", {}).get("accuracy"),
        "pooled (centralised)": base["pooled"]["mean"],
        "local only (mean)": base["local"]["mean"],
    }
    lines = [
        "| target epsilon | epsilon spent (max over hospitals, mean over runs) | final accuracy (mean ± sd) | runs |",
        "|---|---|---|---|",
    ]
    for eps, acc, spent in rows:
        lines.append(f"| {eps:g} | {spent['mean']:.3f} | {acc['mean']:.3f} ± {acc['std']:.3f} | {acc['n']} |")
    lines += [
        "",
        f"| reference (no DP; pooled and local: mean over the {base['pooled']['n']} runs' seeds) | final accuracy |",
    ]
    lines += ["|---|---|"]
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
        print(f"summary of {summary['runs']} runs -> {sweep_dir}/summary.json")
        for line in summary_lines(summary):
            print(f"  {line}")

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
