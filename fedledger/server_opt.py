"""Server optimizers (FedAvgM, FedAdam, FedYogi, FedAdagrad) on the flat model vector, in plain numpy.

Each treats the round's aggregate as a pseudo-gradient step from the model
the round started from, ``delta = aggregate - current``, and moves ``current``
with it by the same equations as Flower's strategies (flwr.serverapp.strategy,
tested against them in tests/test_server_opt.py). Without encryption the
aggregator applies the step (fl_server/server_opt.py); with CKKS it cannot, so
every hospital applies it to the aggregate it decrypts (fl_client/server_step.py),
which is the same for every hospital, from state every hospital keeps
identically. A state that does not belong to this optimizer (another
algorithm, other settings, another model size, a step count other than the
one expected) is refused, as Opacus' accountants refuse a foreign state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

FEDAVGM, FEDADAM, FEDYOGI, FEDADAGRAD = "fedavgm", "fedadam", "fedyogi", "fedadagrad"
SERVER_OPTIMIZERS = (FEDAVGM, FEDADAM, FEDYOGI, FEDADAGRAD)

# Flower's defaults (flwr 1.x FedAvgM, FedAdam, FedYogi, FedAdagrad); None: the setting is not the algorithm's
DEFAULTS: dict[str, dict[str, float | None]] = {
    FEDAVGM: {"server_lr": 1.0, "server_momentum": 0.9, "beta1": None, "beta2": None, "tau": None},
    FEDADAM: {"server_lr": 0.1, "server_momentum": None, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
    FEDYOGI: {"server_lr": 0.01, "server_momentum": None, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3},
    FEDADAGRAD: {"server_lr": 0.1, "server_momentum": None, "beta1": None, "beta2": None, "tau": 1e-3},
}
SETTINGS = ("server_lr", "server_momentum", "beta1", "beta2", "tau")

Vector = NDArray[np.float64]


class ServerOptStateError(ValueError):
    """A saved optimizer state that is not this optimizer's (algorithm, settings, size or step count)."""


@dataclass(frozen=True)
class ServerOptSettings:
    """A server optimizer and its settings; a setting the algorithm does not read is 0."""

    name: str
    server_lr: float = 0.0
    server_momentum: float = 0.0
    beta1: float = 0.0
    beta2: float = 0.0
    tau: float = 0.0


def _in_range(key: str, value: float, lo: float, hi: float | None, hi_open: bool = True) -> float:
    ok = value >= lo and (hi is None or (value < hi if hi_open else value <= hi))
    if not (ok and math.isfinite(value)):
        bound = "inf)" if hi is None else (f"{hi})" if hi_open else f"{hi}]")
        raise ValueError(f"strategy.{key} must be in [{lo}, {bound}, got {value}")
    return value


def server_opt_settings(strategy: Mapping[str, Any]) -> ServerOptSettings | None:
    """The study's server optimizer with each unset setting at Flower's default; None for other strategies.

    Raises ValueError for a setting another algorithm owns or a value out of range.
    """
    name = str(strategy.get("name", "fedavg"))
    owned = DEFAULTS.get(name)
    for key in SETTINGS:
        value = strategy.get(key)
        if value is not None and (owned is None or owned[key] is None):
            owners = [n for n in SERVER_OPTIMIZERS if DEFAULTS[n][key] is not None]
            raise ValueError(
                f"strategy.{key}={value} is a setting of {', '.join(owners)}, and strategy.name={name!r} would ignore "
                f"it: set strategy={owners[0]}, or drop strategy.{key}"
            )
    if owned is None:
        return None
    values: dict[str, float] = {}
    for key in SETTINGS:
        default = owned[key]
        if default is None:
            continue
        value = strategy.get(key)
        values[key] = float(default if value is None else value)
    if not values["server_lr"] > 0.0:
        raise ValueError(f"strategy.server_lr must be > 0, got {values['server_lr']}")
    _in_range("server_lr", values["server_lr"], 0.0, None)
    if "server_momentum" in values:
        _in_range("server_momentum", values["server_momentum"], 0.0, 1.0)
    for key in ("beta1", "beta2"):
        if key in values:
            _in_range(key, values[key], 0.0, 1.0)
    if "tau" in values and not values["tau"] > 0.0:
        raise ValueError(f"strategy.tau must be > 0 (it keeps the step finite where v is 0), got {values['tau']}")
    return ServerOptSettings(name, **values)


