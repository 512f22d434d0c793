"""results.json and metrics.csv: what a researcher reads after a study.

Keys (stable): config, rounds, final, baselines, privacy, encryption, ledger,
stopped. Later steps (baselines, audit) merge into the same file. Each
round's per_hospital rows carry 95% intervals (docs/INTERFACES.md, "results.json").
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fl_server.round_protocol import RoundOutcome


def json_safe(value: Any) -> Any:
    """JSON has no NaN: undefined metrics (e.g. AUC of a one-class hospital) become null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def round_entry(outcome: RoundOutcome) -> dict[str, Any]:
    entry = asdict(outcome)
    entry["round"] = entry.pop("server_round")
    return entry


def privacy_section(outcomes: list[RoundOutcome]) -> dict[str, Any]:
    """Per hospital: cumulative epsilon per round it took part in, plus its DP parameters."""
    out: dict[str, Any] = {}
    for o in outcomes:
        for hospital, p in o.privacy.items():
            h = out.setdefault(
                hospital,
                {
                    "epsilon": [],
                    "rounds": [],
                    "delta": p.get("delta"),
                    "budget": p.get("budget"),
                    "noise_multiplier": p.get("noise-multiplier"),
                    "max_grad_norm": p.get("max-grad-norm"),
                    "accountant": p.get("accountant"),
                    "noise_source": p.get("noise-source"),
                },
            )
            h["epsilon"].append(p["epsilon"])
            h["rounds"].append(o.server_round)
    return dict(sorted(out.items()))


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(json_safe(results), indent=2, sort_keys=False))


def read_results(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def merge_results(path: Path, **sections: Any) -> dict[str, Any]:
    results = read_results(path) if Path(path).exists() else {}
    results.update(sections)
    write_results(path, results)
    return results


def metric_columns(outcomes: list[RoundOutcome]) -> list[str]:
    """The metrics the rounds report, in their order (binary: accuracy, auc, loss; another task its own)."""
    return list(dict.fromkeys(k for o in outcomes for k in o.metrics)) or ["accuracy", "auc", "loss"]


def write_metrics_csv(path: Path, outcomes: list[RoundOutcome]) -> None:
    """One row per (round, hospital) plus an 'overall' row per round; a column per metric of the study's task."""
    columns = metric_columns(outcomes)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["round", "hospital", *columns, "num_examples", "epsilon", "participated"])
        for o in outcomes:
            w.writerow(
                [
                    o.server_round,
                    "overall",
                    *(o.metrics.get(k) for k in columns),
                    o.total_examples,
                    "",
                    len(o.participants),
                ]
            )
            for hospital, m in o.per_hospital.items():
                eps = o.privacy.get(hospital, {}).get("epsilon", "")
                w.writerow(
                    [
                        o.server_round,
                        hospital,
                        *(m.get(k) for k in columns),
                        m.get("num-examples"),
                        eps,
                        int(hospital in o.participants),
                    ]
                )
