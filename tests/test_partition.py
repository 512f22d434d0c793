"""Partitioners and the built-in breast cancer hospitals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_client.data import (
    ConfigError,
    DataWarning,
    HospitalData,
    PartitionError,
    load_hospital,
    load_hospitals,
    partition,
    partition_dirichlet,
    partition_iid,
    partition_quantity,
)
from fl_client.data.preprocess import Standardizer, split_train_test, standardize

LABELS = np.array([0] * 60 + [1] * 40)


def _is_exact_cover(parts, n):
    allrows = np.concatenate(parts)
    return len(allrows) == n and np.array_equal(np.sort(allrows), np.arange(n))


def _mean_tv(parts, labels):
    """Mean total-variation distance of each hospital's label mix from the pooled one."""
    pooled = np.bincount(labels, minlength=2) / len(labels)
    tvs = [0.5 * np.abs(np.bincount(labels[p], minlength=2) / len(p) - pooled).sum() for p in parts]
    return float(np.mean(tvs))


@pytest.mark.parametrize("method", ["iid", "dirichlet", "quantity"])
def test_partition_is_deterministic_and_exact_cover(method):
    # arrange / act
    a = partition(LABELS, 4, seed=7, method=method, alpha=0.5, quantity_alpha=0.5, min_rows=5)
    b = partition(LABELS, 4, seed=7, method=method, alpha=0.5, quantity_alpha=0.5, min_rows=5)
    c = partition(LABELS, 4, seed=8, method=method, alpha=0.5, quantity_alpha=0.5, min_rows=5)
    # assert
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert _is_exact_cover(a, len(LABELS))
    assert min(len(p) for p in a) >= 5


def test_iid_sizes_equal_within_one():
    parts = partition_iid(10, 3, seed=0)
    assert sorted(len(p) for p in parts) == [3, 3, 4]
    assert _is_exact_cover(parts, 10)


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha():
    labels = np.array([0] * 300 + [1] * 200)
    small = np.mean([_mean_tv(partition_dirichlet(labels, 5, s, alpha=0.1, min_rows=5), labels) for s in range(5)])
    large = np.mean([_mean_tv(partition_dirichlet(labels, 5, s, alpha=100.0, min_rows=5), labels) for s in range(5)])
    assert small > large + 0.15
    assert large < 0.1


def test_quantity_skew_gives_unequal_sizes_with_min_rows():
    parts = partition_quantity(200, 4, seed=3, quantity_alpha=0.3, min_rows=10)
    sizes = sorted(len(p) for p in parts)
    assert _is_exact_cover(parts, 200)
    assert sizes[0] >= 10
    assert sizes[-1] - sizes[0] > 30


def test_dirichlet_tops_up_to_min_rows_when_sampling_cannot():
    labels = np.array([0] * 60 + [1] * 40)
    with pytest.warns(DataWarning, match="topped up"):
        parts = partition_dirichlet(labels, 8, seed=0, alpha=0.01, min_rows=10, max_tries=3)
    assert min(len(p) for p in parts) >= 10
    assert _is_exact_cover(parts, 100)


def test_min_rows_impossible_is_a_clear_error():
    with pytest.raises(PartitionError, match="min_rows=30"):
        partition(LABELS, 4, seed=0, method="iid", min_rows=30)


def test_unknown_partitioner_is_an_error():
    with pytest.raises(PartitionError, match="unknown partitioner 'bogus'"):
        partition(LABELS, 2, seed=0, method="bogus")


def test_split_is_stratified_and_deterministic():
    y = np.array([0] * 8 + [1] * 12)
    tr, te = split_train_test(y, 0.25, seed=1, hospital_id="h")
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(20))
    assert len(te) == 5 and np.bincount(y[te]).tolist() == [2, 3]
    _tr2, te2 = split_train_test(y, 0.25, seed=1, hospital_id="h")
    assert np.array_equal(te, te2)


def test_split_falls_back_with_warning_when_a_class_is_tiny():
    y = np.array([0] * 9 + [1])
    with pytest.warns(DataWarning, match="h7: too few rows per class"):
        tr, te = split_train_test(y, 0.2, seed=0, hospital_id="h7")
    assert len(tr) + len(te) == 10 and len(te) == 2


