"""Pooled release: CKKS sum of the hospitals' noisy answers, Table 1 files, Kaplan-Meier against lifelines,
and the privacy budget shared with training."""

from __future__ import annotations

import numpy as np
import pytest
from eth_account import Account

from experiments.stats_figures import exact_frame_figures, km_curves, km_dp_band, noisy_table
from experiments.table1 import write_table1
from fedledger.ckks import create_keys, load_aggregator_context, load_secret_context, preset
from fedledger.commitment import Domain
from fedledger.query_charge import recover_charge_signer
from fedledger.stats.calibration import calibrate
from fedledger.stats.query import CategoricalVar, NumericVar, StatsQuery, Survival
from fl_client.accounting import BudgetExceededError, PrivacyAccount
from fl_client.stats.data import builtin_hospitals
from fl_client.stats.release import decrypt_statistics
from fl_client.stats.site import QueryRefused, answer_query, charge_for
from fl_server.stats_aggregate import sum_answers

DP = {"enabled": True, "noise_multiplier": 1.0, "accountant": "rdp", "delta": 1e-5}
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
STUDY = b"\x11" * 32
GRID = tuple(float(t) for t in range(0, 2701, 150))
QUERY = StatsQuery(
    numeric=(NumericVar("age", 20, 80, tuple(float(a) for a in range(20, 81, 5))),),
    categorical=(CategoricalVar("tgrade", ("I", "II", "III")),),
    strata=CategoricalVar("horTh", ("no", "yes")),
    survival=Survival("time", "cens", GRID),
    epsilon=6.0,
    min_cell=5,
)


def account(budget: float | None = None) -> PrivacyAccount:
    return PrivacyAccount(DP, n_records=170, batch_size=32, planned_rounds=5, budget=budget)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    paths = create_keys(tmp_path_factory.mktemp("keys"), preset("ckks"))
    return load_secret_context(paths.secret_context), load_aggregator_context(paths.aggregator_context)


def answers(secret, query=QUERY, per_site_allowed=False):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    sites = builtin_hospitals("gbsg2", 4, 0, "cens")
    out = []
    for i, (hid, df) in enumerate(sites):
        signer = Account.from_key(bytes([i + 1]) * 32)
        out.append(
            answer_query(
                hid,
                df,
                query,
                secret_context=secret,
                account=account(),
                signer=signer,
                domain=DOMAIN,
                study_id=STUDY,
                per_site_allowed=per_site_allowed,
                rng=rng,
            )
        )
    return sites, out


def test_pooled_ckks_sum_is_within_stated_bounds_of_the_exact_figures(keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret, public = keys
    assert not public.is_private()  # the aggregator sums with the keyless context
    sites, ans = answers(secret)
    pooled = decrypt_statistics(secret, sum_answers(public, ans, QUERY.hash(), 2 * (1 + 15 + 4 + 38)), QUERY)
    exact = exact_frame_figures(dict(sites), QUERY)
    table = noisy_table(pooled, QUERY, calibrate(QUERY), 4, np.random.default_rng(3), exact=exact)
    for row in ("N", "age mean", "age sd", "tgrade=II %"):
        for col in ("no", "yes", "overall"):
            cell = table[row][col]
            assert cell.exact is not None
            assert abs(cell.value - cell.exact) <= 2 * cell.pm95, (row, col, cell)
    paths = write_table1(tmp_path, "table1", table, {"mechanism": "laplace", "epsilon": "6"})
    assert "± " in paths["md"].read_text() and paths["csv"].read_text().startswith("row,column,value,pm95")
    assert "<table" in paths["html"].read_text()
    # each hospital signed its own charge
    for i, a in enumerate(ans):
        assert recover_charge_signer(DOMAIN, a.charge, a.signature) == Account.from_key(bytes([i + 1]) * 32).address
        assert a.charge.epsilon_micro == 6_000_000 and "fewer than 5" in a.suppression


def test_per_site_query_needs_the_protocol_flag(keys) -> None:  # type: ignore[no-untyped-def]
    secret, _ = keys
    q = StatsQuery(numeric=QUERY.numeric, per_site=True, epsilon=1.0)
    with pytest.raises(QueryRefused, match="stats_per_site"):
        answers(secret, q)


def test_dp_kaplan_meier_matches_lifelines_on_pooled_exact_data() -> None:
    from lifelines import KaplanMeierFitter

    q = StatsQuery(numeric=(), survival=Survival("time", "cens", GRID), epsilon=4.0, min_cell=5)
    sites = builtin_hospitals("gbsg2", 4, 0, "cens")
    cal = calibrate(q)
    rng = np.random.default_rng(11)
    from fl_client.stats.local import local_statistics
    from fl_client.stats.noise import add_noise
    from fl_client.stats.suppress import suppress_small_cells

    pooled = sum(add_noise(suppress_small_cells(local_statistics(df, q), q)[0], cal, rng) for _, df in sites)
    curve = km_curves(pooled, q)["all"]
    band = km_dp_band(pooled, q, cal, 4, rng)["all"]
    df = __import__("pandas").concat([d for _, d in sites])
    km = KaplanMeierFitter().fit(df["time"], df["cens"])
    truth = km.survival_function_at_times(list(GRID)).to_numpy()
    grouped = km_curves(exact_frame_figures(dict(sites), q), q)["all"].survival
    # grouping exits by grid interval (no noise) stays within 0.02 of the exact product-limit curve
    assert np.max(np.abs(grouped - truth)) <= 0.02
    # the DP curve stays within twice its stated 95% DP band (plus the grouping tolerance)
    assert np.all(np.abs(curve.survival - truth) <= 2 * band + 0.02)
    assert band[1:].min() > 0  # the band is not empty: noise was added


def test_a_hospital_that_spent_its_budget_on_queries_refuses_to_train() -> None:
    acc = account(budget=6.0)
    acc.check_budget(1)  # one round of training alone fits the budget (epsilon ~4.4)
    q = StatsQuery(numeric=QUERY.numeric, epsilon=1.0)
    added, total = acc.charge_query(charge_for(q))
    assert added == pytest.approx(1.0) and total == pytest.approx(1.0)
    acc.charge_query(charge_for(q))
    with pytest.raises(BudgetExceededError, match="statistics queries included"):
        acc.check_budget(1)  # 2 (queries) + one round of training > 6
    with pytest.raises(BudgetExceededError, match="Refusing to answer"):
        for _ in range(5):  # the fifth would reach 7 > 6
            acc.charge_query(charge_for(q))
    assert len(acc.queries) == 6
    state = acc.state_dict()
    again = account(budget=6.0)
    again.load_state_dict(state)
    assert len(again.queries) == 6 and again.total_epsilon() == pytest.approx(6.0)


@pytest.mark.slow  # the PRV search for z takes ~6 s
def test_gaussian_query_composes_with_training_in_the_accountant() -> None:
    acc = account()
    trained = acc.projected_epsilon(acc.steps_per_round())
    q = StatsQuery(numeric=QUERY.numeric, mechanism="gaussian", epsilon=1.0, delta=1e-5)
    gaussian = charge_for(q)
    both = acc.total_epsilon(acc.steps_per_round(), extra_queries=(gaussian,))
    # one accountant composes the Gaussian query with the training steps: more than training alone,
    # less than the two epsilons added
    assert trained < both < trained + 1.0
    laplace = charge_for(StatsQuery(numeric=QUERY.numeric, epsilon=1.0))
    assert acc.total_epsilon(acc.steps_per_round(), extra_queries=(laplace,)) == pytest.approx(trained + 1.0)
