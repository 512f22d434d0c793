"""The hospital's own policy: what it will train or answer for, whatever the aggregator's round task says.

The policy belongs to the hospital (its node config, or a YAML/JSON file
named by its ``policy-file`` key) and is checked by :func:`check_task` before
the hospital does anything with a task. A task that breaks a rule is refused
with a named code (``policy-*``) that travels in the existing refusal reply.
With no policy keys set the hospital behaves as before, except that one that
set a ``privacy-budget`` requires DP (the promise that budget makes).
See docs/HOSPITAL_GUIDE.md, "Your policy".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedledger.round_task import RoundTask
from fl_client.settings import HospitalSettings

POLICY_FILE_KEY = "policy-file"


class PolicyError(ValueError):
    """The hospital's policy is malformed; the message names the key."""


class PolicyRefusal(Exception):
    """A round task breaks the hospital's policy; ``code`` names the rule."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class HospitalPolicy:
    """What this hospital accepts; None (or empty) means the rule is not set."""

    require_dp: bool = False
    max_epsilon: float | None = None
    max_delta: float | None = None
    min_noise_multiplier: float | None = None
    max_grad_norm: float | None = None  # the largest clipping norm accepted
    require_encryption: bool = False
    key_fingerprint: str | None = None  # hex fingerprint of the hospital's own CKKS key
    require_chain: bool = False
    allowed_contract: str | None = None
    allowed_chain_id: int | None = None
    allowed_study_ids: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    allowed_model_sources: tuple[str, ...] = ()  # model=own: sha256 hex of the module files this hospital allows
    max_params: int | None = None
    min_records: int | None = None

    def epsilon_cap(self, budget: float | None) -> float | None:
        """The ε the accountant may reach: the hospital's budget or ``max_epsilon``, whichever is lower."""
        caps = [c for c in (budget, self.max_epsilon) if c is not None]
        return min(caps) if caps else None


@dataclass(frozen=True)
class AnswerPlan:
    """What answering a task would take at this hospital (its own figures, not the task's claims)."""

    n_records: int  # training records the answer is computed from
    n_params: int | None  # parameters of the model the task asks for (None: a model it cannot build)
    noise_multiplier: float | None = None  # the accountant's (given or derived from a target ε); None without DP
    delta: float | None = None  # the accountant's δ (given, or the hospital's default)
    model_source_hash: str | None = None  # model=own: this hospital's installed copy's hash (None: not installed)


# -- reading the policy ---------------------------------------------------------------


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PolicyError(f"policy key {key!r} must be true or false, got {value!r}")


def _number(key: str, value: object) -> float:
    if not isinstance(value, bool):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            pass
        else:
            if number > 0 and number != float("inf"):
                return number
    raise PolicyError(f"policy key {key!r} must be a positive number, got {value!r}")


def _fraction(key: str, value: object) -> float:
    number = _number(key, value)
    if number >= 1:
        raise PolicyError(f"policy key {key!r} must be in (0, 1), got {value!r}")
    return number


def _count(key: str, value: object) -> int:
    number = _number(key, value)
    if not number.is_integer():
        raise PolicyError(f"policy key {key!r} must be a positive integer, got {value!r}")
    return int(number)


def _hex(key: str, value: object, n_bytes: int) -> str:
    if not isinstance(value, str) or not re.fullmatch(rf"0x[0-9a-fA-F]{{{2 * n_bytes}}}", value.strip()):
        raise PolicyError(f"policy key {key!r} must be 0x and {2 * n_bytes} hex digits, got {value!r}")
    return value.strip().lower()


