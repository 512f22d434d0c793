"""Record-level DP-SGD for one hospital: Opacus engine, accountant state, budget.

One :class:`HospitalPrivacy` object lives for the whole study at a hospital.
It fixes the noise multiplier once (given, or derived from a target
(epsilon, delta) over *all* planned rounds x local epochs), owns the Opacus
accountant whose history is carried across rounds (persist it with
:meth:`HospitalPrivacy.state_dict` / :meth:`HospitalPrivacy.save_state`), and
refuses a round whose projected epsilon would pass the hospital's budget.

Sampling: each step is a Poisson sample of the hospital's records with rate
``q = batch_size / n_records``; an epoch is ``max(1, n_records // batch_size)``
steps (Opacus's ``int(1 / q)``). The accountant is stepped with exactly this
``q``. See docs/PRIVACY.md for the guarantee's scope.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fl_client.models import IncompatibleModelError, dp_errors, unwrap

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_GRAD_SAMPLE_MODE",
    "GRAD_SAMPLE_MODES",
    "STATE_VERSION",
    "BudgetExceededError",
    "HospitalPrivacy",
    "PoissonTensorLoader",
    "PrivacyConfig",
    "compute_epsilon",
    "default_delta",
    "derive_noise_multiplier",
    "make_hospital_privacy",
]

log = logging.getLogger(__name__)

ACCOUNTANTS = ("prv", "rdp", "gdp")
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew")
# Chosen by benchmarks/bench_dp.py: all three give identical per-sample
# gradients on our models (tests/test_privacy.py); expanded weights (ew) is the
# fastest on CPU for them (1.8-2.5x non-private vs 1.9-3.6x for hooks).
DEFAULT_GRAD_SAMPLE_MODE = "ew"
STATE_VERSION = 1


class BudgetExceededError(RuntimeError):
    """The next round would spend more privacy than the hospital's budget allows."""

    code = "privacy-budget-exceeded"

    def __init__(self, message: str, *, current: float, projected: float, budget: float, next_round: int | None):
        super().__init__(message)
        self.current = current
        self.projected = projected
        self.budget = budget
        self.next_round = next_round


def default_delta(n_records: int) -> float:
    """delta well below 1/n: ``min(1e-5, 1 / (10 n))``."""
    return min(1e-5, 1.0 / (10.0 * n_records))


@dataclass
class PrivacyConfig:
    """Hydra group ``privacy`` (conf/privacy/*.yaml).

    Exactly one of ``noise_multiplier`` / ``target_epsilon`` must be set when
    ``enabled``. ``delta`` None means :func:`default_delta` of the hospital's
    record count.
    """

    enabled: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE
    secure_mode: bool = False
    budget: float | None = None  # default epsilon budget of a hospital; the hospital's own setting wins

    @classmethod
    def from_any(cls, cfg: Any) -> "PrivacyConfig":
        """Build from a PrivacyConfig, mapping, Hydra DictConfig or object with attributes."""
        if isinstance(cfg, cls):
            return cfg
        if cfg is None:
            return cls()
        names = [f.name for f in fields(cls)]
        if not isinstance(cfg, Mapping):
            try:  # omegaconf DictConfig behaves as a Mapping; plain objects do not
                from omegaconf import DictConfig, OmegaConf

                if isinstance(cfg, DictConfig):
                    cfg = OmegaConf.to_container(cfg, resolve=True)
            except ImportError:  # pragma: no cover
                pass
        if isinstance(cfg, Mapping):
            unknown = set(cfg) - set(names)
            if unknown:
                raise ValueError(f"unknown privacy config keys: {sorted(unknown)}")
            return cls(**{k: cfg[k] for k in names if k in cfg})
        return cls(**{k: getattr(cfg, k) for k in names if hasattr(cfg, k)})

    def validate(self) -> None:
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"privacy.accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(
                f"privacy.grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, got {self.grad_sample_mode!r}"
            )
        if not self.enabled:
            return
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "privacy: set exactly one of noise_multiplier (fixed noise) or target_epsilon "
                f"(noise derived for the whole study); got noise_multiplier={self.noise_multiplier}, "
                f"target_epsilon={self.target_epsilon}"
            )
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ValueError(f"privacy.noise_multiplier must be > 0 when DP is enabled, got {self.noise_multiplier}")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"privacy.target_epsilon must be > 0, got {self.target_epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"privacy.max_grad_norm must be > 0, got {self.max_grad_norm}")


# --------------------------------------------------------------------------- accountants


