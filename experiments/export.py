"""Export a finished study's model for use outside the study, and load it back.

``python -m experiments.export RUN_DIR [--select-round best|last]`` writes
``RUN_DIR/model/``: ``model.npz`` (the checkpoint's arrays, as released) and
``model.json`` (format ``fedledger-model-v1``: model family and width, the
feature names in input order, the preprocessing a user must apply, the round,
the model hash and whether that hash was released on chain).
:func:`load_model` returns the torch module and a predict function.

The weights come from ``checkpoints/round_XXXXX.npz``: the released
checkpoint (rounded decryption of an encrypted study, its hash released on
chain with the hospitals' quorum of signatures, experiments/release.py) where
there is one, else the plaintext global model a simulation wrote for that round.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.files import load_npz, save_npz
from fedledger.hashing import model_hash, to_hex
from fedledger.tasks import parse_task_options
from fl_client.data.builtin import BUILTINS
from fl_client.data.csv_loader import resolve_path
from fl_client.data.csv_schema import load_schema
from fl_client.data.survival_sources import SURVIVAL_DATASETS, survival_source
from fl_client.models import set_arrays
from fl_client.own_model import build_study_model
from fl_client.survival.metrics import survival_curves

EXPORT_FORMAT = "fedledger-model-v1"
SELECT_ROUNDS = ("last", "best")
PER_SITE_STANDARDISATION = (
    "per-site: each hospital standardised every numeric input with the mean and standard deviation of its own "
    "training rows (a missing numeric value becomes 0, the training mean); categorical inputs are one-hot in the "
    "order of feature_names. No study-wide standardisation is agreed at set-up, so a user standardises inputs "
    "with statistics of their own site's data before calling the model."
)


DECLARED_RANGES = (
    "declared: every hospital mapped each numeric input from its declared range [lo, hi] onto [-1, 1] "
    "(2 * (clip(x, lo, hi) - lo) / (hi - lo) - 1; a missing value becomes 0); categorical inputs are one-hot in "
    "the order of feature_names. The ranges were agreed study-wide before any data was read: apply the same map."
)


def preprocessing(dataset: dict[str, Any]) -> dict[str, Any]:
    """How inputs were scaled: per site (each hospital's own statistics) or the study's declared ranges."""
    ranges: dict[str, list[float]] = {}
    if dataset.get("name") in BUILTINS and dataset.get("scaling") == "declared":
        names, declared = BUILTINS[dataset["name"]].pooled()[2], BUILTINS[dataset["name"]].ranges or ()
        ranges = {n: list(r) for n, r in zip(names, declared, strict=True)}
    elif dataset.get("name") == "csv":
        schema = load_schema(resolve_path(dataset["schema"], dataset.get("base_dir"), what="schema file"))
        if schema.scaling == "declared":
            ranges = {c: list(schema.ranges[c]) for c in schema.numeric}
    if ranges:
        return {"scaling": "declared", "ranges": ranges, "note": DECLARED_RANGES}
    return {"standardisation": "per-site", "note": PER_SITE_STANDARDISATION}


class ExportError(ValueError):
    """The run directory cannot give the model asked for (no such round, no checkpoint, no best round)."""


def choose_round(results: dict[str, Any], select_round: str) -> int:
    """The last recorded round, or the best one by validation (results.json ``selection``)."""
    if select_round not in SELECT_ROUNDS:
        raise ExportError(f"select_round must be one of {SELECT_ROUNDS}, got {select_round!r}")
    rounds = results.get("rounds") or []
    if not rounds:
        raise ExportError("results.json records no round: there is no model to export")
    if select_round == "last":
        return int(rounds[-1]["round"])
    best = (results.get("selection") or {}).get("best_round")
    if best is None:
        raise ExportError(
            "select_round=best needs a best round, which needs validation rows: run the study with "
            "dataset.validation_fraction > 0, or export select_round=last"
        )
    return int(best)


def feature_names(dataset: dict[str, Any]) -> list[str]:
    """The model's inputs in order, from the schema alone (no hospital's file is read)."""
    if dataset.get("name") in BUILTINS:
        return list(BUILTINS[dataset["name"]].pooled()[2])
    if dataset.get("name") == "own":  # the researcher's loader is the only schema: its first hospital names them
        from fl_client.data.own_loader import load_own_hospital

        return load_own_hospital(dataset, 0, 1, 0).feature_names
    if dataset.get("name") in SURVIVAL_DATASETS:
        return list(survival_source(dataset["name"]).feature_names)
    return list(load_schema(resolve_path(dataset["schema"], dataset.get("base_dir"), what="schema file")).feature_names)


def model_meta(model: dict[str, Any], protocol: dict[str, Any]) -> dict[str, Any]:
    """model.json's ``model``: the family and width; an own model's class, kwargs, fix and source hash too."""
    out = {"name": model["name"], "hidden": int(model["hidden"])}
    if model["name"] == "own":
        out |= {k: model.get(k) for k in ("_target_", "kwargs", "fix_batchnorm")}
        out["source_hash"] = protocol.get("model-source-hash")
    return out


def _module(meta: dict[str, Any]) -> torch.nn.Module:
    """The exported model's module; an own model only from an installed copy of the source the study ran."""
    model = meta["model"]
    if model["name"] == "own":
        from fedledger.model_source import source_hash

        here = source_hash(str(model["_target_"]))
        if model.get("source_hash") and here != model["source_hash"]:
            raise ExportError(
                f"the installed {model['_target_']} hashes to {here}, but the study ran source {model['source_hash']}"
            )
    return build_study_model(
        model, int(meta["n_features"]), seed=0, n_outputs=int(meta.get("num_outputs", 1)), quiet=True
    )