def _names(key: str, value: object) -> tuple[str, ...]:
    """A list, or one comma-separated string (a node config holds no lists)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(i, str) and i.strip() for i in items):
        raise PolicyError(f"policy key {key!r} must be a non-empty list of names, got {value!r}")
    return tuple(i.strip() for i in items)


def _study_ids(key: str, value: object) -> tuple[str, ...]:
    return tuple(_hex(key, s, 32) for s in _names(key, value))


def _hashes(key: str, value: object) -> tuple[str, ...]:
    return tuple(_hex(key, h, 32) for h in _names(key, value))


def _models(key: str, value: object) -> tuple[str, ...]:
    return tuple(m.lower() for m in _names(key, value))


# policy key -> (HospitalPolicy field, reader); the same keys in the node config and the policy file
KEYS: dict[str, tuple[str, Callable[[str, object], Any]]] = {
    "require-dp": ("require_dp", _bool),
    "max-epsilon": ("max_epsilon", _number),
    "max-delta": ("max_delta", _fraction),
    "min-noise-multiplier": ("min_noise_multiplier", _number),
    "max-grad-norm": ("max_grad_norm", _number),
    "require-encryption": ("require_encryption", _bool),
    "require-chain": ("require_chain", _bool),
    "allowed-contract": ("allowed_contract", lambda k, v: _hex(k, v, 20)),
    "allowed-chain-id": ("allowed_chain_id", _count),
    "allowed-study-ids": ("allowed_study_ids", _study_ids),
    "allowed-models": ("allowed_models", _models),
    "allowed-model-sources": ("allowed_model_sources", _hashes),
    "max-params": ("max_params", _count),
    "min-records": ("min_records", _count),
}
_DP_LIMITS = ("max_epsilon", "max_delta", "min_noise_multiplier", "max_grad_norm")


def check_policy_keys(raw: Mapping[str, object], where: str) -> dict[str, object]:
    """Policy keys given outside a node config (a study's ``hospital_policies`` entry): an unknown key or a
    malformed value fails here, naming ``where`` and the key, before anything runs."""
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown policy key(s) {unknown}; known keys: {sorted(KEYS)}")
    for k, v in raw.items():
        KEYS[k][1](k, v)
    return {str(k): v for k, v in raw.items()}


def policies_by_hospital(entries: Mapping[str, Any], hospital_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    """A study's ``hospital_policies`` (keyed by hospital id or index) resolved to hospital ids, every key checked.

    An entry naming no hospital of the study, a hospital named twice, an unknown
    key or a malformed value fails here, at study set-up.
    """
    out: dict[str, dict[str, object]] = {}
    for name, raw in (entries or {}).items():
        where = f"hospital_policies.{name}"
        hid = str(name) if str(name) in hospital_ids else None
        if hid is None and str(name).isdigit() and int(name) < len(hospital_ids):
            hid = hospital_ids[int(name)]
        if hid is None:
            raise PolicyError(f"{where}: no hospital {name!r} in this study (ids {list(hospital_ids)} or their index)")
        if hid in out:
            raise PolicyError(f"{where}: hospital {hid} has two policy entries (by id and by index)")
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{where} must be a mapping of policy keys, got {raw!r}")
        out[hid] = check_policy_keys(raw, where)
    return out


def read_policy_file(path: str | Path) -> dict[str, object]:
    """The keys of a YAML or JSON policy file (JSON is YAML); an unknown key fails, naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"policy key {POLICY_FILE_KEY!r}: cannot read {path}: {exc}") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy file {path} is not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path} must hold a mapping of policy keys, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise PolicyError(f"policy file {path}: unknown policy key(s) {unknown}; known keys: {sorted(KEYS)}")
    return {str(k): v for k, v in data.items()}


def load_policy(
    node_config: Mapping[str, object],
    settings: HospitalSettings,
    own_fingerprint: Callable[[], str] | None = None,
) -> HospitalPolicy:
    """The hospital's policy from its node config keys and its ``policy-file`` (a key set in both fails).

    ``own_fingerprint`` gives the hex fingerprint of the hospital's own CKKS
    key; it is called only when the policy requires encryption.
    """
    raw = {k: v for k, v in node_config.items() if k in KEYS}
    if settings.policy:  # a simulated hospital's entry in the study's hospital_policies
        raw.update(check_policy_keys(json.loads(settings.policy), "study hospital_policies"))
    if node_config.get(POLICY_FILE_KEY):
        from_file = read_policy_file(str(node_config[POLICY_FILE_KEY]))
        both = sorted(set(raw) & set(from_file))
        if both:
            raise PolicyError(f"policy key(s) {both} set both in the node config and in the policy file")
        raw.update(from_file)
    values: dict[str, Any] = {KEYS[k][0]: KEYS[k][1](k, v) for k, v in raw.items()}
    if "require_dp" not in values:
        values["require_dp"] = settings.budget is not None or any(f in values for f in _DP_LIMITS)
    if values.get("require_encryption"):
        if not settings.secret_context or own_fingerprint is None:
            raise PolicyError("policy key 'require-encryption' needs the hospital's own secret-context")
        values["key_fingerprint"] = own_fingerprint()
    if values.get("require_chain"):
        if not settings.chain_rpc or not (values.get("allowed_contract") or settings.contract):
            raise PolicyError("policy key 'require-chain' needs the node config's chain-rpc and contract")
        if "allowed_contract" not in values:
            values["allowed_contract"] = _hex("contract", settings.contract, 20)
    return HospitalPolicy(**values)


# -- checking a task ---------------------------------------------------------------------


def _check_identity(policy: HospitalPolicy, task: RoundTask) -> None:
    if policy.allowed_study_ids and task.study_id.lower() not in policy.allowed_study_ids:
        raise PolicyRefusal(
            "policy-study-not-allowed", f"study {task.study_id} is not in this hospital's allowed studies"
        )
    if policy.require_chain and not task.ledger:
        raise PolicyRefusal("policy-chain-required", "this hospital answers only studies recorded on its chain")
    if task.ledger and policy.allowed_contract and task.contract.lower() != policy.allowed_contract:
        raise PolicyRefusal(
            "policy-contract-not-allowed",
            f"the task names contract {task.contract or '(none)'}, this hospital allows {policy.allowed_contract}",
        )
    if task.ledger and policy.allowed_chain_id is not None and task.chain_id != policy.allowed_chain_id:
        raise PolicyRefusal(
            "policy-contract-not-allowed",
            f"the task names chain id {task.chain_id}, this hospital allows {policy.allowed_chain_id}",
        )


