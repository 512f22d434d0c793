"""DP noise and Poisson sampling drawn from the operating system's CSPRNG (``os.urandom``).

The ``os-entropy`` noise source of a deployed hospital. Every uniform comes
from fresh ``os.urandom`` bytes, so no generator state exists that an
attacker could recover from past outputs and replay forward; nothing is
seeded, and ``torchcsprng`` is not needed. The Gaussian noise is Opacus's
``secure_mode`` construction (the sum of four normal draws, halved, against
floating-point attacks) over Box–Muller normals in float64. docs/PRIVACY.md,
"Where the noise comes from", says what this does and does not guarantee.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch.utils.data import DataLoader

__all__ = [
    "OsEntropyDPOptimizer",
    "gaussian_like",
    "noise_optimizer",
    "poisson_loader",
    "standard_normals",
    "uniforms",
]

_MANTISSA = 53  # bits of a float64 mantissa: each uniform is k / 2**53, k from 8 fresh random bytes
_SUMMANDS = 4  # Opacus secure_mode: sum of 2n normals with n = 2, divided by sqrt(2n)


def uniforms(n: int) -> torch.Tensor:
    """``n`` float64 uniforms on [0, 1), multiples of 2**-53, from os.urandom."""
    words = np.frombuffer(os.urandom(8 * n), dtype="<u8") >> np.uint64(64 - _MANTISSA)
    return torch.from_numpy(words.astype(np.float64) * 2.0**-_MANTISSA)


def standard_normals(n: int) -> torch.Tensor:
    """``n`` float64 standard normals by Box–Muller over :func:`uniforms` (both halves of each pair used)."""
    pairs = (n + 1) // 2
    u = uniforms(2 * pairs)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[:pairs]))  # 1 - u in (0, 1]: the logarithm is finite
    angle = (2.0 * math.pi) * u[pairs:]
    return torch.cat((radius * torch.cos(angle), radius * torch.sin(angle)))[:n]


def gaussian_like(reference: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian noise of standard deviation ``std`` in ``reference``'s shape, dtype and device."""
    if std == 0:
        return torch.zeros_like(reference)
    n = reference.numel()
    z = standard_normals(_SUMMANDS * n).reshape(_SUMMANDS, n).sum(dim=0) / math.sqrt(_SUMMANDS)
    return (z * std).reshape(reference.shape).to(dtype=reference.dtype, device=reference.device)


class OsEntropyDPOptimizer(DPOptimizer):
    """Opacus's DPOptimizer, its noise step drawing from :func:`gaussian_like` instead of a torch generator."""

    def add_noise(self) -> None:
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            p.grad = (p.summed_grad + gaussian_like(p.summed_grad, std)).view_as(p)
            _mark_as_processed(p.summed_grad)


def noise_optimizer(optimizer_class: type) -> type[OsEntropyDPOptimizer]:
    """The os-entropy counterpart of the optimizer class Opacus chose; only plain flat clipping has one."""
    if optimizer_class is not DPOptimizer:
        raise ValueError(f"os-entropy noise is built for Opacus's DPOptimizer, not {optimizer_class.__name__}")
    return OsEntropyDPOptimizer


class _OsEntropyPoissonSampler(UniformWithReplacementSampler):
    """Opacus's Poisson batch sampler with its inclusion draws from :func:`uniforms`."""

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield (uniforms(self.num_samples) < self.sample_rate).nonzero(as_tuple=False).reshape(-1).tolist()


def poisson_loader(loader: DPDataLoader) -> DataLoader[Any]:
    """``loader``'s data, collation and number of batches, its Poisson sampling drawn from os.urandom."""
    sampler = _OsEntropyPoissonSampler(
        num_samples=len(loader.dataset),
        sample_rate=loader.sample_rate,
        steps=len(loader.batch_sampler),
    )
    return DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn)
