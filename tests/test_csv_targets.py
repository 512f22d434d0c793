"""The CSV schema's target for every task type: parsing, the errors, and what a hospital loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from fl_client.data import InvalidTargetError, InvalidValuesError, SchemaError, load_hospitals
from fl_client.data.csv_schema import parse_schema
from tests.test_csv_loader import SCHEMA, _load, _study

REPO = Path(__file__).resolve().parents[1]
MULTICLASS = {**SCHEMA, "target": {"column": "num", "type": "multiclass", "classes": [0, 1, 2, 3]}}
REGRESSION = {**SCHEMA, "target": {"column": "num", "type": "regression", "range": [0, 10]}}
ROWS = "age,cp,num,note\n40,1,0,a\n50,2,1,b\n60,3,2,c\n70,1,0,d\n30,2,1,e\n45,3,0,f\n55,1,3,g\n65,2,0,h\n"


# -- parsing -------------------------------------------------------------------------------------


def test_each_target_type_parses():
    assert parse_schema(SCHEMA).target.type == "binary" and parse_schema(SCHEMA).target.num_outputs == 1
    multi = parse_schema(MULTICLASS).target
    assert (multi.type, multi.classes, multi.num_outputs) == ("multiclass", ("0", "1", "2", "3"), 4)
    assert parse_schema(REGRESSION).target.range == (0.0, 10.0)
    surv = parse_schema({**SCHEMA, "target": {"type": "survival", "time": "days", "event": "died", "time_grid": [30]}})
    assert (surv.target.column, surv.target.event, surv.used_columns[:2]) == ("days", "died", ["days", "died"])


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"column": "num", "type": "ordinal"}, "target.type must be one of binary, multiclass, regression, survival"),
        ({"column": "num", "type": "multiclass"}, r"target.classes must list at least 2 classes"),
        ({"column": "num", "type": "multiclass", "classes": [1, "1.0"]}, "lists a class more than once"),
        ({"column": "num", "type": "multiclass", "classes": [0, True]}, "classes must be numbers or strings"),
        (
            {"column": "num", "type": "multiclass", "classes": [0, 1], "positive": "> 0"},
            r"unknown key\(s\) \['positive'\]",
        ),
        ({"column": "num", "type": "regression", "range": [5, 1]}, r"target.range must be \[low, high\]"),
        ({"type": "regression"}, "missing required key 'target.column'"),
        ({"type": "survival", "time": "days"}, "missing required key 'target.event'"),
        ({"type": "survival", "time": "t", "event": "t"}, "must be two columns"),
        ({"column": "num", "positive": "> 0", "classes": [0, 1]}, r"allowed: column, positive, type"),
    ],
)
def test_a_bad_target_is_named(target, message):
    with pytest.raises(SchemaError, match=message):
        parse_schema({**SCHEMA, "target": target})


def test_a_target_column_cannot_also_be_a_feature():
    with pytest.raises(SchemaError, match="'age' is listed under both target and numeric"):
        parse_schema({**SCHEMA, "target": {"type": "survival", "time": "age", "event": "died", "time_grid": [30]}})


# -- loading -------------------------------------------------------------------------------------


def test_a_multiclass_file_loads_class_indices_and_five_outputs(tmp_path):
    (h,) = _load(_study(tmp_path, {"a": ROWS}, MULTICLASS))
    assert (h.task, h.num_outputs, h.class_labels) == ("multiclass", 4, ["0", "1", "2", "3"])
    assert sorted(np.concatenate([h.y_train, h.y_test]).tolist()) == [0, 0, 0, 0, 1, 1, 2, 3]


def test_a_class_not_declared_is_named_with_its_line(tmp_path):
    rows = ROWS.replace("55,1,3,g", "55,1,7,g").replace("40,1,0,a", "40,1,x,a")
    with pytest.raises(
        InvalidTargetError,
        match=r"column 'num' \(target, classes \['0', '1', '2', '3'\]\): "
        r"not one of the classes at line 2 'x', line 8 '7'",
    ):
        _load(_study(tmp_path, {"a": rows}, MULTICLASS))


def test_a_regression_target_is_standardised_with_its_scale_kept(tmp_path):
    (h,) = _load(_study(tmp_path, {"a": ROWS}, REGRESSION))
    assert h.task == "regression" and h.num_outputs == 1
    mean, std = h.target_scale
    assert float(np.mean(h.y_train)) == pytest.approx(0.0, abs=1e-6) and std > 0
    original = np.concatenate([h.y_train, h.y_test]) * std + mean
    assert sorted(np.round(original, 5).tolist()) == [0, 0, 0, 0, 1, 1, 2, 3]


def test_a_value_outside_the_range_and_a_non_number_are_both_named(tmp_path):
    rows = ROWS.replace("55,1,3,g", "55,1,12,g").replace("65,2,0,h", "65,2,high,h")
    with pytest.raises(InvalidValuesError) as err:
        _load(_study(tmp_path, {"a": rows}, REGRESSION))
    assert "column 'num' (target, regression in [0, 10]): outside the range at line 8 '12'" in str(err.value)
    assert "not a number at line 9 'high'" in str(err.value)


def test_survival_columns_are_checked_with_their_lines(tmp_path):
    target = {"type": "survival", "time": "days", "event": "died", "time_grid": [100, 200]}
    schema = {**SCHEMA, "target": target}
    bad = "age,cp,days,died,note\n40,1,-3,1,a\n50,2,100,2,b\n60,3,0,0,c\n70,1,50,1,d\n"
    with pytest.raises(
        InvalidTargetError,
        match=r"'days' \(survival time\): not a time > 0 at line 2 '-3'.*line 4 '0'.*"
        r"'died' \(survival event, 1 = event observed, 0 = censored\): not 0 or 1 at line 3 '2'",
    ):
        _load(_study(tmp_path, {"a": bad}, schema))


def test_the_multiclass_example_loads_as_a_five_class_study():
    cfg = yaml.safe_load((REPO / "conf/dataset/csv_multiclass.yaml").read_text())
    hospitals = load_hospitals(cfg, 3, 0)
    assert [h.hospital_id for h in hospitals] == ["tertiary_centre", "community_clinic", "regional_hospital"]
    assert {(h.task, h.num_outputs) for h in hospitals} == {("multiclass", 5)}
    assert all(h.classes_present == [0, 1, 2, 3, 4] for h in hospitals)


def test_diabetes_is_a_regression_study_of_442_patients():
    hospitals = load_hospitals({"name": "diabetes"}, 4, 0)
    assert {(h.task, h.num_outputs) for h in hospitals} == {("regression", 1)}
    assert sum(h.n_train + h.n_test for h in hospitals) == 442 and hospitals[0].n_features == 10
    mean, std = hospitals[0].target_scale
    original = hospitals[0].y_test * std + mean
    assert original.min() >= 25 and original.max() <= 346  # disease progression's range in the data
