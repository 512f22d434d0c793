"""Hospital-side descriptive statistics: query hash, sufficient statistics, suppression, calibration, bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedledger.stats.calibration import calibrate
from fedledger.stats.estimate import histogram_quantile, pooled_noise_drawer, table_figures, with_intervals
from fedledger.stats.layout import groups, groups_per_stratum
from fedledger.stats.query import CategoricalVar, NumericVar, QueryError, StatsQuery, Survival
from fl_client.stats.data import builtin_hospitals
from fl_client.stats.local import StatsDataError, local_statistics
from fl_client.stats.noise import add_noise
from fl_client.stats.suppress import suppress_small_cells

AGE = NumericVar("age", 20, 80, (20, 40, 60, 80))
SEX = CategoricalVar("sex", ("f", "m"))


def tiny_query(**kw: object) -> StatsQuery:
    return StatsQuery(numeric=(AGE,), categorical=(SEX,), **kw)  # type: ignore[arg-type]


def tiny_frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [30.0, 50.0, 90.0, np.nan], "sex": ["f", "m", "m", "x"]})


def test_query_hash_vector_is_pinned() -> None:
    q = tiny_query(epsilon=1.0, min_cell=1)
    assert q.canonical_json() == (
        b'{"categorical":[{"categories":["f","m"],"name":"sex"}],"cohort":[],"delta":0.0,"epsilon":1.0,'
        b'"mechanism":"laplace","min_cell":1,"numeric":[{"bins":[20.0,40.0,60.0,80.0],"hi":80.0,"lo":20.0,'
        b'"name":"age"}],"per_site":false,"strata":null,"survival":null}'
    )
    assert q.hash().hex() == "561afdcde83a265b87e1aa23609151e85b3b5322b7bf20226177a631232c2a6b"


def test_query_round_trips_and_refuses_bad_fields() -> None:
    q = tiny_query(strata=CategoricalVar("sex", ("f", "m")))
    assert StatsQuery.from_mapping(q.to_mapping()) == q
    with pytest.raises(QueryError, match="bins must rise"):
        NumericVar("age", 20, 80, (20, 90))
    with pytest.raises(QueryError, match="unknown query key"):
        StatsQuery.from_mapping({"numeric": [], "colums": []})
    with pytest.raises(QueryError, match="delta must be 0"):
        tiny_query(delta=1e-5)


def test_local_statistics_by_hand() -> None:
    # age centre 50, half-width 30: clipped 30, 50, 80 -> centred -20, 0, 30
    vec = local_statistics(tiny_frame(), tiny_query(min_cell=1))
    assert vec.tolist() == [4, 1, 1, 1, 1, 10, 400 + 900, 1, 2, 1]


def test_survival_cells_by_hand() -> None:
    q = StatsQuery(numeric=(), survival=Survival("t", "e", (0, 10, 20)))
    df = pd.DataFrame({"t": [0, 5, 10, 15, 25, np.nan], "e": [1, 0, 1, 1, 0, 1]})
    # events (0,10], (10,20]; censored per interval; followed past 20; missing
    assert local_statistics(df, q).tolist() == [6, 2, 1, 1, 0, 1, 1]


def test_missing_column_is_named() -> None:
    with pytest.raises(StatsDataError, match="sex"):
        local_statistics(tiny_frame().drop(columns="sex"), tiny_query())


def test_small_cells_are_suppressed_before_noise() -> None:
    q = tiny_query(min_cell=2, strata=CategoricalVar("sex", ("f", "m")))
    exact = local_statistics(tiny_frame(), q)
    out, info = suppress_small_cells(exact, q)
    f_block, m_block = out.reshape(2, -1)
    assert not f_block.any()  # stratum f holds 1 record < 2: all zeros
    assert m_block[0] == 2  # stratum m is released
    assert m_block[1:5].tolist() == [0, 0, 0, 0]  # its histogram cells hold 1 record each: cut
    assert info.strata_suppressed == ("f",) and "fewer than 2 records" in info.statement()


def test_laplace_scale_is_sensitivity_times_groups_over_epsilon() -> None:
    q = tiny_query(epsilon=2.0, min_cell=5)
    cal = calibrate(q)
    g = {x.name: x for x in groups(q)}
    n_groups = groups_per_stratum(q)  # n, age:hist, age:sum, age:sumsq, sex:freq
    assert n_groups == 5
    assert cal.scales[g["n"].cells][0] == pytest.approx(5 * 1 * 5 / 2.0)
    assert cal.scales[g["age:sum"].cells][0] == pytest.approx(5 * 30 * 5 / 2.0)
    assert cal.scales[g["age:sumsq"].cells][0] == pytest.approx(5 * 900 * 5 / 2.0)


def test_one_record_moves_each_group_by_at_most_its_sensitivity() -> None:
    q = tiny_query(min_cell=3)
    base = pd.DataFrame({"age": [30.0, 35.0, 50.0, 55.0, 79.0], "sex": ["f", "f", "m", "m", "m"]})
    for extra in ({"age": 20.0, "sex": "f"}, {"age": 80.0, "sex": "m"}, {"age": np.nan, "sex": "y"}):
        a = suppress_small_cells(local_statistics(base, q), q)[0]
        b = suppress_small_cells(local_statistics(pd.concat([base, pd.DataFrame([extra])]), q), q)[0]
        for grp in groups(q):
            assert np.abs(a[grp.cells] - b[grp.cells]).sum() <= q.min_cell * grp.sensitivity + 1e-9


def test_noise_has_the_calibrated_spread() -> None:
    q = tiny_query(epsilon=1.0, min_cell=1)
    cal = calibrate(q)
    rng = np.random.default_rng(0)
    draws = np.array([add_noise(np.zeros(cal.scales.size), cal, rng) for _ in range(4000)])
    assert np.allclose(draws.std(axis=0) / cal.noise_sd(), 1.0, atol=0.08)


@pytest.mark.slow  # the PRV search for z takes ~6 s
def test_gaussian_noise_multiplier_reaches_epsilon() -> None:
    from fedledger.dp.epsilon import compute_epsilon

    q = tiny_query(mechanism="gaussian", epsilon=1.0, delta=1e-5, min_cell=1)
    cal = calibrate(q)
    assert cal.noise_multiplier is not None
    assert compute_epsilon("prv", [(cal.noise_multiplier, 1.0, 1)], 1e-5) <= 1.0 + 1e-6
    g = {x.name: x for x in groups(q)}
    assert cal.scales[g["age:sum"].cells][0] == pytest.approx(cal.noise_multiplier * np.sqrt(5) * 30)


def test_histogram_quantile_by_hand() -> None:
    assert histogram_quantile(np.array([2.0, 2.0]), np.array([0.0, 10.0, 20.0]), 0.5) == 10.0
    assert histogram_quantile(np.array([4.0, -3.0]), np.array([0.0, 10.0, 20.0]), 0.25) == 2.5


def test_noisy_table_falls_within_stated_bounds_of_pandas() -> None:
    q = StatsQuery(
        numeric=(NumericVar("mean radius", 5, 30, tuple(np.linspace(5, 30, 26).tolist())),),
        strata=CategoricalVar("diagnosis", ("malignant", "benign")),
        epsilon=8.0,
        min_cell=5,
    )
    sites = builtin_hospitals("breast_cancer", 4, 0, "diagnosis")
    cal = calibrate(q)
    rng = np.random.default_rng(1)
    pooled = sum(add_noise(suppress_small_cells(local_statistics(df, q), q)[0], cal, rng) for _, df in sites)
    figs, pm = with_intervals(pooled, lambda v: table_figures(v, q), pooled_noise_drawer("laplace", cal.scales, 4), rng)
    df = pd.concat([d for _, d in sites])
    for level in ("malignant", "benign"):
        x = df.loc[df["diagnosis"] == level, "mean radius"]
        exact = {"N": len(x), "mean radius mean": x.mean(), "mean radius sd": x.std(), "mean radius median": x.median()}
        for row, value in exact.items():
            slack = 1.0 if row.endswith("median") else 0.0  # median: one bin width of grouping on top of the noise
            assert abs(figs[(row, level)] - value) <= 2 * pm[(row, level)] + slack, (row, level)
