"""Survival data sets shipped with lifelines: columns, hospitals, by_column on lung's real institutions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_client.data import ConfigError, DataWarning, load_hospital, load_hospitals
from fl_client.data.survival_sources import survival_source
from fl_client.tasks import task_for
from tests.test_study_settings import composed

ACTG = {"name": "actg175", "time_grid": [150, 300, 450, 600, 750, 900, 1050]}
LUNG = {"name": "lung", "partitioner": "by_column", "time_grid": [100, 200, 300, 500, 1000]}


def _quiet_load(cfg, n, seed=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_hospitals(cfg, n, seed)


def test_sources_keep_baseline_covariates_only():
    # arrange / act
    actg, gbsg2, lung = (survival_source(n) for n in ("actg175", "gbsg2", "lung"))
    # assert: sizes; ACTG's post-randomisation measurements are not features
    assert (len(actg.time), len(gbsg2.time), len(lung.time)) == (2139, 686, 227)
    assert not {"cd420", "cd496", "cd820", "offtrt", "r", "pidnum", "days", "cens"} & set(actg.feature_names)
    assert {"arm_1", "arm_2", "arm_3", "cd40", "age"} <= set(actg.feature_names)
    assert int(actg.event.sum()) == 521 and int(lung.event.sum()) == 164
    assert lung.site_column == "inst" and actg.site is None


def test_actg175_hospitals_carry_time_and_event_and_the_grid():
    # arrange / act
    hospitals = _quiet_load(ACTG, 4)
    # assert: every patient once; y = (time, event); survival task with one output per interval
    assert sum(h.n_train + h.n_test for h in hospitals) == 2139
    h = hospitals[0]
    assert h.y_train.shape == (h.n_train, 2) and set(np.unique(h.y_train[:, 1])) == {0.0, 1.0}
    assert (h.task, h.num_outputs) == ("survival", 7)
    assert h.task_options == {"time_grid": [150.0, 300.0, 450.0, 600.0, 750.0, 900.0, 1050.0],
                              "survival_loss": "discrete_hazard"}  # fmt: skip
    assert not np.isnan(h.X_train).any()
    assert load_hospital(ACTG, 2, 4, 0) == hospitals[2]
    task = task_for(h.task, h.num_outputs, h.task_options)
    assert tuple(task.target(h.y_test).shape) == (h.n_test, 2, 8)


def test_lung_splits_into_its_real_institutions_and_fills_missing_values():
    # arrange / act
    with pytest.warns(DataWarning, match="merged into one hospital inst_small"):
        hospitals = load_hospitals(LUNG, 10, 0)
    # assert: 9 institutions with >= 10 patients, then the 9 small ones together (51 patients)
    ids = [h.hospital_id for h in hospitals]
    assert ids == [f"inst_{i}" for i in (1, 3, 6, 11, 12, 13, 16, 21, 22)] + ["inst_small"]
    sizes = {h.hospital_id: h.n_train + h.n_test for h in hospitals}
    assert sizes["inst_1"] == 36 and sizes["inst_small"] == 51 and sum(sizes.values()) == 227
    assert all(not np.isnan(h.X_train).any() and not np.isnan(h.X_test).any() for h in hospitals)


def test_by_column_refuses_a_num_hospitals_the_column_does_not_give():
    with pytest.raises(ConfigError, match=r"num_hospitals=4 but partitioner=by_column on 'inst' gives 10 hospitals"):
        _quiet_load(LUNG, 4)
    with pytest.raises(ConfigError, match="has no site column"):
        _quiet_load({**ACTG, "partitioner": "by_column"}, 4)


def test_a_survival_study_needs_a_fixed_time_grid():
    with pytest.raises(ConfigError, match="fixed time grid"):
        _quiet_load({"name": "gbsg2"}, 2)
    with pytest.raises(ConfigError, match="unknown key"):
        _quiet_load({**ACTG, "time_gird": [1]}, 2)
    with pytest.raises(ConfigError, match="survival_loss must be one of discrete_hazard, cox"):
        _quiet_load({**ACTG, "survival_loss": "weibull"}, 2)


def test_the_shipped_configs_compose_and_lung_takes_its_hospital_count():
    # arrange / act
    lung = composed(["dataset=lung", "model=hazard"])
    actg = composed(["dataset=actg175", "model=hazard"])
    # assert
    assert lung["num_hospitals"] == 10 and actg["num_hospitals"] == 4
    assert len(_quiet_load(lung["dataset"], lung["num_hospitals"])) == 10
    assert len(_quiet_load(composed(["dataset=gbsg2"])["dataset"], 4)) == 4


def test_a_study_refuses_cox_with_dp_before_anything_runs(tmp_path):
    # arrange: ACTG 175 with the Cox loss and the default privacy (DP at target epsilon 3)
    from coordinator.study_setup import prepare_study
    from fl_client.survival.loss import CoxUnderDPError

    cfg = composed(["dataset=actg175", "model=logreg", "dataset.survival_loss=cox", "ledger=none", "encryption=off"])
    # act / assert: refused at set-up, naming the reason
    with pytest.raises(CoxUnderDPError, match="risk set"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        prepare_study(cfg, tmp_path / "run")


def test_cox_trains_without_dp_and_ranks_patients():
    # arrange: one ACTG hospital, one risk score per patient
    from fl_client.models import build_model
    from fl_client.training import evaluate, train_local

    h = _quiet_load({**ACTG, "survival_loss": "cox"}, 2)[0]
    task = task_for(h.task, h.num_outputs, h.task_options)
    model = build_model("logreg", h.n_features, 0, seed=0, out_features=1)
    # act
    train_local(model, h.X_train, h.y_train, {"local_epochs": 10, "batch_size": 64, "lr": 0.1}, seed=0, task=task)
    result = evaluate(model, h.X_test, h.y_test, task)
    # assert: better than chance; no curves, so no IBS
    assert result.metrics["c-index"] > 0.6 and result.metrics["ibs"] is None
    with pytest.raises(ValueError, match="risk set"):
        task.check_dp()


def test_the_calibration_plot_draws_the_last_checkpoint(tmp_path):
    # arrange: two ACTG hospitals and a checkpoint of an untrained hazard model
    from experiments.survival_plot import plot_survival_calibration
    from fedledger.files import save_npz
    from fl_client.models import build_model, get_arrays

    hospitals = _quiet_load(ACTG, 2)
    cfg = {"model": {"name": "hazard", "hidden": 0}}
    # act / assert: nothing released, nothing drawn; then survival.png
    assert plot_survival_calibration(tmp_path, hospitals, cfg) is None
    (tmp_path / "checkpoints").mkdir()
    save_npz(tmp_path / "checkpoints" / "round_00001.npz", get_arrays(build_model("hazard", 19, 0, 0, 7)))
    assert plot_survival_calibration(tmp_path, hospitals, cfg) == tmp_path / "survival.png"
    assert (tmp_path / "survival.png").stat().st_size > 1000


def test_an_exported_survival_model_predicts_survival_curves(tmp_path):
    # arrange: a model.json + model.npz as experiments/export.py writes them, for a 2-interval hazard model
    import json

    from experiments.export import EXPORT_FORMAT, load_model
    from fedledger.files import save_npz
    from fedledger.hashing import model_hash, to_hex
    from fl_client.models import build_model, get_arrays

    arrays = get_arrays(build_model("hazard", 3, 0, 0, 2))
    save_npz(tmp_path / "model.npz", arrays)
    meta = {"format": EXPORT_FORMAT, "model_hash": to_hex(model_hash(arrays)), "task": "survival", "num_outputs": 2,
            "model": {"name": "hazard", "hidden": 0}, "n_features": 3}  # fmt: skip
    (tmp_path / "model.json").write_text(json.dumps(meta))
    # act
    curves = load_model(tmp_path).predict(np.zeros((4, 3), dtype=np.float32))
    # assert: zero features leave the baselines alone: hazard 1/3 per interval, S = 2/3 then 4/9
    assert curves.shape == (4, 2)
    assert curves[0].tolist() == pytest.approx([2 / 3, 4 / 9], abs=1e-6)
