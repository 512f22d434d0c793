"""Epsilon of a DP-SGD step history, and the noise that reaches a target epsilon.

A history is Opacus's list of ``(noise_multiplier, sample_rate, steps)``.
Results are memoized by their exact inputs; a hospital persists the memo with
its privacy state (hospital_runtime), so a new worker process or a restarted
client does not redo PRV/RDP work: round r's projected epsilon is round r+1's
current one, and the derived noise never changes.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedledger.dp.prv_plan import planned_prv

__all__ = [
    "PRECOMPUTE_ROUNDS",
    "compute_epsilon",
    "create_accountant",
    "derive_noise_multiplier",
    "history_plus",
    "memo_export",
    "memo_import",
]

History = list[tuple[float, float, int]]

PRECOMPUTE_ROUNDS = 10  # rounds of epsilon figures filled per planned-PRV miss (one inverse FFT each)

_MEMO: dict[str, float] = {}


def create_accountant(name: str) -> Any:
    """A fresh Opacus accountant (``prv``, ``rdp`` or ``gdp``) with an empty history."""
    from opacus.accountants import create_accountant as opacus_accountant

    if name == "gdp":
        with warnings.catch_warnings():  # Opacus warns on every construction; documented in PRIVACY.md
            warnings.simplefilter("ignore")
            return opacus_accountant(mechanism=name)
    return opacus_accountant(mechanism=name)


def history_plus(history: Sequence[Sequence[float]], noise: float, q: float, steps: int) -> History:
    """History after ``steps`` more steps of (noise, q), merged like Opacus's accountants do."""
    hist = [(float(h[0]), float(h[1]), int(h[2])) for h in history]
    if steps <= 0:
        return hist
    if hist and hist[-1][0] == noise and hist[-1][1] == q:
        hist[-1] = (noise, q, hist[-1][2] + steps)
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

    Never negative: PRV accounting can return epsilon < 0 at a large delta, and
    since delta(epsilon) only falls as epsilon grows, epsilon 0 holds there too
    (a delta that large is refused anyway: :func:`fedledger.dp.plan.check_delta`).

    With ``planned_steps`` (the study's total steps), a PRV history of one
    (noise, rate) within the plan is answered from one discretisation for the
    whole plan (:mod:`fedledger.dp.prv_plan`), not a fresh one per call. With
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


def _planned_epsilon(noise: float, rate: float, steps: int, planned_steps: int, delta: float) -> float:
    return planned_prv(noise, rate, planned_steps, delta).epsilon(steps)


def _memo_key(kind: str, args: tuple[Any, ...]) -> str:
    return json.dumps([kind, *args])


def _memoized(kind: str, args: tuple[Any, ...], compute: Callable[..., float]) -> float:
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
def _compute_epsilon_cached(accountant: str, hist: tuple[tuple[float, float, int], ...], delta: float) -> float:
    # the same history is asked for by check_budget, train_local and summary
    return _memoized("epsilon", (accountant, [list(h) for h in hist], delta), _compute_epsilon_uncached)


def _compute_epsilon_uncached(accountant: str, hist: list[list[float]], delta: float) -> float:
    history = [tuple(h) for h in hist]
    if not history:
        return 0.0
    acc = create_accountant(accountant)
    if accountant == "gdp" and len(history) > 1:
        raise ValueError("the gdp accountant needs a constant noise multiplier and sample rate")
    acc.history = history
    return max(0.0, float(acc.get_epsilon(delta=delta)))


def derive_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Opacus's ``get_noise_multiplier``, memoized: the hospital sets up its privacy every round
    with the same study figures."""
    return _memoized("noise", (target_epsilon, delta, sample_rate, steps, accountant), _derive_noise_multiplier)


def _derive_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Smallest noise (to 0.01 in epsilon) reaching ``target_epsilon`` at ``delta`` after ``steps``
    Poisson steps of rate ``sample_rate``."""
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
