"""Server optimizers (fedledger/server_opt.py) against Flower's own FedAvgM, FedAdam, FedYogi, FedAdagrad."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategies

from fedledger.server_opt import (
    HeldModel,
    ServerOptStateError,
    make_optimizer,
    server_opt_settings,
)
from fedledger.strategies import check_strategy
from fedledger.wire import ModelPayload, encode
from fl_server.server_opt import ServerOptStrategy
from fl_server.strategy import RoundStrategy, TrainResult
from fl_server.validation import ValidationOutcome

START = np.array([0.5, -1.0, 2.0, 0.0])
# per round, two hospitals' models and sample counts (the mean is what FedAvg aggregates)
ROUNDS = [
    ([np.array([0.7, -0.8, 1.5, 0.1]), np.array([0.1, -1.2, 2.5, -0.3])], [30, 10]),
    ([np.array([0.9, -0.5, 1.0, 0.2]), np.array([0.6, -0.9, 1.9, 0.0])], [20, 20]),
    ([np.array([0.2, -0.2, 1.1, 0.4]), np.array([1.0, -0.4, 0.8, 0.3])], [5, 35]),
]
CASES = {
    "fedavgm": (dict(server_learning_rate=0.7, server_momentum=0.9), dict(server_lr=0.7, server_momentum=0.9)),
    "fedadam": (dict(eta=0.1, beta_1=0.8, beta_2=0.95, tau=1e-2), dict(server_lr=0.1, beta1=0.8, beta2=0.95, tau=1e-2)),
    "fedyogi": (
        dict(eta=0.05, beta_1=0.9, beta_2=0.99, tau=1e-3),
        dict(server_lr=0.05, beta1=0.9, beta2=0.99, tau=1e-3),
    ),
    "fedadagrad": (dict(eta=0.1, tau=1e-3), dict(server_lr=0.1, tau=1e-3)),
}
FLOWER = {"fedavgm": "FedAvgM", "fedadam": "FedAdam", "fedyogi": "FedYogi", "fedadagrad": "FedAdagrad"}


@pytest.fixture(autouse=True)
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


def _reply(vec: np.ndarray, n: int) -> Message:
    asked = Message(content=RecordDict({}), dst_node_id=1, message_type="train")
    content = RecordDict({"arrays": ArrayRecord({"w": Array(vec)}), "metrics": MetricRecord({"num-examples": n})})
    return Message(content=content, reply_to=asked)


def _flower_models(name: str, kwargs: dict) -> list[np.ndarray]:
    """The global model after each round, as Flower's strategy computes it."""
    strategy = getattr(flwr_strategies, FLOWER[name])(**kwargs)
    current = START.copy()
    if name == "fedavgm":
        strategy.current_arrays = ArrayRecord({"w": Array(current)})  # what its configure_train holds
    out = []
    for server_round, (models, counts) in enumerate(ROUNDS, start=1):
        if name != "fedavgm":
            strategy.current_arrays = {"w": current}  # FedOpt's configure_train holds the model it sends
        arrays, _ = strategy.aggregate_train(server_round, [_reply(m, n) for m, n in zip(models, counts)])
        current = arrays["w"].numpy()
        out.append(current)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_step_matches_flower_over_three_rounds(name):
    flower_kwargs, ours = CASES[name]
    expected = _flower_models(name, flower_kwargs)
    opt = make_optimizer(server_opt_settings({"name": name, **ours}), START.size)
    current = START.copy()
    for (models, counts), want in zip(ROUNDS, expected):
        mean = sum(m * n for m, n in zip(models, counts)) / sum(counts)
        current = opt.step(current, mean)
        np.testing.assert_allclose(current, want, rtol=0, atol=1e-12)
    assert opt.steps == 3
    assert not np.allclose(current, sum(m * n for m, n in zip(*ROUNDS[-1])) / 40)  # not plain FedAvg


def test_fedadam_first_step_by_hand():
    """m = 0.1 d, v = 0.01 d^2, eta_1 = 0.1 sqrt(1 - 0.99^2) / (1 - 0.9^2): each coordinate moves ~eta_1 sign(d)."""
    opt = make_optimizer(server_opt_settings({"name": "fedadam"}), 2)
    new = opt.step(np.array([1.0, 2.0]), np.array([1.5, 1.0]))
    eta = 0.1 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    np.testing.assert_allclose(new, [1.0 + eta * 0.05 / (0.05 + 1e-3), 2.0 - eta * 0.1 / (0.1 + 1e-3)], atol=1e-15)


def test_state_dict_round_trip_continues_identically():
    a = make_optimizer(server_opt_settings({"name": "fedyogi"}), 4)
    x = a.step(START, ROUNDS[0][0][0])
    b = make_optimizer(server_opt_settings({"name": "fedyogi"}), 4)
    b.load_state_dict(a.state_dict(), steps=1)
    assert np.array_equal(a.step(x, ROUNDS[1][0][0]), b.step(x, ROUNDS[1][0][0]))


@pytest.mark.parametrize(
    "other, steps, message",
    [
        ({"name": "fedyogi"}, None, "is 'fedadam', not fedyogi"),
        ({"name": "fedadam", "beta2": 0.999}, None, "settings"),
        ({"name": "fedadam"}, 2, "taken 1 steps, expected 2"),
    ],
)
def test_foreign_state_is_refused(other, steps, message):
    a = make_optimizer(server_opt_settings({"name": "fedadam"}), 4)
    a.step(START, START + 1)
    b = make_optimizer(server_opt_settings(other), 4)
    with pytest.raises(ServerOptStateError, match=message):
        b.load_state_dict(a.state_dict(), steps=steps)