def _create_accountant(name: str):
    from opacus.accountants import create_accountant

    if name == "gdp":
        with warnings.catch_warnings():  # Opacus warns on every construction; documented in PRIVACY.md
            warnings.simplefilter("ignore")
            return create_accountant(mechanism=name)
    return create_accountant(mechanism=name)


def _history_plus(history: Sequence[Sequence[float]], noise: float, q: float, steps: int) -> list[tuple]:
    """History after ``steps`` more steps of (noise, q), merged like Opacus's accountants do."""
    hist = [tuple(h) for h in history]
    if steps <= 0:
        return hist
    if hist and hist[-1][0] == noise and hist[-1][1] == q:
        hist[-1] = (noise, q, int(hist[-1][2]) + steps)
    else:
        hist.append((noise, q, steps))
    return hist


def compute_epsilon(
    accountant: str,
    history: Sequence[Sequence[float]],
    delta: float,
    planned_steps: int | None = None,
    round_steps: int | None = None,
) -> float:
    """Epsilon of an Opacus accountant ``accountant`` with ``history`` at ``delta`` (0 if no steps).

    With ``planned_steps`` (the study's total steps), a PRV history of one
    (noise, rate) within the plan is answered from one discretisation for the
    whole plan (:mod:`fl_client.prv_plan`), not a fresh one per call. With
    ``round_steps`` too, a miss also fills the next rounds' figures, so the
    rounds after it find theirs in the memo.
    """
    hist = tuple((float(h[0]), float(h[1]), int(h[2])) for h in history if int(h[2]) > 0)
    if accountant == "prv" and planned_steps and len(hist) == 1 and hist[0][2] <= int(planned_steps):
        noise, rate, steps = hist[0]
        planned, delta = int(planned_steps), float(delta)
        if round_steps and _memo_key("epsilon-planned", (noise, rate, steps, planned, delta)) not in _MEMO:
            ahead = range(steps, min(planned, steps + PRECOMPUTE_ROUNDS * int(round_steps)) + 1, int(round_steps))
            for later in ahead:
                _memoized("epsilon-planned", (noise, rate, later, planned, delta), _planned_epsilon)
        return _memoized("epsilon-planned", (noise, rate, steps, planned, delta), _planned_epsilon)
    return _compute_epsilon_cached(accountant, hist, float(delta))


PRECOMPUTE_ROUNDS = 10  # rounds of epsilon figures filled per planned-PRV miss (one inverse FFT each)


def _planned_epsilon(noise: float, rate: float, steps: int, planned_steps: int, delta: float) -> float:
    from fl_client.prv_plan import planned_prv

    return planned_prv(noise, rate, planned_steps, delta).epsilon(steps)


# Accountant results by their exact inputs. A hospital persists this memo with its privacy state
# (hospital_runtime), so a new worker process or a restarted client does not redo PRV/RDP work:
# round r's projected epsilon is round r+1's current one, and the derived noise never changes.
_MEMO: dict[str, float] = {}


def _memo_key(kind: str, args: tuple) -> str:
    return json.dumps([kind, *args])


def _memoized(kind: str, args: tuple, compute: Any) -> float:
    key = _memo_key(kind, args)
    if key not in _MEMO:
        _MEMO[key] = float(compute(*args))
    return _MEMO[key]


def memo_export() -> dict[str, float]:
    """Accountant results computed so far (JSON-serialisable)."""
    return dict(_MEMO)


def memo_import(entries: Mapping[str, float]) -> None:
    """Reuse results computed earlier (same inputs give the same figures, so this changes no number)."""
    for k, v in entries.items():
        _MEMO.setdefault(str(k), float(v))


@functools.lru_cache(maxsize=256)
def _compute_epsilon_cached(accountant: str, hist: tuple, delta: float) -> float:
    return _memoized("epsilon", (accountant, [list(h) for h in hist], delta), _compute_epsilon_uncached)


def _compute_epsilon_uncached(accountant: str, hist: list, delta: float) -> float:
    hist = [tuple(h) for h in hist]
    # pure function of its arguments; PRV/RDP evaluations take 0.1-3 s, and the
    # same history is asked for by check_budget, train_local and summary
    if not hist:
        return 0.0
    acc = _create_accountant(accountant)
    if accountant == "gdp" and len(hist) > 1:
        raise ValueError("the gdp accountant needs a constant noise multiplier and sample rate")
    acc.history = list(hist)
    return float(acc.get_epsilon(delta=delta))