def _check_own_model(policy: HospitalPolicy, task: RoundTask, plan: AnswerPlan) -> None:
    """A researcher's own model runs from this hospital's installed copy only: that copy must be the registered
    source (and, with ``allowed-model-sources``, one this hospital allows). Nothing received is ever run."""
    if not task.model_target:
        return
    if plan.model_source_hash is None:
        raise PolicyRefusal(
            "policy-model-not-installed", f"model {task.model_target!r} is not installed at this hospital"
        )
    if plan.model_source_hash.lower() != task.model_source_hash.lower():
        raise PolicyRefusal(
            "policy-model-source-mismatch",
            f"this hospital's copy of {task.model_target!r} hashes to {plan.model_source_hash}, "
            f"the study registered {task.model_source_hash or '(none)'}",
        )
    if policy.allowed_model_sources and plan.model_source_hash.lower() not in policy.allowed_model_sources:
        raise PolicyRefusal(
            "policy-model-not-allowed",
            f"model {task.model_target!r} (source {plan.model_source_hash}) is not in this hospital's "
            "allowed-model-sources",
        )


def _check_model(policy: HospitalPolicy, task: RoundTask, plan: AnswerPlan) -> None:
    if policy.allowed_models and task.model.lower() not in policy.allowed_models:
        raise PolicyRefusal("policy-model-not-allowed", f"model {task.model!r} is not in {list(policy.allowed_models)}")
    _check_own_model(policy, task, plan)
    if policy.max_params is not None and (plan.n_params is None or plan.n_params > policy.max_params):
        counted = "an unknown number of" if plan.n_params is None else str(plan.n_params)
        raise PolicyRefusal(
            "policy-too-many-params", f"the model has {counted} parameters, this hospital allows {policy.max_params}"
        )
    if policy.min_records is not None and plan.n_records < policy.min_records:
        raise PolicyRefusal(
            "policy-too-few-records",
            f"this hospital has {plan.n_records} training records, its policy needs {policy.min_records}",
        )


def _check_encryption(policy: HospitalPolicy, task: RoundTask) -> None:
    if not policy.require_encryption:
        return
    if not task.encrypted:
        raise PolicyRefusal("policy-encryption-required", "this hospital sends only updates encrypted under its key")
    if task.context_fingerprint.lower() != (policy.key_fingerprint or "").lower():
        raise PolicyRefusal(
            "policy-wrong-key",
            f"the task's CKKS key {task.context_fingerprint or '(none)'} is not this hospital's {policy.key_fingerprint}",
        )


def _limit(code: str, what: str, value: object, bound: float | None, above: bool) -> None:
    """Refuse when ``value`` passes ``bound`` (above it when ``above``, else below it) or is not a number."""
    if value is None or bound is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise PolicyRefusal(code, f"the task's {what} is {value!r}, not a number")
    if (value > bound) if above else (value < bound):
        side = "at most" if above else "at least"
        raise PolicyRefusal(code, f"the task's {what} is {value:g}; this hospital's policy needs {side} {bound:g}")


def _check_dp(policy: HospitalPolicy, task: RoundTask, plan: AnswerPlan) -> None:
    dp = task.privacy
    if not dp.get("enabled", False):  # as hospital_runtime.privacy_for reads it
        if policy.require_dp:
            raise PolicyRefusal("policy-dp-required", "the task turns DP off; this hospital trains only with DP-SGD")
        return
    noise = dp.get("noise_multiplier") if dp.get("noise_multiplier") is not None else plan.noise_multiplier
    delta = dp.get("delta") if dp.get("delta") is not None else plan.delta
    _limit("policy-noise-too-low", "noise multiplier", noise, policy.min_noise_multiplier, above=False)
    _limit("policy-clip-too-high", "clipping norm", dp.get("max_grad_norm", 1.0), policy.max_grad_norm, above=True)
    _limit("policy-epsilon-too-high", "target epsilon", dp.get("target_epsilon"), policy.max_epsilon, above=True)
    _limit("policy-delta-too-high", "delta", delta, policy.max_delta, above=True)


def check_task(policy: HospitalPolicy, task: RoundTask, plan: AnswerPlan) -> None:
    """Raise :class:`PolicyRefusal` naming the first rule the task breaks; return when it complies.

    The ε the hospital spends over the study is held to ``max_epsilon`` by its
    accountant (:meth:`HospitalPolicy.epsilon_cap`), which projects each round.
    """
    _check_identity(policy, task)
    _check_model(policy, task, plan)
    _check_encryption(policy, task)
    _check_dp(policy, task, plan)
