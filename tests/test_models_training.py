"""Models, array conversion, the fixed flat layout, local training and evaluation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.config import TrainConfig
from fedledger.model_io import flatten, unflatten
from fl_client.models import (
    IncompatibleModelError,
    build_model,
    get_arrays,
    make_private_compatible,
    set_arrays,
)
from fl_client.training import EvalResult, evaluate, train_local


@pytest.fixture(scope="module")
def breast_cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_tr)
    f32 = np.float32
    return scaler.transform(X_tr).astype(f32), y_tr.astype(f32), scaler.transform(X_te).astype(f32), y_te.astype(f32)


def _toy(n=40, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    return X, y


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_build_model_outputs_one_logit_per_row(name):
    model = build_model(name, n_features=7, hidden=8, seed=0)

    out = model(torch.zeros(3, 7))

    assert out.shape == (3,)


def test_build_model_is_deterministic_per_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)

    a = get_arrays(build_model("mlp", 4, hidden=6, seed=1))
    b = get_arrays(build_model("mlp", 4, hidden=6, seed=1))
    c = get_arrays(build_model("mlp", 4, hidden=6, seed=2))

    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert torch.rand(1) == before


def test_build_model_accepts_a_model_config_and_rejects_unknown_names():
    model = build_model({"name": "mlp", "hidden": 5}, n_features=3)

    assert get_arrays(model)["fc1.weight"].shape == (5, 3)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", 3)


def test_get_set_arrays_round_trip_as_float32():
    src, dst = build_model("mlp", 4, hidden=3, seed=0), build_model("mlp", 4, hidden=3, seed=9)

    set_arrays(dst, get_arrays(src))

    arrays = get_arrays(dst)
    assert sorted(arrays) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight", "out.bias", "out.weight"]
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert all(np.array_equal(arrays[k], get_arrays(src)[k]) for k in arrays)


def test_get_arrays_strips_the_opacus_prefix():
    from opacus import GradSampleModule

    model = build_model("logreg", 3)
    wrapped = GradSampleModule(model)

    assert sorted(get_arrays(wrapped)) == ["linear.bias", "linear.weight"]
    wrapped._close()


def test_set_arrays_refuses_wrong_names_and_shapes():
    model = build_model("logreg", 3)
    good = get_arrays(model)

    with pytest.raises(ValueError, match="missing"):
        set_arrays(model, {"linear.weight": good["linear.weight"]})
    with pytest.raises(ValueError, match="shape"):
        set_arrays(model, {**good, "linear.weight": np.zeros((1, 4), np.float32)})


# ---------------------------------------------------------------- flat layout


def test_flatten_layout_is_sorted_by_name_in_c_order():
    arrays = {"b": np.array([[1, 2], [3, 4]], np.float32), "a": np.array([5, 6], np.float32)}

    flat = flatten(arrays)

    assert flat.tolist() == [5, 6, 1, 2, 3, 4]
    assert flat.dtype == np.float64


def test_unflatten_inverts_flatten_with_template_dtypes():
    template = get_arrays(build_model("mlp", 4, hidden=3))

    back = unflatten(flatten(template), template)

    assert list(back) == sorted(template)
    assert all(back[k].dtype == np.float32 and np.array_equal(back[k], template[k]) for k in template)


def test_unflatten_refuses_a_vector_of_the_wrong_length():
    template = {"a": np.zeros(2, np.float32)}

    with pytest.raises(ValueError, match="3 values"):
        unflatten(np.zeros(3), template)


# ---------------------------------------------------------------- DP compatibility


def test_batchnorm_model_is_fixed_with_a_warning(caplog):
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))

    with caplog.at_level(logging.WARNING, logger="fl_client.models"):
        fixed = make_private_compatible(model)

    assert not any(isinstance(m, nn.BatchNorm1d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert "not DP-SGD compatible" in caplog.text


def test_unfixable_model_is_refused():
    class WithBuffer(nn.Module):  # a trainable layer with a buffer: per-sample grads would leak the buffer
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))
            self.register_buffer("running", torch.zeros(3))

        def forward(self, x):
            return (x * self.w).sum(-1)

    with pytest.raises(IncompatibleModelError, match="buffers"):
        make_private_compatible(WithBuffer())


def test_compatible_model_is_returned_unchanged():
    model = build_model("mlp", 3)

    assert make_private_compatible(model) is model


# ---------------------------------------------------------------- training / evaluation


def test_train_config_from_protocol_config_record():
    cfg = TrainConfig.from_any({"local-epochs": 3, "batch-size": 8, "lr": 0.05, "server-round": 2})

    assert cfg == TrainConfig(local_epochs=3, batch_size=8, lr=0.05)


def test_non_private_training_is_deterministic_given_seed():
    X, y = _toy()
    runs = []
    for seed in (0, 0, 1):
        model = build_model("mlp", X.shape[1], hidden=4, seed=0)
        stats = train_local(model, X, y, TrainConfig(local_epochs=1, batch_size=8, lr=0.1), seed=seed)
        runs.append(get_arrays(model))

    assert stats.steps == 5 and stats.epsilon is None and stats.noise_multiplier is None
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_logreg_reaches_high_accuracy_on_breast_cancer(breast_cancer):
    X_tr, y_tr, X_te, y_te = breast_cancer
    model = build_model("logreg", X_tr.shape[1])

    train_local(model, X_tr, y_tr, TrainConfig(local_epochs=5, batch_size=32, lr=0.1), seed=0)
    result = evaluate(model, X_te, y_te)

    assert result.accuracy > 0.93
    assert result.auc is not None and result.auc > 0.95
    assert result.n == len(y_te)


def test_evaluate_known_values_and_auc_none_for_one_class():
    model = build_model("logreg", 1)
    set_arrays(model, {"linear.weight": np.array([[1.0]], np.float32), "linear.bias": np.array([0.0], np.float32)})
    X = np.array([[2.0], [-2.0], [1.0]], np.float32)

    both = evaluate(model, X, np.array([1, 0, 0], np.float32))
    single = evaluate(model, X, np.array([1, 1, 1], np.float32))

    expected_loss = float(np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-2.0)), np.log1p(np.exp(1.0))]))
    assert both.loss == pytest.approx(expected_loss, rel=1e-5)
    assert both.accuracy == pytest.approx(2 / 3)
    assert both.auc == pytest.approx(1.0)
    assert single.auc is None and single.accuracy == pytest.approx(2 / 3)
    assert isinstance(single, EvalResult)
