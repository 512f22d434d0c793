"""The researcher's own model (``model=own model._target_=package.module.Class``), built and checked.

Built as ``Class(n_features=<d>, **kwargs)`` under the study seed, then held
to what every study model must be before anyone trains it:

* an ``nn.Module`` defined in the module ``_target_`` names (that file's
  hash is the protocol's ``model-source-hash``, fedledger/model_source.py);
* trainable by Opacus's DP-SGD (``ModuleValidator.validate``): when it is
  not, ``fix_batchnorm: true`` lets ``ModuleValidator.fix`` replace BatchNorm
  with GroupNorm (logged), otherwise it is refused with Opacus's message;
* the study task's outputs (fl_client/tasks.py): shape ``(n,)`` with one
  output (binary: a logit per row; regression), ``(n, K)`` with K (multiclass).
  With K > 1 the class also receives ``out_features=K``.

The coordinator builds it at set-up (and checks its size against the CKKS
preset, fedledger/ckks/params.py), and each hospital builds it from its own
installed copy of the module (fl_client/policy.py checks that copy's hash first).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fedledger.model_source import ModelSourceError, split_target
from fl_client.models import IncompatibleModelError, build_model, dp_errors

__all__ = ["OwnModelError", "build_own_model", "build_study_model", "expected_output_shape", "import_model_class"]

log = logging.getLogger(__name__)

SETTING = "model._target_"


class OwnModelError(ValueError):
    """The own model cannot be a study model: not importable, not a module, or the wrong output shape."""


def import_model_class(target: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass ``target`` names, defined in that very module (its hashed source)."""
    module_name, name = split_target(target, SETTING)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OwnModelError(
            f"{SETTING}={target!r}: module {module_name!r} is not importable ({exc}); put the folder that holds it "
            "on PYTHONPATH, e.g. PYTHONPATH=examples/own_model"
        ) from None
    cls = getattr(module, name, None)
    if cls is None:
        raise OwnModelError(f"{SETTING}={target!r}: module {module_name!r} has no attribute {name!r}")
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise OwnModelError(f"{SETTING}={target!r} is {cls!r}, not a torch.nn.Module subclass")
    if cls.__module__ != module_name:
        raise OwnModelError(
            f"{SETTING}={target!r}: {name} is defined in {cls.__module__!r}, not in {module_name!r}; name the module "
            "that defines it (its source file is what the study's source hash pins)"
        )
    return cls


def expected_output_shape(n_rows: int, n_outputs: int = 1) -> tuple[int, ...]:
    """What a study model returns for ``n_rows`` rows: ``(n,)`` with one output, else ``(n, n_outputs)``."""
    return (n_rows,) if n_outputs == 1 else (n_rows, n_outputs)


def _dp_ready(model: nn.Module, target: str, fix_batchnorm: bool, quiet: bool) -> nn.Module:
    """The model Opacus can train: unchanged, fixed on request (BatchNorm -> GroupNorm), or refused."""
    from opacus.validators import ModuleValidator

    errors = dp_errors(model)
    if not errors:
        return model
    message = "; ".join(str(e) for e in errors)
    if not fix_batchnorm:
        hint = ""
        if not dp_errors(ModuleValidator.fix(model)):
            hint = " Set model.fix_batchnorm=true to let Opacus replace BatchNorm with GroupNorm (ModuleValidator.fix)."
        raise IncompatibleModelError(f"{target} cannot be trained with DP-SGD (Opacus): {message}.{hint}")
    fixed = ModuleValidator.fix(model)
    before = dict(model.named_modules())
    replaced = [
        f"{name}: {type(before[name]).__name__} -> {type(m).__name__}"
        for name, m in fixed.named_modules()
        if name in before and type(before[name]) is not type(m)
    ]
    left = dp_errors(fixed)
    if left:
        raise IncompatibleModelError(
            f"{target} cannot be trained with DP-SGD (Opacus) even after ModuleValidator.fix: "
            + "; ".join(str(e) for e in left)
        )
    (log.debug if quiet else log.warning)(
        "model %s: Opacus replaced layers for DP-SGD (model.fix_batchnorm=true): %s", target, "; ".join(replaced)
    )
    return fixed


def _check_output(model: nn.Module, target: str, n_features: int, n_outputs: int) -> None:
    x = torch.zeros(2, n_features)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise OwnModelError(
            f"{target} fails on a batch of shape (2, {n_features}): {type(exc).__name__}: {exc}"
        ) from None
    finally:
        model.train(was_training)
    want = expected_output_shape(2, n_outputs)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = " (end forward with .squeeze(-1))" if got == (2, 1) and n_outputs == 1 else ""
        raise OwnModelError(
            f"{target} returns {got} for a batch of shape (2, {n_features}); the task needs {want}: "
            f"{'one logit per row' if n_outputs == 1 else f'{n_outputs} outputs per row'}{hint}"
        )


def build_own_model(
    target: str,
    kwargs: Mapping[str, Any],
    n_features: int,
    seed: int = 0,
    fix_batchnorm: bool = False,
    n_outputs: int = 1,
    quiet: bool = False,
) -> nn.Module:
    """``Class(n_features=n_features, **kwargs)`` (plus ``out_features=n_outputs`` when it is not 1), initialised
    from ``seed``, checked (module docstring).

    ``quiet``: the layer fix is logged at DEBUG (a hospital builds the model every round).
    """
    cls = import_model_class(target)
    study_args: dict[str, int] = {"n_features": n_features}
    if n_outputs != 1:
        study_args["out_features"] = n_outputs
    for key in set(study_args) & set(kwargs):
        raise OwnModelError(f"model.kwargs.{key} is set by the study (its data and task): drop it")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = cls(**study_args, **dict(kwargs))
        except TypeError as exc:
            given = ", ".join(f"{k}={v}" for k, v in study_args.items())
            raise OwnModelError(
                f"{target}({given}, **{dict(kwargs)}) failed: {exc}; its __init__ must take "
                f"{' and '.join(study_args)} and the keyword arguments of model.kwargs"
            ) from None
    model = _dp_ready(model.float(), target, fix_batchnorm, quiet)
    _check_output(model, target, n_features, n_outputs)
    return model


def build_study_model(
    model_cfg: Mapping[str, Any], n_features: int, seed: int, quiet: bool = False, n_outputs: int = 1
) -> nn.Module:
    """The study's model from its ``model`` config: a built-in by name, or ``model=own``'s class;
    ``n_outputs`` is the study task's output count (fl_client/tasks.py)."""
    if model_cfg.get("name") == "own":
        target = model_cfg.get("_target_")
        if not target:
            raise ModelSourceError(f"model=own needs {SETTING}=package.module.Class")
        return build_own_model(
            str(target),
            model_cfg.get("kwargs") or {},
            n_features,
            seed,
            bool(model_cfg.get("fix_batchnorm", False)),
            n_outputs,
            quiet,
        )
    return build_model(str(model_cfg["name"]), n_features, int(model_cfg.get("hidden", 0)), seed, n_outputs)
