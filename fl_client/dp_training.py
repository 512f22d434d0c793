"""The DP-SGD engine of one hospital: its privacy account wired into Opacus for each round.

:class:`HospitalPrivacy` is the hospital's :class:`~fl_client.accounting.PrivacyAccount`
plus what makes a round private: the grad-sample model, the noisy clipped
optimizer stepping the account's accountant, and Poisson sampling of the
records at the account's exact rate, noise and sampling drawn from the
configured source (``noise_source``: a seeded generator or os.urandom).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedledger.config import PrivacyConfig
from fl_client.accounting import PrivacyAccount
from fl_client.models import require_dp_compatible, unwrap

__all__ = ["HospitalPrivacy", "PoissonTensorLoader", "make_hospital_privacy"]


class PoissonTensorLoader:
    """Poisson-sampled batches straight from in-memory tensors.

    Each of ``steps`` batches independently includes every row with
    probability ``sample_rate`` (exactly Opacus's UniformWithReplacementSampler:
    ``torch.rand(n) < q``), so the accounting assumptions hold; batches may be
    empty. Avoids the per-row Dataset/collate cost of a DataLoader. ``uniform``
    (n -> n uniforms on [0, 1)) replaces ``torch.rand`` with ``generator``.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        sample_rate: float,
        steps: int,
        generator: torch.Generator | None = None,
        uniform: Callable[[int], torch.Tensor] | None = None,
    ):
        if not tensors:
            raise ValueError("need at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError("all tensors must have the same number of rows")
        self.tensors = tuple(tensors)
        self.sample_rate = float(sample_rate)
        self.steps = int(steps)
        self.generator = generator
        self.uniform = uniform
        self.num_samples = n

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for _ in range(self.steps):
            if self.uniform is None:
                mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            else:
                mask = self.uniform(self.num_samples) < self.sample_rate
            idx = mask.nonzero(as_tuple=True)[0]
            yield tuple(t.index_select(0, idx) for t in self.tensors)


class HospitalPrivacy(PrivacyAccount):
    """DP-SGD for one hospital over a whole study: its account, and Opacus for each round."""

    _secure_rng: torch.Generator | None = None

    @property
    def noise_source(self) -> str:
        """What draws the noise and the Poisson samples: ``os-entropy``, ``torchcsprng`` or ``seeded``."""
        if self.config.noise_source == "os-entropy":
            return "os-entropy"
        return "torchcsprng" if self.config.secure_mode else "seeded"

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "noise_source": self.noise_source}

    def make_generator(self, seed: int | None) -> torch.Generator | None:
        """RNG for Poisson sampling and noise: none with os-entropy, torchcsprng in secure_mode, else seeded."""
        if self.noise_source == "os-entropy":
            return None  # every draw comes from os.urandom (fl_client.os_entropy)
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

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data_loader: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[nn.Module, Any, Any]:
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

        from fl_client import os_entropy  # imports opacus

        cfg = self.config
        entropy = self.noise_source == "os-entropy"
        if unwrap(model) is not model:
            raise ValueError("attach() needs a plain nn.Module, not an already wrapped one (call detach() first)")
        require_dp_compatible(model)
        model_params = set(model.parameters())
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p not in model_params:
                    raise ValueError("optimizer parameters are not the model's parameters")
        if generator is None:
            generator = self.make_generator(None)
        elif entropy or cfg.secure_mode:
            raise ValueError(f"a seeded generator is not allowed with {self.noise_source} noise")

        dp_model = wrap_model(model, cfg.grad_sample_mode, batch_first=True, loss_reduction="mean")
        dp_model.forbid_grad_accumulation()
        optim_cls = get_optimizer_class(clipping="flat", distributed=False, grad_sample_mode=cfg.grad_sample_mode)
        if entropy:
            optim_cls = os_entropy.noise_optimizer(optim_cls)
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
            uniform = os_entropy.uniforms if entropy else None
            loader: Any = PoissonTensorLoader(tensors, self.sample_rate, self.steps_per_epoch, generator, uniform)
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
            if entropy:
                loader = os_entropy.poisson_loader(loader)
        return dp_model, dp_optimizer, loader

    @staticmethod
    def detach(dp_model: nn.Module) -> nn.Module:
        """Remove Opacus hooks from a model returned by :meth:`attach`; returns the plain module."""
        if hasattr(dp_model, "_close"):
            dp_model._close()
        return unwrap(dp_model)


def make_hospital_privacy(
    config: PrivacyConfig | Mapping[str, Any], *plan: int, budget: float | None = None
) -> HospitalPrivacy | None:
    """``HospitalPrivacy(config, *plan, budget=budget)`` when ``config.enabled``, else None.

    ``plan`` is ``n_records, batch_size, planned_rounds[, local_epochs]``. With
    DP off, a hospital that set a budget refuses to train at all.
    """
    cfg = PrivacyConfig.from_any(config)
    if cfg.enabled:
        return HospitalPrivacy(cfg, *plan, budget=budget)
    cfg.validate()
    if budget is not None:
        raise ValueError(
            f"the hospital set a privacy budget ({budget}) but privacy.enabled is false: refusing to train without DP"
        )
    return None
