"""A hospital's DP-SGD plan from the registered protocol and its record count, and the epsilon it commits.

Everything a hospital's accountant uses is public: the protocol's privacy
fields (noise multiplier or target epsilon, delta or its default, clipping,
accountant), its batch size, local epochs and planned rounds, and the
hospital's record count ``n``, which it commits each round. So the epsilon a
commitment must report is a public function of the protocol and the committed
sample counts; :func:`committed_epsilons` is that function, and the
hospital's own account (``fl_client.accounting``) is built on the same
:func:`dp_plan`, so both compute the same figure with the same code.

Sampling: each step is a Poisson sample with rate ``q = min(1, batch_size / n)``;
an epoch is ``max(1, n // batch_size)`` steps (Opacus's ``int(1 / q)``); a round
is ``local_epochs`` epochs. A noise multiplier derived from a target epsilon
depends on ``q`` and the planned steps, hence on ``n``, and so does the
default delta.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from fedledger.config import PrivacyConfig
from fedledger.dp.epsilon import History, compute_epsilon, derive_noise_multiplier, history_plus

__all__ = [
    "DPPlan",
    "DeltaError",
    "check_delta",
    "check_study_delta",
    "committed_epsilons",
    "default_delta",
    "dp_plan",
]


class DeltaError(ValueError):
    """delta outside (0, 1), or not below 1/n: no meaningful (epsilon, delta) guarantee."""


def default_delta(n_records: int) -> float:
    """delta well below 1/n: ``min(1e-5, 1 / (10 n))``."""
    return min(1e-5, 1.0 / (10.0 * n_records))


def check_delta(delta: float, n_records: int) -> float:
    """``delta`` when ``0 < delta < 1/n``; else :class:`DeltaError` saying why.

    At ``delta >= 1/n`` a mechanism that publishes one record outright is
    (0, delta)-DP, so the guarantee says nothing; PRV accounting even returns
    a negative epsilon at large delta (clamped to 0 in :mod:`fedledger.dp.epsilon`).
    """
    if not 0.0 < delta < 1.0:
        raise DeltaError(f"privacy.delta must be in (0, 1), got {delta!r}")
    if delta >= 1.0 / n_records:
        raise DeltaError(
            f"privacy.delta={delta:g} is not below 1/n={1.0 / n_records:g} for {n_records} records: an "
            f"(epsilon, delta) guarantee with delta >= 1/n allows publishing a record outright; set delta "
            f"below 1/n (or leave it unset for min(1e-5, 1/(10 n)))"
        )
    return float(delta)


def check_study_delta(delta: float | None, records: Mapping[str, int]) -> None:
    """A configured delta against every hospital's record count, at set-up: each would refuse round 1 otherwise."""
    if delta is None:
        return
    for hospital, n in records.items():
        try:
            check_delta(float(delta), n)
        except DeltaError as exc:
            raise DeltaError(f"{hospital}: {exc}") from None


@dataclass(frozen=True)
class DPPlan:
    """One hospital's DP-SGD over a study: what its accountant is stepped with."""

    n_records: int
    batch_size: int
    planned_rounds: int
    local_epochs: int
    accountant: str
    delta: float
    noise_multiplier: float

    @property
    def sample_rate(self) -> float:
        return min(1.0, self.batch_size / self.n_records)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.n_records // self.batch_size)

    @property
    def steps_per_round(self) -> int:
        return self.local_epochs * self.steps_per_epoch

    @property
    def planned_steps(self) -> int:
        return self.planned_rounds * self.steps_per_round

    def epsilon(self, history: History) -> float:
        """epsilon of ``history`` at this plan's delta, as the hospital's accountant reports it."""
        return compute_epsilon(self.accountant, history, self.delta, self.planned_steps, self.steps_per_round)


def dp_plan(
    privacy: PrivacyConfig, n_records: int, batch_size: int, planned_rounds: int, local_epochs: int = 1
) -> DPPlan:
    """The plan of a hospital with ``n_records`` under an enabled, valid ``privacy`` config.

    Raises ValueError for counts below 1 and :class:`DeltaError` for a delta not in ``(0, 1/n)``.
    """
    if n_records < 1 or batch_size < 1 or planned_rounds < 1 or local_epochs < 1:
        raise ValueError(
            f"need n_records, batch_size, planned_rounds, local_epochs >= 1; got "
            f"{n_records}, {batch_size}, {planned_rounds}, {local_epochs}"
        )
    delta = check_delta(float(privacy.delta) if privacy.delta is not None else default_delta(n_records), n_records)
    shape = DPPlan(
        int(n_records), int(batch_size), int(planned_rounds), int(local_epochs), privacy.accountant, delta, 0.0
    )
    if privacy.noise_multiplier is not None:
        noise = float(privacy.noise_multiplier)
    else:
        if privacy.target_epsilon is None:
            raise ValueError("privacy: set noise_multiplier or target_epsilon")
        noise = derive_noise_multiplier(
            float(privacy.target_epsilon), delta, shape.sample_rate, shape.planned_steps, privacy.accountant
        )
    return replace(shape, noise_multiplier=noise)


def committed_epsilons(
    privacy: PrivacyConfig, batch_size: int, planned_rounds: int, local_epochs: int, sample_counts: Sequence[int]
) -> list[float]:
    """The cumulative epsilon after each of a hospital's training rounds, in order, given the count it committed.

    A hospital steps its accountant by one round's steps each time it trains,
    so after its k-th commitment the history holds k rounds. With one count
    throughout (an honest hospital's records do not change) this is exactly the
    figure its account reports; a count that changes starts a new (noise, rate)
    entry, and epsilon is taken at that round's delta. Rounds the hospital
    trained in but that were not recorded are not counted: a lower bound.
    """
    history: History = []
    out: list[float] = []
    for n in sample_counts:
        plan = dp_plan(privacy, int(n), batch_size, planned_rounds, local_epochs)
        history = history_plus(history, plan.noise_multiplier, plan.sample_rate, plan.steps_per_round)
        out.append(plan.epsilon(history))
    return out
