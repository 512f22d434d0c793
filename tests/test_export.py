"""Model export (issue 17): the checkpoint a study chose, its feature layout and preprocessing, a loader."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from experiments.export import ExportError, export_model, feature_names, load_model
from fedledger.files import save_npz
from fedledger.hashing import model_hash, to_hex
from fl_client.data import load_hospitals
from fl_client.models import build_model, get_arrays
from fl_client.training import evaluate
from ledger.audit.events import read_chain_view
from ledger.audit.run_dir import open_run_dir_chain, study_spec

BC = {"name": "breast_cancer", "partitioner": "iid", "validation_fraction": 0.25}


def _run_dir(tmp_path: Path, released: dict[str, str] | None = None) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """A finished two-round logreg study on the built-in data: results.json and one checkpoint per round."""
    models = [get_arrays(build_model("logreg", 30, 0, seed=s)) for s in (1, 2)]
    for r, arrays in enumerate(models, start=1):
        save_npz(tmp_path / "checkpoints" / f"round_{r:05d}.npz", arrays)
    results = {
        "config": {"dataset": BC, "model": {"name": "logreg", "hidden": 0}, "num_hospitals": 2},
        "study_id": "0x" + "ab" * 32,
        "rounds": [{"round": 1}, {"round": 2}],
        "selection": {"split": "validation", "metric": "loss", "best_round": 1, "best_value": 0.3},
        "released": released or {},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path, models


def test_export_best_writes_that_round_with_its_layout_and_loads_back_predicting_as_the_study_evaluates(tmp_path):
    run_dir, models = _run_dir(tmp_path)
    hospital = load_hospitals(BC, 2, 0)[0]

    exported = load_model(export_model(run_dir, "best"))

    assert exported.meta["round"] == 1 and exported.meta["model_hash"] == to_hex(model_hash(models[0]))
    assert exported.meta["feature_names"][:2] == ["mean radius", "mean texture"] and exported.meta["n_features"] == 30
    assert exported.meta["preprocessing"]["standardisation"] == "per-site"
    assert exported.meta["released_on_chain"] is False
    reference = build_model("logreg", 30, 0, seed=1)
    in_study = evaluate(reference, hospital.X_test, hospital.y_test)
    p = exported.predict(hospital.X_test)
    assert float(((p > 0.5) == (hospital.y_test == 1)).mean()) == pytest.approx(in_study.accuracy)
    eps = 1e-7
    loss = -np.mean(hospital.y_test * np.log(p + eps) + (1 - hospital.y_test) * np.log(1 - p + eps))
    assert loss == pytest.approx(in_study.loss, rel=1e-4)


def test_export_last_by_default_and_a_released_round_records_the_on_chain_hash(tmp_path):
    digest = to_hex(model_hash(get_arrays(build_model("logreg", 30, 0, seed=2))))
    run_dir, _ = _run_dir(tmp_path, released={"2": digest})

    meta = load_model(export_model(run_dir)).meta

    assert (meta["round"], meta["model_hash"], meta["released_on_chain"]) == (2, digest, True)
    assert meta["source"] == "released checkpoint"


def test_a_checkpoint_that_is_not_the_released_one_is_refused(tmp_path):
    run_dir, _ = _run_dir(tmp_path, released={"2": "0x" + "00" * 32})
    with pytest.raises(ExportError, match="but the chain released 0x0000"):
        export_model(run_dir, "last")


def test_best_without_a_validation_split_is_refused_naming_the_setting(tmp_path):
    run_dir, _ = _run_dir(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    del results["selection"]
    (run_dir / "results.json").write_text(json.dumps(results))
    with pytest.raises(ExportError, match="dataset.validation_fraction > 0"):
        export_model(run_dir, "best")


def test_a_model_file_changed_after_export_is_refused_by_the_loader(tmp_path):
    run_dir, models = _run_dir(tmp_path)
    out = export_model(run_dir, "last")
    save_npz(out / "model.npz", {k: v + 1 for k, v in models[1].items()})
    with pytest.raises(ExportError, match="does not hash to model.json's model_hash"):
        load_model(out)


@pytest.mark.slow
def test_a_study_with_validation_stops_early_and_its_best_round_exports_as_evaluated_and_released(tmp_path):
    """2 hospitals, up to 6 rounds, patience 1, anvil: export best == the round's in-study evaluation and the
    hash the chain released (ModelReleased, read back from the run's chain state); the study audits PASS."""
    cmd = [sys.executable, "-m", "experiments.run", f"hydra.run.dir={tmp_path}", "num_hospitals=2", "num_rounds=6"]
    cmd += ["privacy=off", "encryption=off", "ledger.backend=anvil", "baselines=false", "audit=true"]
    cmd += ["dataset.validation_fraction=0.25", "strategy.early_stopping_patience=1", "train.lr=3.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    selection = results["selection"]
    best = selection["best_round"]

    exported = load_model(export_model(tmp_path, "best"))

    assert selection["stopped_early_after_round"] == len(results["rounds"]) == best + 1  # patience 1, stopped early
    row = results["rounds"][best - 1]
    assert row["validation"]["loss"] == pytest.approx(selection["best_value"])
    assert exported.meta["round"] == best and exported.meta["released_on_chain"] is True
    assert exported.meta["model_hash"] == results["released"][str(best)] == row["aggregate_hash"]
    assert exported.meta["model_hash"] == to_hex(_released_on_chain(tmp_path)[best])
    assert results["audit"]["ok"] is True
    for hospital in load_hospitals({"name": "breast_cancer", "validation_fraction": 0.25}, 2, 0):
        in_study = row["per_hospital"][hospital.hospital_id]
        got = evaluate(exported.module, hospital.X_test, hospital.y_test)
        assert (got.accuracy, got.loss) == pytest.approx((in_study["accuracy"], in_study["loss"]))
    print(json.dumps({"selection": selection, "rounds": len(results["rounds"]), "hash": exported.meta["model_hash"]}))


def test_a_csv_study_exports_the_schema_layout_its_hospitals_load_with():
    cfg = {"name": "csv", "schema": "examples/csv_study/schema.yaml"}
    hospitals = [{"id": "cleveland", "path": "examples/csv_study/cleveland.csv"}]

    names = feature_names(cfg)

    assert names == load_hospitals({**cfg, "hospitals": hospitals}, 1, 0)[0].feature_names


def _released_on_chain(run_dir: Path) -> dict[int, bytes]:
    """The ModelReleased hashes of a finished study, read from its reopened chain as the auditor reads them."""
    with ExitStack() as stack:
        spec = study_spec(run_dir)
        w3 = open_run_dir_chain(run_dir, spec, stack)
        return read_chain_view(w3, spec["chain"]["contract"], spec["study_id"]).released