def test_standardizer_uses_train_stats_and_handles_zero_variance():
    X_train = np.array([[1.0, 5.0], [3.0, 5.0]])
    X_test = np.array([[5.0, 7.0]])
    tr, te = standardize(X_train, X_test)
    assert tr.dtype == np.float32
    assert tr[:, 0].tolist() == [-1.0, 1.0]  # mean 2, std 1
    assert tr[:, 1].tolist() == [0.0, 0.0]  # zero variance -> 0, not nan
    assert te.tolist() == [[3.0, 2.0]]  # test uses the train mean/std
    assert Standardizer().fit(X_train).std_.tolist() == [1.0, 1.0]


BC = {
    "name": "breast_cancer",
    "partitioner": "dirichlet",
    "alpha": 0.5,
    "quantity_alpha": 1.0,
    "min_rows": 10,
    "test_fraction": 0.2,
}


def test_breast_cancer_hospitals_cover_all_patients():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        hs = load_hospitals(BC, 4, seed=0)
    assert [h.hospital_id for h in hs] == ["hospital_0", "hospital_1", "hospital_2", "hospital_3"]
    assert sum(h.n_train + h.n_test for h in hs) == 569
    assert all(isinstance(h, HospitalData) and h.X_train.dtype == np.float32 for h in hs)
    assert all(h.X_train.shape[1] == 30 == len(h.feature_names) for h in hs)
    assert all(set(np.unique(h.y_train)) <= {0.0, 1.0} for h in hs)


@pytest.mark.parametrize("method", ["iid", "dirichlet", "quantity"])
def test_load_hospital_equals_list_element(method):
    cfg = {**BC, "partitioner": method}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        hs = load_hospitals(cfg, 3, seed=5)
        for i in range(3):
            assert load_hospital(cfg, i, 3, seed=5) == hs[i]


def test_breast_cancer_train_is_standardised_with_own_train_stats():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        h = load_hospital({**BC, "partitioner": "iid"}, 1, 3, seed=0)
    assert np.allclose(h.X_train.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(h.X_train.std(axis=0), 1.0, atol=1e-3)
    assert not np.allclose(h.X_test.mean(axis=0), 0.0, atol=1e-4)


def test_bad_dataset_config_fails_fast():
    with pytest.raises(ConfigError, match="partitoner"):
        load_hospitals({"name": "breast_cancer", "partitoner": "iid"}, 2, 0)
    with pytest.raises(ConfigError, match="dataset.name"):
        load_hospitals({"name": "mnist"}, 2, 0)
    with pytest.raises(ConfigError, match="index"):
        load_hospital({"name": "breast_cancer"}, 3, 3, 0)


def test_bootstrap_draws_with_replacement_deterministically():
    from fl_client.data.partition import partition

    y = np.zeros(569)
    parts = partition(y, 1000, seed=3, method="bootstrap", rows_per_hospital=40)
    assert len(parts) == 1000 and all(len(p) == 40 for p in parts)
    assert all(p.min() >= 0 and p.max() < 569 for p in parts)
    assert any(len(np.unique(p)) < 40 for p in parts)  # with replacement
    again = partition(y, 10, seed=3, method="bootstrap", rows_per_hospital=40)
    assert all(np.array_equal(a, b) for a, b in zip(again, parts[:10]))  # independent of num_hospitals
    other = partition(y, 10, seed=4, method="bootstrap", rows_per_hospital=40)
    assert not all(np.array_equal(a, b) for a, b in zip(other, parts[:10]))
    with pytest.raises(PartitionError, match="rows_per_hospital"):
        partition(y, 2, seed=0, method="bootstrap", rows_per_hospital=5, min_rows=10)


def test_bootstrap_breast_cancer_hospitals():
    cfg = {**BC, "partitioner": "bootstrap", "rows_per_hospital": 40}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        hs = load_hospitals(cfg, 1000, seed=0)
        assert len(hs) == 1000 and all(h.n_train + h.n_test == 40 for h in hs)
        assert load_hospital(cfg, 999, 1000, seed=0) == hs[999]
