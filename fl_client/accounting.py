"""A hospital's privacy account over one study: what it spends, its budget, its saved state.

The noise multiplier is fixed once (given, or derived from a target
(epsilon, delta) over *all* planned rounds x local epochs), by
:func:`fedledger.dp.plan.dp_plan`, the public function the auditor also uses. The Opacus
accountant's history is carried across rounds (persist it with
:meth:`PrivacyAccount.state_dict` / :meth:`PrivacyAccount.save_state`), and a
round whose projected epsilon would pass the hospital's budget is refused.

Sampling: each step is a Poisson sample of the hospital's records with rate
``q = batch_size / n_records``; an epoch is ``max(1, n_records // batch_size)``
steps (Opacus's ``int(1 / q)``). The accountant is stepped with exactly this
``q``. See docs/PRIVACY.md for the guarantee's scope.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from fedledger.config import PrivacyConfig
from fedledger.dp.composition import QueryCharge, composed_epsilon
from fedledger.dp.epsilon import History, compute_epsilon, create_accountant, history_plus
from fedledger.dp.plan import default_delta, dp_plan
from fedledger.files import atomic_write

__all__ = ["STATE_VERSION", "BudgetExceededError", "PrivacyAccount", "default_delta"]

log = logging.getLogger(__name__)

STATE_VERSION = 1


class BudgetExceededError(RuntimeError):
    """The next round would spend more privacy than the hospital's budget allows."""

    def __init__(self, message: str, *, current: float, projected: float, budget: float, next_round: int | None):
        super().__init__(message)
        self.current = current
        self.projected = projected
        self.budget = budget
        self.next_round = next_round


