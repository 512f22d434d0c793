"""Models of the study and their conversion to/from plain numpy arrays.

Every model has ``out_features`` outputs, the study's task's count
(fl_client/tasks.py: binary and regression 1, multiclass K): shape ``(n,)``
with one output (binary: a logit per row), ``(n, K)`` with K. Every model is
Opacus-compatible (only ``nn.Linear`` and activations: no BatchNorm).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "MLP",
    "IncompatibleModelError",
    "LogReg",
    "build_model",
    "dp_errors",
    "get_arrays",
    "make_private_compatible",
    "require_dp_compatible",
    "set_arrays",
    "unwrap",
]

log = logging.getLogger(__name__)

_OPACUS_PREFIX = "_module."


class IncompatibleModelError(ValueError):
    """The model cannot be trained with DP-SGD (Opacus) and cannot be fixed automatically."""


class LogReg(nn.Module):
    """Logistic regression (one linear layer): a logit per row; a linear model of each output with K outputs."""

    def __init__(self, n_features: int, out_features: int = 1):
        super().__init__()
        self.linear = nn.Linear(n_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


class MLP(nn.Module):
    """Small MLP: Linear -> ReLU -> Linear -> ReLU -> Linear (no BatchNorm, Opacus-friendly)."""

    def __init__(self, n_features: int, hidden: int = 32, out_features: int = 1):
        super().__init__()
        self.fc1 = nn.Linear(n_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, out_features)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = self.act(self.fc2(h))
        out = self.out(h)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


_MODELS = {"logreg", "mlp", "hazard"}


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_model(name: Any, n_features: int, hidden: int = 32, seed: int = 0, out_features: int = 1) -> nn.Module:
    """Build ``logreg`` or ``mlp`` for ``n_features`` inputs and ``out_features`` outputs, initialised from ``seed``.

    ``name`` may also be a model config (mapping / Hydra node / dataclass) with
    keys ``name`` and optionally ``hidden`` and ``seed`` (those override the
    keyword defaults). Initialisation does not touch the global torch RNG.
    """
    if not isinstance(name, str):
        cfg = name
        name = _cfg_get(cfg, "name", None)
        hidden = int(_cfg_get(cfg, "hidden", hidden))
        seed = int(_cfg_get(cfg, "seed", seed))
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(_MODELS)}")
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    if out_features < 1:
        raise ValueError(f"out_features must be >= 1, got {out_features}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "hazard":  # survival: a shared linear risk score + one baseline logit per interval
            from fl_client.survival.model import LinearHazard

            model: nn.Module = LinearHazard(n_features, out_features)
        else:
            model = LogReg(n_features, out_features) if name == "logreg" else MLP(n_features, hidden, out_features)
    return model.float()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside an Opacus GradSampleModule (or the model itself)."""
    while hasattr(model, "_module") and isinstance(model._module, nn.Module):
        model = model._module
    return model


def _strip(name: str) -> str:
    while name.startswith(_OPACUS_PREFIX):
        name = name[len(_OPACUS_PREFIX) :]
    return name


def get_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """All state (parameters and buffers) as float32 numpy arrays, names without ``_module.``."""
    return {_strip(k): v.detach().cpu().numpy().astype(np.float32, copy=True) for k, v in model.state_dict().items()}


def set_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Load ``arrays`` (as from :func:`get_arrays`) into ``model`` in place.

    Names and shapes must match exactly; a missing, extra or misshapen array
    raises ``ValueError``.
    """
    target = unwrap(model)
    current = target.state_dict()
    given = {_strip(k): v for k, v in arrays.items()}
    missing = sorted(set(current) - set(given))
    extra = sorted(set(given) - set(current))
    if missing or extra:
        raise ValueError(f"model arrays mismatch: missing {missing}, unexpected {extra}")
    new_state = {}
    for k, ref in current.items():
        arr = np.asarray(given[k])
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"array {k!r} has shape {arr.shape}, model expects {tuple(ref.shape)}")
        new_state[k] = torch.as_tensor(np.array(arr, copy=True)).to(dtype=ref.dtype, device=ref.device)
    target.load_state_dict(new_state, strict=True)


def dp_errors(model: nn.Module) -> list[Exception]:
    """Why Opacus cannot train ``model`` with DP-SGD (empty list: it can).

    Combines Opacus's ModuleValidator (BatchNorm, LSTM, ... ) and the
    GradSampleModule check (trainable layers holding buffers).
    """
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    return list(ModuleValidator.validate(model, strict=False)) + list(GradSampleModule.validate(model, strict=False))


def make_private_compatible(model: nn.Module) -> nn.Module:
    """Return a model Opacus can train with DP-SGD.

    * already compatible: returned unchanged;
    * fixable layers (e.g. BatchNorm -> GroupNorm): a fixed *copy* is returned
      and a warning is logged (the caller must use the returned model);
    * anything else raises :class:`IncompatibleModelError`. Never falls back
      to non-private training.
    """
    from opacus.validators import ModuleValidator

    errors = dp_errors(model)
    if not errors:
        return model
    try:
        fixed = ModuleValidator.fix(model)
    except Exception as exc:
        raise IncompatibleModelError(
            f"model is not DP-SGD compatible and could not be fixed: {exc}; errors: {errors}"
        ) from exc
    _refuse_if_incompatible(fixed, "Refusing to train it (training without DP is never a fallback).")
    log.warning(
        "model was not DP-SGD compatible; replaced layers to fix it: %s. "
        "Use the returned model (its parameter names/shapes may differ).",
        "; ".join(str(e) for e in errors),
    )
    return fixed


def require_dp_compatible(model: nn.Module) -> None:
    """Refuse a model Opacus cannot train as it is: it is never trained without DP instead."""
    _refuse_if_incompatible(model, "Call fl_client.models.make_private_compatible(model) when building the model.")


def _refuse_if_incompatible(model: nn.Module, advice: str) -> None:
    errors = dp_errors(model)
    if errors:
        raise IncompatibleModelError(
            "model is not DP-SGD compatible (Opacus): " + "; ".join(str(e) for e in errors) + ". " + advice
        )