def derive_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Memoized :func:`_derive_noise_multiplier` (see ``_MEMO``)."""
    return _memoized("noise", (target_epsilon, delta, sample_rate, steps, accountant), _derive_noise_multiplier)


def _derive_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Opacus's ``get_noise_multiplier``: smallest noise (to 0.01 in epsilon) reaching
    ``target_epsilon`` at ``delta`` after ``steps`` Poisson steps of rate ``sample_rate``.

    Cached: the hospital re-creates its HospitalPrivacy every round with the same study figures.
    """
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=0.01,
            )
        )


# --------------------------------------------------------------------------- data


class PoissonTensorLoader:
    """Poisson-sampled batches straight from in-memory tensors.

    Each of ``steps`` batches independently includes every row with
    probability ``sample_rate`` (exactly Opacus's UniformWithReplacementSampler:
    ``torch.rand(n) < q``), so the accounting assumptions hold; batches may be
    empty. Avoids the per-row Dataset/collate cost of a DataLoader.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], sample_rate: float, steps: int, generator=None):
        if not tensors:
            raise ValueError("need at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors must have the same number of rows")
        self.tensors = tuple(tensors)
        self.sample_rate = float(sample_rate)
        self.steps = int(steps)
        self.generator = generator
        self.num_samples = n

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            idx = mask.nonzero(as_tuple=True)[0]
            yield tuple(t.index_select(0, idx) for t in self.tensors)


# --------------------------------------------------------------------------- the hospital's engine


class HospitalPrivacy:
    """DP-SGD for one hospital over a whole study (see module docstring)."""

    def __init__(
        self,
        config: PrivacyConfig | Mapping | Any,
        n_records: int,
        batch_size: int,
        planned_rounds: int,
        local_epochs: int = 1,
        budget: float | None = None,
    ):
        cfg = PrivacyConfig.from_any(config)
        cfg.validate()
        if not cfg.enabled:
            raise ValueError("HospitalPrivacy needs privacy.enabled=true (use make_hospital_privacy for optional DP)")
        if n_records < 1 or batch_size < 1 or planned_rounds < 1 or local_epochs < 1:
            raise ValueError(
                f"need n_records, batch_size, planned_rounds, local_epochs >= 1; got "
                f"{n_records}, {batch_size}, {planned_rounds}, {local_epochs}"
            )
        if budget is None:
            budget = cfg.budget
        if budget is not None and not budget > 0:
            raise ValueError(f"privacy budget must be > 0 (or None for no budget), got {budget}")
        self.config = cfg
        self.n_records = int(n_records)
        self.batch_size = int(batch_size)
        self.planned_rounds = int(planned_rounds)
        self.local_epochs = int(local_epochs)
        self.budget = None if budget is None else float(budget)
        self.sample_rate = min(1.0, self.batch_size / self.n_records)
        self.steps_per_epoch = max(1, self.n_records // self.batch_size)
        self.planned_steps = self.planned_rounds * self.local_epochs * self.steps_per_epoch
        self.delta = float(cfg.delta) if cfg.delta is not None else default_delta(self.n_records)
        if self.delta >= 1.0 / self.n_records:
            log.warning(
                "privacy.delta=%g is not below 1/n=%g for %d records: the guarantee is weak",
                self.delta,
                1.0 / self.n_records,
                self.n_records,
            )
        self.max_grad_norm = float(cfg.max_grad_norm)
        self.accountant_name = cfg.accountant
        if cfg.noise_multiplier is not None:
            self.noise_multiplier = float(cfg.noise_multiplier)
        else:
            self.noise_multiplier = derive_noise_multiplier(
                float(cfg.target_epsilon), self.delta, self.sample_rate, self.planned_steps, self.accountant_name
            )
            log.info(
                "derived noise multiplier %.4f for target epsilon %g, delta %g over %d steps (q=%.4f, %s)",
                self.noise_multiplier,
                cfg.target_epsilon,
                self.delta,
                self.planned_steps,
                self.sample_rate,
                self.accountant_name,
            )
        self._accountant = _create_accountant(self.accountant_name)
        self._secure_rng = None

    # ------------------------------------------------------------------ accounting
    @property
    def history(self) -> list[tuple[float, float, int]]:
        return [tuple(h) for h in self._accountant.history]

    @property
    def steps(self) -> int:
        """DP-SGD steps accounted so far."""
        return sum(int(h[2]) for h in self._accountant.history)

    def steps_per_round(self, local_epochs: int | None = None) -> int:
        return (self.local_epochs if local_epochs is None else int(local_epochs)) * self.steps_per_epoch

    def epsilon(self) -> float:
        """Cumulative epsilon (at ``self.delta``) over all steps taken so far."""
        return compute_epsilon(
            self.accountant_name, self._accountant.history, self.delta, self.planned_steps, self.steps_per_round()
        )

    def projected_epsilon(self, extra_steps: int) -> float:
        """Epsilon after ``extra_steps`` more steps; computed on a copy, nothing is mutated."""
        hist = _history_plus(self._accountant.history, self.noise_multiplier, self.sample_rate, int(extra_steps))
        return compute_epsilon(self.accountant_name, hist, self.delta, self.planned_steps, self.steps_per_round())

    def check_budget(self, next_round: int | None = None, local_epochs: int | None = None) -> None:
        """Raise :class:`BudgetExceededError` if the next round would take epsilon past the budget."""
        if self.budget is None:
            return
        current = self.epsilon()
        projected = self.projected_epsilon(self.steps_per_round(local_epochs))
        if projected > self.budget:
            where = f"round {next_round}" if next_round is not None else "the next round"
            raise BudgetExceededError(
                f"privacy budget would be exceeded: this hospital has spent epsilon={current:.4f} "
                f"(delta={self.delta:g}); training {where} would bring it to epsilon={projected:.4f}, "
                f"above the hospital's budget of {self.budget:g}. Refusing to train.",
                current=current,
                projected=projected,
                budget=self.budget,
                next_round=next_round,
            )

    def summary(self) -> dict:
        return {
            "epsilon": self.epsilon(),
            "delta": self.delta,
            "budget": self.budget,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "accountant": self.accountant_name,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """JSON-serialisable accountant state (see :meth:`load_state_dict`)."""
        return {
            "version": STATE_VERSION,
            "accountant": self.accountant_name,
            "history": [[float(nm), float(q), int(s)] for nm, q, s in self._accountant.history],
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "delta": self.delta,
            "max_grad_norm": self.max_grad_norm,
            "steps": self.steps,
            "epsilon": self.epsilon(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the accountant history; refuse state of a different mechanism."""
        if not isinstance(state, Mapping) or not state:
            raise ValueError("privacy state is empty or not a mapping")
        for key in ("version", "accountant", "history", "noise_multiplier", "sample_rate", "delta"):
            if key not in state:
                raise ValueError(f"privacy state has no {key!r} field")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"privacy state version {state['version']!r} != supported version {STATE_VERSION}")
        if state["accountant"] != self.accountant_name:
            raise ValueError(
                f"privacy state accountant {state['accountant']!r} cannot be loaded into a "
                f"{self.accountant_name!r} accountant"
            )
        for key, mine in (
            ("noise_multiplier", self.noise_multiplier),
            ("sample_rate", self.sample_rate),
            ("delta", self.delta),
        ):
            theirs = float(state[key])
            if not math.isclose(theirs, mine, rel_tol=1e-9, abs_tol=0.0):
                raise ValueError(f"privacy state {key}={theirs!r} does not match this hospital's {key}={mine!r}")
        history = []
        for entry in state["history"]:
            if len(entry) != 3:
                raise ValueError(f"privacy state history entry {entry!r} is not (noise, sample_rate, steps)")
            nm, q, s = float(entry[0]), float(entry[1]), int(entry[2])
            if s < 0 or not nm > 0 or not 0 < q <= 1:
                raise ValueError(f"privacy state history entry {entry!r} is invalid")
            history.append((nm, q, s))
        if self.accountant_name == "gdp" and len(history) > 1:
            raise ValueError("privacy state history for gdp must have a single (noise, rate) entry")
        self._accountant.history = history

    def save_state(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` as JSON atomically (tmp file + fsync + rename)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".privacy-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.state_dict(), fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        try:  # make the rename itself durable
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:  # pragma: no cover - not supported on every platform
            pass

    def load_state(self, path: str | os.PathLike) -> bool:
        """Load state saved by :meth:`save_state`; returns False (fresh start) if the file does not exist."""
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as fh:
            self.load_state_dict(json.load(fh))
        return True

    # ------------------------------------------------------------------ Opacus wiring
    def make_generator(self, seed: int | None) -> torch.Generator | None:
        """RNG for Poisson sampling and noise: secure (torchcsprng) in secure_mode, else seeded."""
        if self.config.secure_mode:
            if self._secure_rng is None:
                try:
                    import torchcsprng as csprng
                except ImportError as exc:
                    raise ImportError(
                        "privacy.secure_mode=true needs the torchcsprng package (cryptographically "
                        "secure noise and sampling); install it or set secure_mode=false"
                    ) from exc
                self._secure_rng = csprng.create_random_device_generator("/dev/urandom")
            return self._secure_rng
        if seed is None:
            return None
        return torch.Generator().manual_seed(int(seed))

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer, data_loader, *, generator=None):
        """Make ``(model, optimizer, data_loader)`` private for one round.

        Mirrors Opacus's ``PrivacyEngine.make_private`` (grad-sample wrapper,
        DPOptimizer with flat clipping, Poisson sampling, accountant hook) but
        with the study's exact sample rate ``batch_size / n_records`` and this
        object's persisted accountant. ``data_loader`` may be a DataLoader
        (a TensorDataset gets the fast :class:`PoissonTensorLoader`, anything else
        Opacus's DPDataLoader) or a tuple of tensors. Call :meth:`detach` on the
        returned model after the round.
        """
        from opacus.data_loader import DPDataLoader
        from opacus.grad_sample.utils import wrap_model
        from opacus.optimizers import get_optimizer_class

        cfg = self.config
        base = unwrap(model)
        if base is not model:
            raise ValueError("attach() needs a plain nn.Module, not an already wrapped one (call detach() first)")
        errors = dp_errors(model)
        if errors:
            raise IncompatibleModelError(
                "model is not DP-SGD compatible: "
                + "; ".join(str(e) for e in errors)
                + ". Call fl_client.models.make_private_compatible(model) when building the model."
            )
        model_params = set(model.parameters())
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p not in model_params:
                    raise ValueError("optimizer parameters are not the model's parameters")
        if generator is None:
            generator = self.make_generator(None)
        elif cfg.secure_mode:
            raise ValueError("a seeded generator is not allowed in secure_mode")

        dp_model = wrap_model(model, cfg.grad_sample_mode, batch_first=True, loss_reduction="mean")
        dp_model.forbid_grad_accumulation()
        optim_cls = get_optimizer_class(clipping="flat", distributed=False, grad_sample_mode=cfg.grad_sample_mode)
        dp_optimizer = optim_cls(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            expected_batch_size=self.sample_rate * self.n_records,
            loss_reduction="mean",
            generator=generator,
            secure_mode=cfg.secure_mode,
        )
        dp_optimizer.attach_step_hook(self._accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))

        if isinstance(data_loader, (tuple, list)):
            tensors = tuple(data_loader)
        elif isinstance(data_loader, DataLoader) and isinstance(data_loader.dataset, TensorDataset):
            tensors = data_loader.dataset.tensors
        else:
            tensors = None
        if tensors is not None:
            if len(tensors[0]) != self.n_records:
                raise ValueError(f"data has {len(tensors[0])} rows, HospitalPrivacy was set up for {self.n_records}")
            loader = PoissonTensorLoader(tensors, self.sample_rate, self.steps_per_epoch, generator)
        else:
            if len(data_loader.dataset) != self.n_records:
                raise ValueError(
                    f"data has {len(data_loader.dataset)} rows, HospitalPrivacy was set up for {self.n_records}"
                )
            loader = DPDataLoader(
                data_loader.dataset,
                sample_rate=self.sample_rate,
                collate_fn=data_loader.collate_fn,
                generator=generator,
            )
        return dp_model, dp_optimizer, loader

    @staticmethod
    def detach(dp_model: nn.Module) -> nn.Module:
        """Remove Opacus hooks from a model returned by :meth:`attach`; returns the plain module."""
        if hasattr(dp_model, "_close"):
            dp_model._close()
        return unwrap(dp_model)


def make_hospital_privacy(
    config: PrivacyConfig | Mapping | Any,
    n_records: int,
    batch_size: int,
    planned_rounds: int,
    local_epochs: int = 1,
    budget: float | None = None,
) -> HospitalPrivacy | None:
    """``HospitalPrivacy`` when ``config.enabled``, else None (and a refusal if a budget was set)."""
    cfg = PrivacyConfig.from_any(config)
    cfg.validate()
    if not cfg.enabled:
        if budget is not None:
            raise ValueError(
                f"the hospital set a privacy budget ({budget}) but privacy.enabled is false: "
                "refusing to train without DP"
            )
        return None
    return HospitalPrivacy(cfg, n_records, batch_size, planned_rounds, local_epochs, budget)
