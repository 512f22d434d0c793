"""PRV accounting for a planned number of DP-SGD steps, discretised once.

Opacus's ``PRVAccountant.get_epsilon`` rebuilds everything on every call: an
RDP bound for the safe truncation domain, then the discretisation of the
privacy loss random variable, then the FFT composition. A hospital asks for
epsilon every round (the budget check projects the next round), so that cost
was paid every round (docs/PRIVACY.md has the profile).

Gopi et al. (and Microsoft's reference ``prv_accountant.Accountant``) fix the
*maximum* number of compositions up front: the truncation domain and the mesh
chosen for ``max_steps`` compositions keep their error bounds for any number
of compositions up to ``max_steps`` (the domain is at least as wide and the
mesh at least as fine as each smaller count needs). So one discretisation
serves every round of the study and each round costs one FFT power. Results
are upper bounds within ``eps_error`` of the true epsilon, like Opacus's
(tests/test_prv_plan.py compares the two).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.fft import irfft, rfft

__all__ = ["PlannedPRV", "planned_prv"]


class PlannedPRV:
    """Epsilon after ``steps <= max_steps`` Poisson-subsampled Gaussian steps of one (noise, rate)."""

    def __init__(
        self,
        noise_multiplier: float,
        sample_rate: float,
        max_steps: int,
        delta: float,
        eps_error: float = 0.01,
        delta_error: float | None = None,
    ) -> None:
        from opacus.accountants.analysis.prv import (
            Domain,
            PoissonSubsampledGaussianPRV,
            TruncatedPrivacyRandomVariable,
            compute_safe_domain_size,
            discretize,
        )

        if not noise_multiplier > 0 or not 0 < sample_rate <= 1 or max_steps < 1 or not 0 < delta < 1:
            raise ValueError(
                f"need noise > 0, 0 < rate <= 1, max_steps >= 1, 0 < delta < 1; got "
                f"{noise_multiplier}, {sample_rate}, {max_steps}, {delta}"
            )
        self.noise_multiplier, self.sample_rate = float(noise_multiplier), float(sample_rate)
        self.max_steps, self.delta = int(max_steps), float(delta)
        self.eps_error = float(eps_error)
        self.delta_error = float(delta_error) if delta_error is not None else self.delta / 1000  # Opacus's default
        prv = PoissonSubsampledGaussianPRV(self.sample_rate, self.noise_multiplier)
        size = compute_safe_domain_size([prv], [self.max_steps], eps_error=self.eps_error, delta_error=self.delta_error)
        mesh = self.eps_error / np.sqrt(self.max_steps * np.log(12 / self.delta_error) / 2)
        domain = Domain.create_aligned(-size, size, mesh)
        self._dprv = discretize(TruncatedPrivacyRandomVariable(prv, domain.t_min, domain.t_max), domain)
        self._spectrum = rfft(self._dprv.pmf)  # composing n steps is then one power and one inverse FFT

    def epsilon(self, steps: int) -> float:
        """Upper bound on epsilon at ``self.delta`` after ``steps`` steps (0 for none)."""
        from opacus.accountants.analysis.prv import DiscretePRV

        steps = int(steps)
        if steps <= 0:
            return 0.0
        if steps > self.max_steps:
            raise ValueError(f"{steps} steps is more than the {self.max_steps} this accountant was planned for")
        # the n-fold self-convolution of the pmf, re-centred (as Opacus's compose_heterogeneous does for one PRV)
        pmf = irfft(self._spectrum**steps, n=len(self._dprv.pmf))
        shift = steps - 1 + (len(pmf) // 2 if steps % 2 == 0 else 0)
        domain = self._dprv.domain.shift_right(self._dprv.domain.shifts * (steps - 1))
        composed = DiscretePRV(pmf=np.roll(pmf, shift), domain=domain)
        # never negative (a large delta can give epsilon < 0; epsilon 0 holds there too)
        return max(0.0, float(composed.compute_epsilon(self.delta, self.delta_error, self.eps_error)[2]))


@functools.lru_cache(maxsize=16)
def planned_prv(noise_multiplier: float, sample_rate: float, max_steps: int, delta: float) -> PlannedPRV:
    """One discretisation per (noise, rate, plan, delta) per process: a hospital reuses it every round."""
    return PlannedPRV(noise_multiplier, sample_rate, max_steps, delta)