def test_state_for_another_model_size_is_refused():
    a = make_optimizer(server_opt_settings({"name": "fedavgm"}), 4)
    with pytest.raises(ServerOptStateError, match="for 4 parameters, the model has 3"):
        make_optimizer(server_opt_settings({"name": "fedavgm"}), 3).load_state_dict(a.state_dict())


def test_held_model_pack_unpack():
    settings = server_opt_settings({"name": "fedadagrad"})
    held = HeldModel.start(settings, START)
    held.advance(1, ROUNDS[0][0][0])
    back = HeldModel.unpack(held.pack(), settings, 4)
    assert back.round == 1 and back.optimizer.steps == 1 and np.array_equal(back.model, held.model)
    assert back.model.dtype == np.float64 and np.array_equal(back.model, back.model.astype(np.float32))


@pytest.mark.parametrize(
    "strategy, message",
    [
        ({"name": "fedavg", "server_lr": 0.1}, "strategy.server_lr=0.1 is a setting of fedavgm"),
        ({"name": "fedadam", "server_momentum": 0.9}, "server_momentum=0.9 is a setting of fedavgm"),
        ({"name": "fedadagrad", "beta1": 0.9}, "beta1=0.9 is a setting of fedadam, fedyogi"),
        ({"name": "fedadam", "server_lr": 0.0}, "server_lr must be > 0"),
        ({"name": "fedadam", "beta2": 1.0}, r"beta2 must be in \[0.0, 1.0\)"),
        ({"name": "fedyogi", "tau": 0.0}, "tau must be > 0"),
        ({"name": "fedavgm", "server_momentum": -0.1}, "server_momentum must be in"),
    ],
)
def test_bad_settings_are_refused(strategy, message):
    with pytest.raises(ValueError, match=message):
        check_strategy(strategy, encrypted=True, num_hospitals=4)


def test_unset_settings_take_flowers_defaults_and_run_with_encryption():
    choice = check_strategy({"name": "fedyogi"}, encrypted=True, num_hospitals=4)
    assert choice.server_opt is not None
    assert (choice.server_opt.server_lr, choice.server_opt.beta1, choice.server_opt.beta2) == (0.01, 0.9, 0.99)
    assert choice.server_opt.server_momentum == 0.0 and not choice.robust
    assert check_strategy({"name": "fedavg"}, encrypted=True, num_hospitals=4).server_opt is None


class _FixedMean(RoundStrategy):
    """The inner strategy's part: each round's mean, given (what FedAvg would return)."""

    def __init__(self, means: list[np.ndarray]) -> None:
        super().__init__()
        self.means = means

    def configure_train(self, server_round, arrays, config, grid):
        return []

    configure_evaluate = configure_train

    def summary(self) -> None:
        pass

    def aggregate_outcome(self, server_round, outcome):
        return TrainResult(ModelPayload(arrays={"w": self.means[server_round - 1]}), (), ())


def test_aggregator_steps_the_plaintext_mean_and_resumes_from_the_saved_round(tmp_path):
    settings = server_opt_settings({"name": "fedavgm", "server_lr": 0.5, "server_momentum": 0.9})
    initial = {"w": START.astype(np.float32)}
    means = [np.float32(0.5) * np.ones(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32)]
    record = encode(ModelPayload(arrays=initial))
    first = ServerOptStrategy(_FixedMean(means), settings, initial, tmp_path)
    first.configure_train(1, record, ConfigRecord({}), None)
    r1 = first.aggregate_outcome(1, ValidationOutcome()).aggregate
    first.configure_train(2, encode(r1), ConfigRecord({}), None)
    r2 = first.aggregate_outcome(2, ValidationOutcome()).aggregate
    # FedAvgM by hand: v1 = x0 - m1, x1 = x0 - 0.5 v1; v2 = 0.9 v1 + (x1 - m2), x2 = x1 - 0.5 v2
    x0 = START.astype(np.float32).astype(np.float64)
    v1 = x0 - 0.5
    x1 = (x0 - 0.5 * v1).astype(np.float32).astype(np.float64)
    x2 = x1 - 0.5 * (0.9 * v1 + x1)
    np.testing.assert_allclose(r1.arrays["w"], x1, atol=1e-7)
    np.testing.assert_allclose(r2.arrays["w"], x2, atol=1e-6)
    # a resumed aggregator redoing round 2 from round 1's saved state gets the same model
    resumed = ServerOptStrategy(_FixedMean(means), settings, initial, tmp_path)
    resumed.configure_train(2, encode(r1), ConfigRecord({}), None)
    assert np.array_equal(resumed.aggregate_outcome(2, ValidationOutcome()).aggregate.arrays["w"], r2.arrays["w"])
    (tmp_path / "server_opt" / "round_00002.npz").unlink()
    with pytest.raises(RuntimeError, match="needs its state after round 2"):
        ServerOptStrategy(_FixedMean(means), settings, initial, tmp_path).configure_train(
            3, record, ConfigRecord({}), None
        )