class PrivacyAccount:
    """One hospital's DP-SGD figures and spend over a whole study (see module docstring)."""

    def __init__(
        self,
        config: PrivacyConfig | Mapping[str, Any],
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
        if budget is None:
            budget = cfg.budget
        if budget is not None and not budget > 0:
            raise ValueError(f"privacy budget must be > 0 (or None for no budget), got {budget}")
        # the public function of the protocol and n (fedledger.dp.plan): the auditor recomputes the same figures
        self.plan = dp_plan(cfg, n_records, batch_size, planned_rounds, local_epochs)
        self.config = cfg
        self.n_records = self.plan.n_records
        self.batch_size = self.plan.batch_size
        self.planned_rounds = self.plan.planned_rounds
        self.local_epochs = self.plan.local_epochs
        self.budget = None if budget is None else float(budget)
        self.sample_rate = self.plan.sample_rate
        self.steps_per_epoch = self.plan.steps_per_epoch
        self.planned_steps = self.plan.planned_steps
        self.delta = self.plan.delta
        self.max_grad_norm = float(cfg.max_grad_norm)
        self.accountant_name = cfg.accountant
        self.noise_multiplier = self.plan.noise_multiplier
        if cfg.noise_multiplier is None:
            log.info(
                "derived noise multiplier %.4f for target epsilon %g, delta %g over %d steps (q=%.4f, %s)",
                self.noise_multiplier,
                cfg.target_epsilon,
                self.delta,
                self.planned_steps,
                self.sample_rate,
                self.accountant_name,
            )
        self._accountant = create_accountant(self.accountant_name)
        self.queries: list[QueryCharge] = []  # statistics queries charged to the same budget
        # the study this account spends for ("0x..."): saved with the state, and a saved state of
        # another study is refused (one account per hospital and study; None: not bound)
        self.study_id: str | None = None

    # ------------------------------------------------------------------ spend
    @property
    def history(self) -> History:
        return [tuple(h) for h in self._accountant.history]

    @property
    def steps(self) -> int:
        """DP-SGD steps accounted so far."""
        return sum(int(h[2]) for h in self._accountant.history)

    def charge(self, steps: int) -> None:
        """Account ``steps`` DP-SGD steps of this plan run outside a round's training (personalisation)."""
        self._accountant.history = history_plus(self.history, self.noise_multiplier, self.sample_rate, int(steps))

    def steps_per_round(self, local_epochs: int | None = None) -> int:
        return (self.local_epochs if local_epochs is None else int(local_epochs)) * self.steps_per_epoch

    def epsilon(self) -> float:
        """Cumulative epsilon (at ``self.delta``) over all steps taken so far."""
        return compute_epsilon(
            self.accountant_name, self._accountant.history, self.delta, self.planned_steps, self.steps_per_round()
        )

    def projected_epsilon(self, extra_steps: int) -> float:
        """Epsilon after ``extra_steps`` more steps; computed on a copy, nothing is mutated."""
        hist = history_plus(self._accountant.history, self.noise_multiplier, self.sample_rate, int(extra_steps))
        return compute_epsilon(self.accountant_name, hist, self.delta, self.planned_steps, self.steps_per_round())

    def total_epsilon(self, extra_steps: int = 0, extra_queries: tuple[QueryCharge, ...] = ()) -> float:
        """Epsilon of training and statistics queries composed (fedledger.dp.composition), after the extras."""
        if not self.queries and not extra_queries:
            return self.projected_epsilon(extra_steps) if extra_steps else self.epsilon()
        hist = history_plus(self._accountant.history, self.noise_multiplier, self.sample_rate, int(extra_steps))
        charges = [*self.queries, *extra_queries]
        return composed_epsilon(
            self.accountant_name, hist, self.delta, charges, self.planned_steps, self.steps_per_round()
        )

    def charge_query(self, charge: QueryCharge) -> tuple[float, float]:
        """Charge a statistics query; return (the epsilon it adds, the composed total after it).

        Refuses (:class:`BudgetExceededError`) a query that would take the total past the budget.
        """
        before = self.total_epsilon()
        after = self.total_epsilon(extra_queries=(charge,))
        if self.budget is not None and after > self.budget:
            raise BudgetExceededError(
                f"privacy budget would be exceeded: this hospital has spent epsilon={before:.4f} "
                f"(training and queries, delta={self.delta:g}); query {charge.query_hash[:18]} would bring it "
                f"to epsilon={after:.4f}, above the hospital's budget of {self.budget:g}. Refusing to answer.",
                current=before,
                projected=after,
                budget=self.budget,
                next_round=None,
            )
        self.queries.append(charge)
        return after - before, after

    def check_budget(self, next_round: int | None = None, local_epochs: int | None = None) -> None:
        """Raise :class:`BudgetExceededError` if the next round would take epsilon past the budget.

        The budget is shared with statistics queries: their charges count (``total_epsilon``).
        """
        if self.budget is None:
            return
        current = self.total_epsilon()
        projected = self.total_epsilon(self.steps_per_round(local_epochs))
        if projected > self.budget:
            where = f"round {next_round}" if next_round is not None else "the next round"
            queries = f", {len(self.queries)} statistics queries included" if self.queries else ""
            raise BudgetExceededError(
                f"privacy budget would be exceeded: this hospital has spent epsilon={current:.4f}{queries} "
                f"(delta={self.delta:g}); training {where} would bring it to epsilon={projected:.4f}, "
                f"above the hospital's budget of {self.budget:g}. Refusing to train.",
                current=current,
                projected=projected,
                budget=self.budget,
                next_round=next_round,
            )

    def summary(self) -> dict[str, Any]:
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
    def state_dict(self) -> dict[str, Any]:
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
            "queries": [[q.query_hash, q.mechanism, q.epsilon, q.noise_multiplier] for q in self.queries],
            **({"study_id": self.study_id} if self.study_id is not None else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the accountant history; refuse state of a different mechanism or another study."""
        if not isinstance(state, Mapping) or not state:
            raise ValueError("privacy state is empty or not a mapping")
        theirs_study = state.get("study_id")
        if (
            theirs_study is not None
            and self.study_id is not None
            and str(theirs_study).lower() != self.study_id.lower()
        ):
            raise ValueError(
                f"privacy state belongs to study {theirs_study}, not to this account's study {self.study_id}: "
                "a study's spend (training and queries) cannot be loaded into another study's account"
            )
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
        if self.study_id is None and theirs_study is not None:
            self.study_id = str(theirs_study)
        self.queries = [
            QueryCharge(str(h), str(m), float(e), None if z is None else float(z))
            for h, m, e, z in state.get("queries", [])
        ]

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`state_dict` as JSON atomically (tmp file + fsync + rename), owner-only."""
        atomic_write(path, json.dumps(self.state_dict(), indent=2, sort_keys=True).encode("utf-8"), mode=0o600)

    def load_state(self, path: str | os.PathLike[str]) -> bool:
        """Load state saved by :meth:`save_state`; returns False (fresh start) if the file does not exist."""
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as fh:
            self.load_state_dict(json.load(fh))
        return True