class ServerOptimizer:
    """One server optimizer: ``step(current, aggregate)`` returns the next global model; state travels as a dict."""

    name: ClassVar[str]
    buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: ServerOptSettings, n_params: int) -> None:
        if settings.name != self.name:
            raise ValueError(f"{type(self).__name__} is {self.name}, not {settings.name}")
        self.settings = settings
        self.n_params = int(n_params)
        self.steps = 0
        self.state: dict[str, Vector] = {}

    def _vector(self, what: str, value: np.ndarray) -> Vector:
        vec = np.asarray(value, dtype=np.float64)
        if vec.shape != (self.n_params,):
            raise ValueError(f"{self.name}: {what} has shape {vec.shape}, the model has ({self.n_params},) parameters")
        return vec

    def step(self, current: np.ndarray, aggregate: np.ndarray) -> Vector:
        """The next global model from the one the round started from and the round's aggregate (float64)."""
        x = self._vector("the current model", current)
        delta = self._vector("the aggregate", aggregate) - x
        if not np.all(np.isfinite(delta)):
            raise ValueError(f"{self.name}: the aggregate holds a non-finite value")
        self.steps += 1
        return self._update(x, delta)

    def _update(self, x: Vector, delta: Vector) -> Vector:
        raise NotImplementedError

    def _buffer(self, key: str, delta: Vector) -> Vector:
        """A buffer as held, zeros before the first step (Flower's initial m and v)."""
        return self.state.get(key, np.zeros_like(delta))

    def _first_moment(self, delta: Vector) -> Vector:
        b1 = self.settings.beta1
        self.state["m"] = b1 * self._buffer("m", delta) + (1.0 - b1) * delta
        return self.state["m"]

    def state_dict(self) -> dict[str, Any]:
        """Everything the next step depends on: algorithm, settings, model size, steps taken, buffers."""
        return {
            "algorithm": self.name,
            "settings": asdict(self.settings),
            "n_params": self.n_params,
            "steps": self.steps,
            "buffers": {k: v.copy() for k, v in self.state.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any], *, steps: int | None = None) -> None:
        """Resume from ``state``; refused unless it is this optimizer's (and, if given, after ``steps`` steps)."""
        if state.get("algorithm") != self.name:
            raise ServerOptStateError(
                f"the saved server-optimizer state is {state.get('algorithm')!r}, not {self.name}"
            )
        if dict(state.get("settings") or {}) != asdict(self.settings):
            raise ServerOptStateError(
                f"the saved {self.name} state has settings {state.get('settings')}, the study's are {asdict(self.settings)}"
            )
        if state.get("n_params") != self.n_params:
            raise ServerOptStateError(
                f"the saved {self.name} state is for {state.get('n_params')} parameters, the model has {self.n_params}"
            )
        if steps is not None and state.get("steps") != steps:
            raise ServerOptStateError(
                f"the saved {self.name} state has taken {state.get('steps')} steps, expected {steps}"
            )
        buffers = dict(state.get("buffers") or {})
        if not set(buffers) <= set(self.buffers):
            raise ServerOptStateError(
                f"the saved {self.name} state holds {sorted(buffers)}, {self.name} keeps {self.buffers}"
            )
        self.state = {k: self._vector(f"the saved buffer {k!r}", v).copy() for k, v in buffers.items()}
        self.steps = int(state["steps"])


class FedAvgM(ServerOptimizer):
    """Server SGD with heavy-ball momentum (Hsu et al., 2019): ``v = m v + g``, ``x -= lr v``, ``g = x - aggregate``."""

    name = FEDAVGM
    buffers = ("momentum",)

    def _update(self, x: Vector, delta: Vector) -> Vector:
        g = -delta
        if self.settings.server_momentum > 0.0:
            held = self.state.get("momentum")
            g = g if held is None else self.settings.server_momentum * held + g  # Flower: the first v is g
            self.state["momentum"] = g
        return x - self.settings.server_lr * g


class FedAdam(ServerOptimizer):
    """Adam on the pseudo-gradient (Reddi et al., 2021), with Flower's bias-corrected rate at step t."""

    name = FEDADAM
    buffers = ("m", "v")

    def _update(self, x: Vector, delta: Vector) -> Vector:
        s, m, v = self.settings, self._first_moment(delta), self._buffer("v", delta)
        self.state["v"] = v = s.beta2 * v + (1.0 - s.beta2) * delta**2
        t = float(self.steps)  # Flower uses the server round, which is the step count when no round is skipped
        eta = float(s.server_lr * math.sqrt(1.0 - s.beta2 ** (t + 1.0)) / (1.0 - s.beta1 ** (t + 1.0)))
        new: Vector = x + eta * m / (np.sqrt(v) + s.tau)
        return new


