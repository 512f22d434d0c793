"""Study-wide declared-range scaling (`scaling: declared`) against per-site standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from fl_client.data import ConfigError, SchemaError, load_hospitals
from fl_client.data.builtin import BREAST_CANCER_RANGES, BUILTINS
from fl_client.data.csv_schema import parse_schema
from fl_client.data.preprocess import RangeScaler

SCHEMA = {
    "target": {"column": "num", "positive": "> 0"},
    "numeric": ["age", "chol"],
    "categorical": {"cp": [1, 2]},
    "test_fraction": 0.25,
}
ROWS = (
    "age,chol,cp,num\n20,100,1,0\n80,600,2,1\n50,350,1,0\n30,150,2,1\n95,700,1,0\n40,200,2,1\n60,400,1,0\n70,500,2,1\n"
)


def _csv_study(tmp_path, schema: dict) -> dict:
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(schema))
    (tmp_path / "a.csv").write_text(ROWS)
    (tmp_path / "b.csv").write_text(ROWS)
    hospitals = [{"id": h, "path": str(tmp_path / f"{h}.csv")} for h in ("a", "b")]
    return {"name": "csv", "schema": str(tmp_path / "schema.yaml"), "hospitals": hospitals}


def test_range_scaler_maps_the_declared_range_onto_minus_one_one_and_clips():
    # arrange
    scaler = RangeScaler(np.array([0.0, 10.0]), np.array([4.0, 20.0]))
    # act
    out = scaler.fit(np.zeros((1, 2))).transform(np.array([[0.0, 10.0], [2.0, 15.0], [4.0, 20.0], [9.0, 5.0]]))
    # assert: lo -> -1, middle -> 0, hi -> 1; outside the range clipped to its end
    assert out.tolist() == [[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [1.0, -1.0]]


def test_range_scaler_refuses_an_empty_range():
    with pytest.raises(ValueError, match="hi > lo"):
        RangeScaler(np.array([1.0]), np.array([1.0]))


def test_breast_cancer_declared_scaling_is_the_same_map_at_every_hospital():
    # arrange
    X, _, _ = BUILTINS["breast_cancer"].pooled()
    lo, hi = np.array(BREAST_CANCER_RANGES).T
    cfg = {"name": "breast_cancer", "partitioner": "dirichlet", "alpha": 0.1, "scaling": "declared"}
    # act
    hospitals = load_hospitals(cfg, 4, 0)
    # assert: every hospital's rows are the published-range map of some pooled rows, whatever its label mix
    expected = {tuple(np.round(2 * (row - lo) / (hi - lo) - 1, 4)) for row in np.clip(X, lo, hi)}
    for h in hospitals:
        assert np.all(np.abs(h.X_train) <= 1.0 + 1e-6)
        got = {tuple(np.round(row.astype(np.float64), 4)) for row in h.X_train[:5]}
        assert got <= expected


def test_site_scaling_stays_the_default_and_centres_each_hospital():
    hospitals = load_hospitals({"name": "breast_cancer"}, 2, 0)
    for h in hospitals:
        assert np.allclose(h.X_train.mean(axis=0), 0.0, atol=1e-5)


def test_an_unknown_scaling_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"dataset.scaling must be one of site, declared; got 'global'"):
        load_hospitals({"name": "breast_cancer", "scaling": "global"}, 2, 0)


def test_declared_scaling_without_published_ranges_is_refused():
    with pytest.raises(ConfigError, match="diabetes has none"):
        load_hospitals({"name": "diabetes", "scaling": "declared"}, 2, 0)


def test_a_csv_schema_declaring_scaling_needs_every_numeric_range():
    schema = {**SCHEMA, "scaling": "declared", "ranges": {"age": [20, 80]}}
    with pytest.raises(SchemaError, match=r"missing: \['chol'\]"):
        parse_schema(schema, "schema.yaml")


def test_a_csv_range_must_be_a_numeric_column_with_hi_above_lo():
    with pytest.raises(SchemaError, match="ranges.cp: not a numeric column"):
        parse_schema({**SCHEMA, "ranges": {"cp": [1, 2]}}, "schema.yaml")
    with pytest.raises(SchemaError, match=r"ranges.age must be \[lo, hi\] numbers with hi > lo"):
        parse_schema({**SCHEMA, "ranges": {"age": [80, 20]}}, "schema.yaml")


def test_a_csv_study_with_declared_ranges_scales_numeric_columns_alike(tmp_path):
    # arrange
    schema = {**SCHEMA, "scaling": "declared", "ranges": {"age": [20, 80], "chol": [100, 600]}}
    # act
    a, b = load_hospitals(_csv_study(tmp_path, schema), 2, 0)
    # assert: the numeric block is the declared map (age 50 -> 0, chol 700 clipped to 1); one-hots untouched
    for h in (a, b):
        num = np.vstack([h.X_train, h.X_test])[:, :2]
        assert num.min() >= -1.0 and num.max() <= 1.0
    rows = {tuple(np.round(r, 4)) for r in np.vstack([a.X_train, a.X_test])[:, :2].astype(np.float64)}
    assert (0.0, 0.0) in rows and (1.0, 1.0) in rows
