"""A researcher's own model, named by ``_target_``: where its source is, and the hash that pins it.

The study registers the hash of the module file that defines the model
class (``model-source-hash`` in the protocol, docs/HASHES.md section 3b). A
hospital never runs code it receives: it imports the module from its *own*
installation and refuses the task when its copy hashes to something else
(fl_client/policy.py, ``policy-model-source-mismatch``). The hash is the
plain SHA-256 of the file's bytes, so a hospital can check it with
``sha256sum`` before it allows it (policy ``allowed-model-sources``).

Locating the file does not execute the module (``importlib.util.find_spec``
imports only its parent packages), so a mismatched copy is refused before any
of its code runs.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from fedledger.hashing import sha256, to_hex

_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


class ModelSourceError(ValueError):
    """A ``_target_`` that names no importable Python source file, or kwargs that cannot be pinned."""


def split_target(target: str, setting: str = "model._target_") -> tuple[str, str]:
    """``("package.module", "Class")`` of a dotted ``_target_``; anything else is refused, naming ``setting``."""
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise ModelSourceError(
            f"{setting} must be a dotted path package.module.Name (e.g. mynet.SmallNet), got {target!r}"
        )
    module, _, name = target.rpartition(".")
    return module, name


def source_file(target: str, setting: str = "model._target_") -> Path:
    """The ``.py`` file of the module ``target`` names, found without executing that module."""
    module, _ = split_target(target, setting)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package that is missing or fails to import
        raise ModelSourceError(f"{setting}={target!r}: module {module!r} is not importable here: {exc}") from None
    if spec is None:
        raise ModelSourceError(
            f"{setting}={target!r}: module {module!r} is not importable here; put the folder that holds it "
            "on PYTHONPATH (or install it) on this machine"
        )
    origin = spec.origin
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        raise ModelSourceError(f"{setting}={target!r}: module {module!r} has no Python source file ({origin})")
    return Path(origin)


def source_hash(target: str, setting: str = "model._target_") -> str:
    """``0x`` + SHA-256 of the bytes of ``target``'s module file (docs/HASHES.md section 3b)."""
    return to_hex(sha256(source_file(target, setting).read_bytes()))


def canonical_kwargs(kwargs: Any, setting: str = "model.kwargs") -> str:
    """The keyword arguments as canonical JSON (sorted keys, no spaces): the protocol's ``model-kwargs`` text."""
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ModelSourceError(f"{setting} must be a mapping of argument names to values, got {kwargs!r}")
    try:
        return json.dumps(kwargs, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelSourceError(f"{setting} must hold JSON values (numbers, text, lists, mappings): {exc}") from None