class FedYogi(ServerOptimizer):
    """Yogi on the pseudo-gradient (Reddi et al., 2021): ``v -= (1 - b2) d^2 sign(v - d^2)``."""

    name = FEDYOGI
    buffers = ("m", "v")

    def _update(self, x: Vector, delta: Vector) -> Vector:
        s, m, v = self.settings, self._first_moment(delta), self._buffer("v", delta)
        self.state["v"] = v = v - (1.0 - s.beta2) * delta**2 * np.sign(v - delta**2)
        return x + s.server_lr * m / (np.sqrt(v) + s.tau)


class FedAdagrad(ServerOptimizer):
    """Adagrad on the pseudo-gradient (Reddi et al., 2021): ``v += d^2``, no first moment (Flower's beta_1 = 0)."""

    name = FEDADAGRAD
    buffers = ("v",)

    def _update(self, x: Vector, delta: Vector) -> Vector:
        s, v = self.settings, self._buffer("v", delta)
        self.state["v"] = v = v + delta**2
        return x + s.server_lr * delta / (np.sqrt(v) + s.tau)


_CLASSES: dict[str, type[ServerOptimizer]] = {c.name: c for c in (FedAvgM, FedAdam, FedYogi, FedAdagrad)}


def make_optimizer(settings: ServerOptSettings, n_params: int) -> ServerOptimizer:
    """A fresh optimizer (no steps taken) for a model of ``n_params`` parameters."""
    return _CLASSES[settings.name](settings, n_params)


MODEL_ENTRY, META_ENTRY = "__model__", "__meta__"


@dataclass
class HeldModel:
    """The global model of ``round`` as the party applying the optimizer holds it, and the optimizer state."""

    round: int
    model: Vector  # float64 flat vector with the float32 model's values (what trains, what the next step starts from)
    optimizer: ServerOptimizer

    def pack(self) -> dict[str, np.ndarray]:
        """Arrays to persist (an .npz file, a Flower ArrayRecord): model, buffers, and the rest as JSON bytes."""
        sd = self.optimizer.state_dict()
        meta = json.dumps({"round": self.round, **{k: v for k, v in sd.items() if k != "buffers"}})
        return {MODEL_ENTRY: self.model, META_ENTRY: np.frombuffer(meta.encode(), dtype=np.uint8), **sd["buffers"]}

    @classmethod
    def unpack(cls, arrays: Mapping[str, np.ndarray], settings: ServerOptSettings, n_params: int) -> HeldModel:
        """The held model from :meth:`pack`'s arrays; :class:`ServerOptStateError` when it is not this study's."""
        rest = dict(arrays)
        try:
            model, meta = rest.pop(MODEL_ENTRY), json.loads(np.asarray(rest.pop(META_ENTRY)).tobytes().decode())
        except (KeyError, ValueError) as exc:
            raise ServerOptStateError(f"the saved server-optimizer state is malformed: {exc}") from None
        optimizer = make_optimizer(settings, n_params)
        optimizer.load_state_dict({**{k: v for k, v in meta.items() if k != "round"}, "buffers": rest})
        return cls(int(meta["round"]), optimizer._vector("the saved model", model), optimizer)

    def advance(self, global_round: int, aggregate: np.ndarray) -> None:
        """Step to ``global_round``'s model with its aggregate; both take float32 values, as the weights hold them
        (the plaintext mean is float32, a decrypted one is unflattened into the float32 model), so every party
        that steps from the same aggregate (aggregator, hospitals, a release replay) gets the same model."""
        mean = np.asarray(aggregate, np.float64).astype(np.float32).astype(np.float64)
        self.model = self.optimizer.step(self.model, mean).astype(np.float32).astype(np.float64)
        self.round = global_round

    @classmethod
    def start(cls, settings: ServerOptSettings, initial: np.ndarray, global_round: int = 0) -> HeldModel:
        """The optimizer's start: the registered initial model, no step taken."""
        model = np.asarray(initial, np.float64).astype(np.float32).astype(np.float64)
        return cls(global_round, model, make_optimizer(settings, int(model.size)))
