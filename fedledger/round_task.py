"""What crosses the wire in a round: the task the aggregator sends, the reports a hospital sends back.

Public format: a deployed hospital and aggregator talk through these keys
only, so their names, types and order stay as they are (docs/INTERFACES.md).
A Flower message carries them in its records:

    task    (aggregator -> hospital)  "global": the model (fedledger.wire),
                                      "config": ConfigRecord = RoundTask.to_wire()
    train   (hospital -> aggregator)  "update": the update (fedledger.wire),
                                      "metrics", "info" = TrainReport.to_wire(),
                                      "commitment" = SignedCommitment.to_json() (ledger on),
                                      or only "refusal" = Refusal.to_wire()
    evaluate (hospital -> aggregator) "metrics", "info" = EvaluationReport.to_wire(), or "refusal"

Privacy settings travel as JSON text inside the task (the ``privacy`` key),
as they always have; :class:`RoundTask` holds them parsed. Each ``from_wire``
raises :class:`RoundMessageError` naming the missing or malformed key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedledger.config import TrainConfig

from fedledger.tasks import is_task_metric
from fedledger.wire_values import RoundMessageError
from fedledger.wire_values import read_bool as _bool
from fedledger.wire_values import read_float as _float
from fedledger.wire_values import read_int as _int
from fedledger.wire_values import read_json_object as _json_object
from fedledger.wire_values import read_str as _str

__all__ = ["EvaluationReport", "Record", "Refusal", "RoundMessageError", "RoundTask", "TrainReport"]


class Record:
    """Names of the records in a round message's RecordDict."""

    GLOBAL = "global"
    CONFIG = "config"
    UPDATE = "update"
    METRICS = "metrics"
    INFO = "info"
    COMMITMENT = "commitment"
    REFUSAL = "refusal"


SERVER_ROUND = "server-round"  # the one task key a Flower strategy stamps itself

WireValue = bool | int | float | str


def _meta(key: str, read: Callable[[str, object], Any], in_info: bool = False) -> dict[str, Any]:
    return {"wire": key, "read": read, "info": in_info}


def _wire(key: str, read: Callable[[str, object], Any], in_info: bool = False, **default: Any) -> Any:
    """A field that travels under ``key`` (in the ``info`` record if ``in_info``); ``read`` checks the value."""
    return field(metadata=_meta(key, read, in_info), **default)


