"""The aggregation rules a study may name, and each rule's own settings, checked before anything runs.

A study records the rule it names (``results.json``, the round task, the
protocol hash), so a name no code implements, or a setting that belongs to
another rule, is refused here rather than run as FedAvg. The robust rules
(Flower's median, trimmed mean and Krum) read each update's values, so they
are refused with encryption on: the aggregator holds ciphertexts it can only sum.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedledger.config import check_proximal_mu
from fedledger.server_opt import SERVER_OPTIMIZERS, ServerOptSettings, server_opt_settings

FEDAVG, FEDPROX = "fedavg", "fedprox"
FEDMEDIAN, FEDTRIMMEDAVG, KRUM = "fedmedian", "fedtrimmedavg", "krum"
# the sample-weighted mean: computable on ciphertexts (a server optimizer steps from the mean where it is plaintext)
SUMMING = (FEDAVG, FEDPROX, *SERVER_OPTIMIZERS)
ROBUST = (FEDMEDIAN, FEDTRIMMEDAVG, KRUM)  # need each update in plaintext
STRATEGIES = SUMMING + ROBUST
# StrategyConfig keys that only one rule reads; anywhere else they would be silently ignored
OWN_SETTINGS = {"beta": FEDTRIMMEDAVG, "num_malicious": KRUM, "multi_krum_m": KRUM}


@dataclass(frozen=True)
class StrategyChoice:
    """A study's aggregation rule with the settings it runs with (what the aggregator builds)."""

    name: str
    proximal_mu: float = 0.0
    beta: float | None = None
    num_malicious: int | None = None
    multi_krum_m: int | None = None
    server_opt: ServerOptSettings | None = None  # FedAvgM, FedAdam, FedYogi, FedAdagrad

    @property
    def robust(self) -> bool:
        return self.name in ROBUST


def check_strategy_name(name: object) -> str:
    """``name`` if a rule of that name is implemented; else an error naming the closest one."""
    if name in STRATEGIES:
        return str(name)
    close = difflib.get_close_matches(str(name), STRATEGIES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"strategy.name={name!r} is not implemented{hint}: choose one of {STRATEGIES}")


def check_strategy(strategy: Mapping[str, Any], *, encrypted: bool, num_hospitals: int) -> StrategyChoice:
    """The study's rule and its settings, or a ValueError saying which setting cannot run and why."""
    name = check_strategy_name(strategy.get("name", FEDAVG))
    mu = check_proximal_mu(name, strategy.get("proximal_mu", 0.0))
    opt = server_opt_settings({**strategy, "name": name})
    for key, owner in OWN_SETTINGS.items():
        if strategy.get(key) is not None and name != owner:
            raise ValueError(
                f"strategy.{key}={strategy[key]} is {owner}'s setting, and strategy.name={name!r} "
                f"would ignore it: set strategy={owner}, or drop strategy.{key}"
            )
    if name in ROBUST and encrypted:
        raise ValueError(
            f"strategy.name={name!r} needs each hospital's update in plaintext, and with encryption on the "
            "aggregator sees only ciphertexts, which it can sum but not sort, trim or compare: "
            f"use encryption=off for {name}, or strategy={FEDAVG} with encryption"
        )
    per_round = max(1, round(num_hospitals * float(strategy.get("fraction_train", 1.0))))  # as FedAvg samples
    if name == FEDTRIMMEDAVG:
        return StrategyChoice(name, beta=_trim_beta(strategy.get("beta"), per_round))
    if name == KRUM:
        f, m = _krum_settings(strategy.get("num_malicious"), strategy.get("multi_krum_m"), per_round)
        return StrategyChoice(name, num_malicious=f, multi_krum_m=m)
    return StrategyChoice(name, proximal_mu=mu, server_opt=opt)


def _trim_beta(setting: Any, num_hospitals: int) -> float:
    """Flower's range [0, 0.5), and at least one hospital cut at each end (else it is the plain mean)."""
    if setting is None:
        raise ValueError("strategy.name=fedtrimmedavg needs strategy.beta (e.g. strategy=fedtrimmedavg sets 0.25)")
    beta = float(setting)
    if not 0.0 < beta < 0.5:
        raise ValueError(f"strategy.beta must be in (0, 0.5), got {beta}")
    if int(beta * num_hospitals) < 1:
        raise ValueError(
            f"strategy.beta={beta} cuts int({beta} x {num_hospitals}) = 0 of the {num_hospitals} hospitals a round "
            f"trains at each end, which is the plain mean: use strategy.beta >= {1 / num_hospitals:g}"
        )
    return beta


def _krum_settings(num_malicious: Any, multi_krum_m: Any, num_hospitals: int) -> tuple[int, int]:
    """f malicious hospitals of n, and m updates averaged: 0 <= f, 1 <= m <= n - f."""
    if num_malicious is None or multi_krum_m is None:
        raise ValueError(
            "strategy.name=krum needs strategy.num_malicious and strategy.multi_krum_m "
            "(strategy=krum sets 1 and 1: Krum against one malicious hospital)"
        )
    f, m = int(num_malicious), int(multi_krum_m)
    if not 0 <= f < num_hospitals:
        raise ValueError(f"strategy.num_malicious must be between 0 and {num_hospitals - 1}, got {f}")
    if not 1 <= m <= num_hospitals - f:
        raise ValueError(
            f"strategy.multi_krum_m must be between 1 (Krum) and {num_hospitals - f} "
            f"(the {num_hospitals} hospitals a round trains less {f} malicious), got {m}"
        )
    return f, m
