"""The study protocol: every round-task field that affects privacy or the model, hashed.

Its hash is what a study registers on chain as ``configHash`` (config hash
v4, docs/HASHES.md section 3a). A hospital recomputes it from each task it
receives and refuses a task whose hash is not the registered one, so the
aggregator cannot change the noise, the clipping norm, the model or the
training mid-study. The per-round fields (round number, the hash of the model
carried) and the chain's addressing (ledger, chain id, contract: bound by the
commitment's EIP-712 domain) are not part of it.

Public format: the field list, its order and the byte layout are pinned by a
fixed vector in tests/test_protocol_hash.py; changing them is a new version.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fedledger.config import PrivacyConfig
from fedledger.hashing import as_bytes, sha256
from fedledger.model_source import ModelSourceError, canonical_kwargs
from fedledger.round_task import RoundMessageError, RoundTask

PROTOCOL_DOMAIN = b"FEDLEDGER-PROTOCOL-v4"

# value tags of the byte layout
_NONE, _BOOL, _INT, _FLOAT, _TEXT, _BYTES = range(6)

_PRIVACY_DEFAULTS = PrivacyConfig()


def _encode(name: str, kind: type, value: Any) -> bytes:
    """``u8 tag || value`` for one field, refusing a value of another type."""
    if value is None:
        return bytes([_NONE])
    if kind is bool and isinstance(value, bool):
        return bytes([_BOOL, int(value)])
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return bytes([_INT]) + struct.pack("<q", value)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return bytes([_FLOAT]) + struct.pack("<d", float(value))
    if kind is str and isinstance(value, str):
        raw = value.encode("utf-8")
        return bytes([_TEXT]) + struct.pack("<H", len(raw)) + raw
    if kind is bytes and isinstance(value, str):
        try:
            raw = as_bytes(value)
        except ValueError:
            raise RoundMessageError(f"protocol field {name!r} must be hex, got {value!r}") from None
        return bytes([_BYTES]) + struct.pack("<H", len(raw)) + raw
    raise RoundMessageError(f"protocol field {name!r} must be {kind.__name__}, got {value!r}")


def _task(attr: str) -> Callable[[RoundTask], Any]:
    return lambda task: getattr(task, attr)


def _privacy(key: str) -> Callable[[RoundTask], Any]:
    """The value the hospital's accountant uses: the task's, else the schema default (unknown keys ignored)."""
    return lambda task: task.privacy.get(key, getattr(_PRIVACY_DEFAULTS, key))


def _own(attr: str) -> Callable[[RoundTask], Any]:
    """A field of ``model=own`` (None for a built-in model, so a default study's fields keep their values)."""
    return lambda task: getattr(task, attr) if task.model_target else None


def _own_kwargs(task: RoundTask) -> str | None:
    if not task.model_target:
        return None
    try:
        return canonical_kwargs(task.model_kwargs)
    except ModelSourceError as exc:
        raise RoundMessageError(f"protocol field 'model-kwargs': {exc}") from None


#: (name in the layout, type, reader), in layout order (docs/HASHES.md lists the same).
PROTOCOL_FIELDS: tuple[tuple[str, type, Callable[[RoundTask], Any]], ...] = (
    ("study-id", bytes, _task("study_id")),
    ("model", str, _task("model")),
    ("hidden", int, _task("hidden")),
    ("seed", int, _task("seed")),
    ("local-epochs", int, _task("local_epochs")),
    ("batch-size", int, _task("batch_size")),
    ("lr", float, _task("lr")),
    ("momentum", float, _task("momentum")),
    ("weight-decay", float, _task("weight_decay")),
    ("num-rounds", int, _task("num_rounds")),
    ("strategy", str, _task("strategy")),
    ("proximal-mu", float, _task("proximal_mu")),
    ("on-bad-aggregate", str, _task("on_bad_aggregate")),
    ("release-quorum", int, _task("release_quorum")),
    ("encrypted", bool, _task("encrypted")),
    ("context-fingerprint", bytes, _task("context_fingerprint")),
    ("privacy.enabled", bool, _privacy("enabled")),
    ("privacy.noise_multiplier", float, _privacy("noise_multiplier")),
    ("privacy.target_epsilon", float, _privacy("target_epsilon")),
    ("privacy.delta", float, _privacy("delta")),
    ("privacy.max_grad_norm", float, _privacy("max_grad_norm")),
    ("privacy.accountant", str, _privacy("accountant")),
    ("privacy.grad_sample_mode", str, _privacy("grad_sample_mode")),
    ("privacy.secure_mode", bool, _privacy("secure_mode")),
    ("privacy.budget", float, _privacy("budget")),
    ("privacy.noise_source", str, _privacy("noise_source")),
    ("task", str, _task("task")),
    ("num-outputs", int, _task("num_outputs")),
    ("model-target", str, _own("model_target")),
    ("model-kwargs", str, _own_kwargs),
    ("model-source-hash", bytes, _own("model_source_hash")),
    ("model-fix-batchnorm", bool, _own("model_fix_batchnorm")),
    ("server-lr", float, _task("server_lr")),
    ("server-momentum", float, _task("server_momentum")),
    ("server-beta1", float, _task("server_beta1")),
    ("server-beta2", float, _task("server_beta2")),
    ("server-tau", float, _task("server_tau")),
    ("personalisation-epochs", int, _task("personalisation_epochs")),
    ("task-options", str, _task("task_options")),
    ("privacy.stats_per_site", bool, _privacy("stats_per_site")),
)


def protocol_bytes(task: RoundTask) -> bytes:
    """Canonical bytes of the task's protocol fields (docs/HASHES.md, config hash v4)."""
    out = [PROTOCOL_DOMAIN, struct.pack("<H", len(PROTOCOL_FIELDS))]
    for name, kind, read in PROTOCOL_FIELDS:
        out.append(bytes([len(name)]) + name.encode("ascii") + _encode(name, kind, read(task)))
    return b"".join(out)


def protocol_hash(task: RoundTask) -> bytes:
    """SHA-256 of :func:`protocol_bytes`: the study's registered ``configHash``.

    Raises :class:`RoundMessageError` when a protocol field holds a value of the wrong type.
    """
    return sha256(protocol_bytes(task))
