"""A CSV study with a survival target: the schema's time grid, what a hospital loads, the example study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fl_client.data import InvalidTargetError, SchemaError, load_hospitals
from fl_client.data.csv_schema import parse_schema
from fl_client.data.loaders import study_layout
from tests.test_csv_loader import SCHEMA, _load, _study

REPO = Path(__file__).resolve().parents[1]
TARGET = {"type": "survival", "time": "days", "event": "died", "time_grid": [100, 200]}
SURVIVAL = {**SCHEMA, "target": TARGET}
# 8 patients: 4 events, 4 censored; times hand-picked so each is easy to find in y
ROWS = (
    "age,cp,days,died,note\n40,1,10,1,a\n50,2,20,0,b\n60,3,30,1,c\n70,1,40,0,d\n"
    "30,2,50,1,e\n45,3,60,0,f\n55,1,70,1,g\n65,2,80,0,h\n"
)


# -- the schema's time grid ------------------------------------------------------------------------


def test_the_time_grid_parses_into_the_outputs_and_options():
    target = parse_schema(SURVIVAL).target
    assert target.time_grid == (100.0, 200.0) and target.num_outputs == 2
    assert target.options == {"time_grid": [100.0, 200.0], "survival_loss": "discrete_hazard"}


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (None, "missing required key 'target.time_grid'"),
        ([], "non-empty list of numbers"),
        ("365", "non-empty list of numbers"),
        ([100, 100], "strictly increasing; 100 follows 100"),
        ([200, 100], "strictly increasing; 100 follows 200"),
        ([0, 100], "has 0; every edge must be > 0"),
        ([-5], "has -5; every edge must be > 0"),
        ([100, "x"], "has 'x'; every edge must be a finite number"),
        ([True], "has True; every edge must be a finite number"),
    ],
)
def test_a_bad_time_grid_is_named(grid, message):
    target = {k: v for k, v in TARGET.items() if k != "time_grid"} | ({} if grid is None else {"time_grid": grid})
    with pytest.raises(SchemaError, match=message):
        parse_schema({**SCHEMA, "target": target})


# -- what a hospital loads ---------------------------------------------------------------------------


def test_a_survival_file_loads_time_and_event_with_one_output_per_interval(tmp_path):
    (h,) = _load(_study(tmp_path, {"a": ROWS}, SURVIVAL))
    assert (h.task, h.num_outputs) == ("survival", 2)
    assert h.task_options == {"time_grid": [100.0, 200.0], "survival_loss": "discrete_hazard"}
    assert h.y_train.shape == (6, 2) and h.y_test.shape == (2, 2)
    y = np.concatenate([h.y_train, h.y_test])
    assert sorted(map(tuple, y.tolist())) == [(10 * k, float(k % 2)) for k in range(1, 9)]
    assert h.y_test[:, 1].sum() == 1  # stratified by the event flag: one event, one censored


def test_an_event_other_than_0_1_and_a_time_not_above_0_name_their_lines(tmp_path):
    bad = ROWS.replace("40,1,10,1", "40,1,0,1").replace("60,3,30,1", "60,3,30,yes")
    with pytest.raises(InvalidTargetError) as err:
        _load(_study(tmp_path, {"a": bad}, SURVIVAL))
    assert "'days' (survival time): not a time > 0 at line 2 '0'" in str(err.value)
    assert "not 0 or 1 at line 4 'yes'" in str(err.value)


def test_the_example_study_layout_carries_the_grid_without_reading_data(tmp_path):
    cfg = yaml.safe_load((REPO / "conf/dataset/csv_survival.yaml").read_text())
    hospitals = load_hospitals(cfg, 3, 0)
    cfg_without_files = {**cfg, "hospitals": [{**h, "path": str(tmp_path / "absent.csv")} for h in cfg["hospitals"]]}
    layout = study_layout(cfg_without_files, 3)
    assert layout.hospital_ids == ("university_clinic", "city_hospital", "county_hospital")
    assert (layout.task, layout.num_outputs) == ("survival", 5)
    assert layout.options == hospitals[0].task_options
    assert layout.options["time_grid"] == [365.0, 730.0, 1095.0, 1460.0, 1825.0]
    assert sum(h.n_train + h.n_test for h in hospitals) == 686  # every GBSG2 patient, once
    assert layout.feature_names == tuple(hospitals[0].feature_names)


# -- the example study, end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_the_csv_survival_example_runs_with_dp_ckks_and_the_ledger_audits(tmp_path):
    from tests.test_simulation import run_study

    # act: 3 GBSG2 hospitals from their CSV files, 2 rounds, DP, CKKS, an in-process chain, the audit
    proc = run_study(
        tmp_path, "dataset=csv_survival", "model=hazard", "train=survival", "num_rounds=2", "ledger=eth_tester"
    )
    # assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"]["task"] == "survival" and results["protocol"]["num-outputs"] == 5
    assert json.loads(results["protocol"]["task-options"])["time_grid"] == [365.0, 730.0, 1095.0, 1460.0, 1825.0]
    assert set(results["final"]) == {"loss", "c-index", "ibs"} and results["final"]["c-index"] > 0.5
    assert results["encryption"]["scheme"] == "ckks"
    assert all(p["epsilon"][-1] < float("inf") for p in results["privacy"].values())
    assert results["audit"]["ok"] is True