def export_model(run_dir: Path, select_round: str = "last") -> Path:
    """Write ``<run_dir>/model/`` (model.npz, model.json) and return that folder."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    cfg = results["config"]
    r = choose_round(results, select_round)
    checkpoint = run_dir / "checkpoints" / f"round_{r:05d}.npz"
    if not checkpoint.exists():
        raise ExportError(f"round {r} has no checkpoint at {checkpoint} (an encrypted study's is written at release)")
    arrays = load_npz(checkpoint)
    digest = to_hex(model_hash(arrays))
    released = (results.get("released") or {}).get(str(r))
    if released is not None and released != digest:
        raise ExportError(f"round {r}'s checkpoint hashes to {digest}, but the chain released {released}")
    features = feature_names(cfg["dataset"])
    protocol = results.get("protocol") or {}
    task = {"name": protocol.get("task") or "binary", "num_outputs": protocol.get("num-outputs") or 1}
    meta = {
        "format": EXPORT_FORMAT,
        "study_id": results.get("study_id"),
        "model": model_meta(cfg["model"], results.get("protocol") or {}),
        "n_features": len(features),
        "feature_names": list(features),
        "preprocessing": preprocessing(cfg["dataset"]),
        "output": OUTPUTS[task["name"]],
        "task": task["name"],
        "num_outputs": int(task["num_outputs"]),
        "task_options": parse_task_options(str(protocol.get("task-options") or "")),
        "round": r,
        "select_round": select_round,
        "selection": results.get("selection"),
        "model_hash": digest,
        "released_on_chain": released is not None,
        "source": "released checkpoint" if released is not None else "plaintext checkpoint, not released on chain",
        "contract": (results.get("ledger") or {}).get("contract"),
    }
    out = run_dir / "model"
    out.mkdir(exist_ok=True)
    save_npz(out / "model.npz", arrays)
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return out


OUTPUTS = {
    "binary": "logit of the positive class (label 1); predict returns its probability",
    "multiclass": "one logit per class, in the schema's target.classes order; predict returns the class probabilities",
    "regression": "the target in standard units of a site's training rows (per-site standardisation, as the features); "
    "predict returns it: times the site's target sd, plus its mean, gives the target's units",
    "survival": "one hazard logit per interval of task_options.time_grid (docs/TASKS.md); predict returns the "
    "survival curve S(t) at the grid's upper edges, shape (n, K)",
}


@dataclass(frozen=True)
class ExportedModel:
    """The exported module, its description (model.json) and a predict function over standardised inputs."""

    module: torch.nn.Module
    meta: dict[str, Any]
    predict: Callable[[np.ndarray], np.ndarray]


def load_model(model_dir: Path) -> ExportedModel:
    """The model an export wrote, refusing arrays whose hash is not the one model.json records."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{model_dir / 'model.json'}: format {meta.get('format')!r}, expected {EXPORT_FORMAT!r}")
    arrays = load_npz(model_dir / "model.npz")
    if to_hex(model_hash(arrays)) != meta["model_hash"]:
        raise ExportError(f"{model_dir / 'model.npz'} does not hash to model.json's model_hash {meta['model_hash']}")
    task, outputs = meta.get("task", "binary"), int(meta.get("num_outputs", 1))
    module = _module(meta)
    set_arrays(module, arrays)
    module.eval()

    @torch.no_grad()
    def predict(X: np.ndarray) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != int(meta["n_features"]):
            raise ValueError(f"inputs must have shape (n, {meta['n_features']}) in feature_names order, got {x.shape}")
        out = module(torch.from_numpy(x))
        if task == "multiclass":
            return torch.softmax(out.reshape(-1, outputs), dim=-1).numpy()
        if task == "regression":
            return out.reshape(-1).numpy()
        if task == "survival":
            return survival_curves(out.reshape(-1, outputs))
        return torch.sigmoid(out.reshape(-1)).numpy()

    return ExportedModel(module, meta, predict)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--select-round", choices=SELECT_ROUNDS, default="last")
    args = parser.parse_args(argv)
    out = export_model(args.run_dir, args.select_round)
    meta = json.loads((out / "model.json").read_text())
    print(f"exported round {meta['round']} ({meta['source']}, hash {meta['model_hash']}) to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