def _read_fields(
    cls: type[Any], what: str, record: Mapping[str, object], info: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """The fields of ``cls`` from the records received (absent optional keys keep their defaults)."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        key = f.metadata["wire"]
        source = (info or {}) if f.metadata["info"] else record
        if key in source:
            out[f.name] = f.metadata["read"](key, source[key])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise RoundMessageError(f"{what} lacks {key!r}")
    return out


OWN_MODEL_FIELDS = ("model_target", "model_kwargs", "model_source_hash", "model_fix_batchnorm")


@dataclass(frozen=True, kw_only=True)
class RoundTask:
    """The ``config`` record of a train or evaluate task, field for key (in wire order)."""

    model: str = _wire("model", _str)
    hidden: int = _wire("hidden", _int)
    seed: int = _wire("seed", _int, default=0)
    local_epochs: int = _wire("local-epochs", _int)
    batch_size: int = _wire("batch-size", _int)
    lr: float = _wire("lr", _float)
    momentum: float = _wire("momentum", _float)
    weight_decay: float = _wire("weight-decay", _float)
    num_rounds: int = _wire("num-rounds", _int)
    strategy: str = _wire("strategy", _str, default="fedavg")
    proximal_mu: float = _wire("proximal-mu", _float, default=0.0)  # FedProx's mu; 0 without it
    on_bad_aggregate: str = _wire("on-bad-aggregate", _str, default="keep-previous")  # or "stop"
    release_quorum: int = _wire("release-quorum", _int, default=1)  # hospitals that must sign a release
    privacy: dict[str, Any] = field(default_factory=dict, metadata=_meta("privacy", _json_object))  # JSON text
    encrypted: bool = _wire("encrypted", _bool, default=False)
    context_fingerprint: str = _wire("context-fingerprint", _str, default="")  # hex; "" without encryption
    ledger: bool = _wire("ledger", _bool, default=False)
    chain_id: int = _wire("chain-id", _int, default=0)
    contract: str = _wire("contract", _str, default="")
    prev_hash: str = _wire("prev-hash", _str)  # hex hash of the model this task carries
    study_id: str = _wire("study-id", _str)  # bytes32 hex
    server_round: int = _wire(SERVER_ROUND, _int)
    task: str = _wire("task", _str, default="binary")  # fedledger/tasks.py: binary | multiclass | regression | survival
    num_outputs: int = _wire("num-outputs", _int, default=1)  # the model's outputs (multiclass: the class count)
    # model=own (fl_client/own_model.py): the class, its kwargs (JSON text), the sha256 of its module file, the fix
    model_target: str = _wire("model-target", _str, default="")  # package.module.Class; "" for a built-in model
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata=_meta("model-kwargs", _json_object))
    model_source_hash: str = _wire("model-source-hash", _str, default="")  # hex; "" for a built-in model
    model_fix_batchnorm: bool = _wire("model-fix-batchnorm", _bool, default=False)
    # protocol v4 (issue 15), after the older keys:
    # the server optimizer's settings (fedledger/server_opt.py); 0 where the strategy has none
    server_lr: float = _wire("server-lr", _float, default=0.0)
    server_momentum: float = _wire("server-momentum", _float, default=0.0)
    server_beta1: float = _wire("server-beta1", _float, default=0.0)
    server_beta2: float = _wire("server-beta2", _float, default=0.0)
    server_tau: float = _wire("server-tau", _float, default=0.0)
    personalisation_epochs: int = _wire("personalisation-epochs", _int, default=0)  # 0: no personalisation

    @property
    def dp_epochs(self) -> int:
        """Epochs a hospital's accountant is charged per round: training, and the personalisation it will run."""
        return self.local_epochs + self.personalisation_epochs

    def train_config(self, local_epochs: int | None = None) -> TrainConfig:
        """The task's local training (``local_epochs``: another number of epochs, e.g. personalisation's)."""
        from fedledger.config import TrainConfig

        return TrainConfig(
            local_epochs=self.local_epochs if local_epochs is None else int(local_epochs),
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    # the task's options as canonical JSON (fedledger.tasks.task_options_text; survival: time grid, loss); "": none
    task_options: str = _wire("task-options", _str, default="")

    def for_round(self, server_round: int, prev_hash: str) -> RoundTask:
        """This study's task for one round and the model it carries."""
        return replace(self, server_round=server_round, prev_hash=prev_hash)

    def to_wire(self) -> dict[str, WireValue]:
        """The task's keys in order; a built-in model's task carries no ``model-*`` key (the layout as before)."""
        out: dict[str, WireValue] = {}
        for f in fields(self):
            if f.name in OWN_MODEL_FIELDS and not self.model_target:
                continue
            value = getattr(self, f.name)
            out[f.metadata["wire"]] = json.dumps(value) if f.metadata["read"] is _json_object else value
        return out

    @classmethod
    def from_wire(cls, record: Mapping[str, object]) -> RoundTask:
        return cls(**_read_fields(cls, "round task", record))


@dataclass(frozen=True, kw_only=True)
class TrainReport:
    """A hospital's train reply besides its update: ``metrics`` (numbers) and ``info`` (labels).

    The privacy fields are set when the hospital trains with DP; ``budget``
    when it has one; ``context_fingerprint`` when its update is encrypted.
    ``noise_source`` says what drew its DP noise and Poisson samples
    (``seeded``, ``os-entropy``, ``torchcsprng``). ``aggregate_refused`` (with
    its reason) is the code of the bound the received aggregate failed
    (fl_client/aggregate_bounds.py) when the hospital trained from its last
    accepted global model instead (``on-bad-aggregate`` keep-previous).
    """

    num_examples: int = _wire("num-examples", _int)
    train_loss: float | None = _wire("train-loss", _float, default=None)
    epsilon: float | None = _wire("epsilon", _float, default=None)
    delta: float | None = _wire("delta", _float, default=None)
    noise_multiplier: float | None = _wire("noise-multiplier", _float, default=None)
    max_grad_norm: float | None = _wire("max-grad-norm", _float, default=None)
    budget: float | None = _wire("budget", _float, default=None)
    hospital: str | None = _wire("hospital", _str, in_info=True, default=None)
    context_fingerprint: str | None = _wire("context-fingerprint", _str, in_info=True, default=None)
    accountant: str | None = _wire("accountant", _str, in_info=True, default=None)
    noise_source: str | None = _wire("noise-source", _str, in_info=True, default=None)
    aggregate_refused: str | None = _wire("aggregate-refused", _str, in_info=True, default=None)
    aggregate_refused_reason: str | None = _wire("aggregate-refused-reason", _str, in_info=True, default=None)

    def to_wire(self) -> tuple[dict[str, WireValue], dict[str, WireValue]]:
        """(metrics, info), each without the keys whose value is not set."""
        metrics: dict[str, WireValue] = {}
        info: dict[str, WireValue] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                (info if f.metadata["info"] else metrics)[f.metadata["wire"]] = value
        return metrics, info

    @classmethod
    def from_wire(cls, metrics: Mapping[str, object], info: Mapping[str, object]) -> TrainReport:
        report = cls(**_read_fields(cls, "train reply", metrics, info))
        if report.num_examples <= 0:
            raise RoundMessageError(f"num-examples must be a positive integer, got {report.num_examples!r}")
        return report

    def privacy(self) -> dict[str, float | str]:
        """The privacy fields reported, under their wire keys (the round outcome's ``privacy`` entry)."""
        out: dict[str, float | str] = {}
        for key, value in (
            ("epsilon", self.epsilon),
            ("delta", self.delta),
            ("budget", self.budget),
            ("noise-multiplier", self.noise_multiplier),
            ("max-grad-norm", self.max_grad_norm),
            ("accountant", self.accountant),
            ("noise-source", self.noise_source),
        ):
            if value is not None:
                out[key] = value
        return out


RELEASE_KEYS = ("release-model-hash", "release-signature", "release-signer")


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    """A hospital's evaluate reply: metrics of the global model on its test split.

    ``auc`` is None where ROC-AUC is undefined (a test split of one class);
    the wire then carries ``auc`` 0.0 with ``auc-defined`` 0.
    ``release`` (info keys ``release-model-hash``, ``release-signature``,
    ``release-signer``; a study with a ledger): the hospital's EIP-712
    ModelRelease signature over the hash of the checkpoint as it would be
    released (fedledger.release_attestation), hex strings as they travel.
    ``num_positives`` (metrics key ``num-positives``, optional): positives in
    the test split, which the AUC's confidence interval needs (fl_server/intervals.py).
    ``validation`` (metrics keys ``val-loss``, ``val-num-examples`` and ``val-<metric>``
    for each other metric where defined, e.g. ``val-accuracy``, ``val-auc``; optional):
    the same model on the hospital's validation rows (``dataset.validation_fraction``),
    which the aggregator's best-round choice reads.
    ``task_metrics`` (a study whose task is not binary, fedledger/tasks.py): the
    task's metrics besides loss, accuracy and AUC under their own keys
    (``macro-f1``, ``recall-<class>``, ``rmse``, ``mae``, ``r2``, ...; a key absent:
    undefined on this split). Such a reply carries ``accuracy`` only where its task
    has one, and ``auc`` only where defined; a binary reply keeps its historical keys.
    ``personal`` (metrics keys ``personal-loss``, ``personal-accuracy``, ``personal-auc`` where
    defined; optional): the global model fine-tuned on the hospital's own training rows
    (``train.personalisation_epochs``, fl_client/personalisation.py), on the same test split.
    """

    loss: float
    accuracy: float | None
    num_examples: int
    auc: float | None
    hospital: str | None = None
    release: dict[str, str] | None = None
    num_positives: int | None = None
    validation: dict[str, float | None] | None = None  # loss, accuracy, auc (None: undefined), num-examples, ...
    task_metrics: dict[str, float | None] | None = None  # None: a binary report

    def metrics(self) -> dict[str, float | None]:
        """Every metric of the report but the sample count: loss, then accuracy and AUC or the task's own."""
        if self.task_metrics is None:
            return {"loss": self.loss, "accuracy": self.accuracy, "auc": self.auc}
        out: dict[str, float | None] = {"loss": self.loss}
        if self.accuracy is not None:
            out["accuracy"] = self.accuracy
        if self.auc is not None:
            out["auc"] = self.auc
        return {**out, **self.task_metrics}

    personal: dict[str, float | None] | None = None  # the fine-tuned copy's loss, accuracy, auc (None: undefined)

    def to_wire(self) -> tuple[dict[str, WireValue], dict[str, WireValue]]:
        """(metrics, info)."""
        metrics: dict[str, WireValue]
        if self.task_metrics is None:
            metrics = {
                "loss": self.loss,
                "accuracy": float("nan") if self.accuracy is None else self.accuracy,
                "num-examples": self.num_examples,
                "auc": self.auc if self.auc is not None else 0.0,
                "auc-defined": int(self.auc is not None),
            }
        else:
            metrics = {"loss": self.loss, "num-examples": self.num_examples}
            metrics.update({k: float(v) for k, v in self.metrics().items() if k != "loss" and v is not None})
        if self.num_positives is not None:
            metrics["num-positives"] = self.num_positives
        for key, value in (self.validation or {}).items():
            if value is not None:
                metrics[f"val-{key}"] = int(value) if key == "num-examples" else float(value)
        for key, value in (self.personal or {}).items():
            if value is not None:
                metrics[f"personal-{key}"] = float(value)
        info: dict[str, WireValue] = {"hospital": self.hospital} if self.hospital is not None else {}
        return metrics, {**info, **(self.release or {})}

    @classmethod
    def from_wire(cls, metrics: Mapping[str, object], info: Mapping[str, object]) -> EvaluationReport:
        task_metrics: dict[str, float | None] = {k: _float(k, v) for k, v in metrics.items() if is_task_metric(k)}
        required = ("loss", "num-examples") if task_metrics else ("loss", "accuracy", "num-examples")
        for key in required:
            if key not in metrics:
                raise RoundMessageError(f"evaluation reply lacks {key!r}")
        auc = _float("auc", metrics["auc"]) if metrics.get("auc") is not None else None
        if auc is not None and (math.isnan(auc) or _int("auc-defined", metrics.get("auc-defined", 1)) == 0):
            auc = None
        num_examples = _int("num-examples", metrics["num-examples"])
        positives = _int("num-positives", metrics["num-positives"]) if "num-positives" in metrics else None
        if positives is not None and not 0 <= positives <= num_examples:
            raise RoundMessageError(f"num-positives must be in 0..{num_examples}, got {positives}")
        return cls(
            loss=_float("loss", metrics["loss"]),
            accuracy=_float("accuracy", metrics["accuracy"]) if "accuracy" in metrics else None,
            num_examples=num_examples,
            auc=auc,
            hospital=_str("hospital", info["hospital"]) if "hospital" in info else None,
            release={k: _str(k, info.get(k)) for k in RELEASE_KEYS} if RELEASE_KEYS[1] in info else None,
            num_positives=positives,
            validation=_validation(metrics),
            task_metrics=task_metrics or None,
            personal=_personal(metrics),
        )


def _personal(metrics: Mapping[str, object]) -> dict[str, float | None] | None:
    """The optional personalised-model metrics of an evaluation reply (``personal-<metric>``, the task's
    metrics; NaN: undefined); None when the hospital reported none."""
    personal = {k.removeprefix("personal-"): v for k, v in metrics.items() if k.startswith("personal-")}
    if not personal:
        return None
    if "loss" not in personal:
        raise RoundMessageError(f"evaluation reply has {sorted(personal)} personal metrics but lacks 'personal-loss'")
    out: dict[str, float | None] = {}
    for key, value in personal.items():
        number = _float(f"personal-{key}", value)
        out[key] = None if math.isnan(number) and key != "loss" else number
    return out


def _validation(metrics: Mapping[str, object]) -> dict[str, float | None] | None:
    """The optional validation metrics of an evaluation reply; None when the hospital holds no validation rows."""
    if "val-num-examples" not in metrics:
        return None
    task = any(is_task_metric(k.removeprefix("val-")) for k in metrics if k.startswith("val-"))
    for key in ("val-loss",) if task else ("val-loss", "val-accuracy"):
        if key not in metrics:
            raise RoundMessageError(f"evaluation reply has val-num-examples but lacks {key!r}")
    n = _int("val-num-examples", metrics["val-num-examples"])
    if n < 1:
        raise RoundMessageError(f"val-num-examples must be >= 1, got {n}")
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if key.startswith("val-") and key != "val-num-examples":
            number = _float(key, value)
            out[key.removeprefix("val-")] = None if math.isnan(number) else number
    if not task:
        out.setdefault("auc", None)
    return {**out, "num-examples": n}


@dataclass(frozen=True)
class Refusal:
    """A hospital declines a task (budget spent, a model not the one on chain, another study's key)."""

    hospital: str
    code: str
    reason: str

    def to_wire(self) -> dict[str, WireValue]:
        return {"hospital": self.hospital, "code": self.code, "reason": self.reason}

    @classmethod
    def from_wire(cls, record: Mapping[str, object]) -> Refusal:
        """Lenient: a refusal is reported whatever it holds."""
        return cls(str(record.get("hospital", "")), str(record.get("code", "refused")), str(record.get("reason", "")))
