"""Structured-config schema of a study, so a typo in any override fails fast.

Hydra validates the composed config against these dataclasses; the server and
the clients read the same resolved config back from the study spec. A
hospital trains with these same ``TrainConfig`` and ``PrivacyConfig`` classes,
so the study's defaults are written here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import MISSING

from fedledger.tasks import all_metrics, is_task_metric, task_kind

ACCOUNTANTS = ("prv", "rdp", "gdp")
GRAD_SAMPLE_MODES = ("hooks", "functorch", "ew")
# All three give the same per-sample gradients on our models; benchmarks/bench_dp.py
# chose ew as the fastest (docs/PRIVACY.md).
DEFAULT_GRAD_SAMPLE_MODE = "ew"
# Where DP noise and Poisson sampling come from: PyTorch's generator seeded per round (simulations,
# reproducible by seed) or os.urandom (a deployed hospital's default); docs/PRIVACY.md.
NOISE_SOURCES = ("seeded", "os-entropy")
# What every hospital does with a decrypted aggregate that fails its public bounds (docs/ENCRYPTION.md).
ON_BAD_AGGREGATE = ("keep-previous", "stop")
# The validation metric that picks a binary study's best round, and whether lower is better (fl_server/selection.py);
# another task's metrics and directions are in fedledger/tasks.py.
SELECTION_METRICS = {"loss": True, "accuracy": False, "auc": False}


@dataclass
class ModelConfig:
    """Hydra group ``model``: a built-in model by ``name``, or (``model=own``) the researcher's own class.

    ``_target_`` is ``package.module.Class`` (an ``nn.Module``), built as
    ``Class(n_features=<d>, **kwargs)``; ``kwargs`` is a node of its own because
    this node also holds the study's settings (``name``, ``hidden``,
    ``fix_batchnorm``), which are not the class's arguments (docs/MODELS.md).
    """

    name: str = "logreg"  # logreg | mlp | own
    hidden: int = 0
    _target_: str | None = None  # model=own: package.module.Class
    kwargs: dict[str, Any] = field(default_factory=dict)  # model=own: the class's keyword arguments
    fix_batchnorm: bool = False  # model=own: let Opacus replace BatchNorm with GroupNorm


@dataclass
class StrategyConfig:
    name: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    round_timeout_s: float = 600.0
    on_bad_aggregate: str = "keep-previous"  # one of ON_BAD_AGGREGATE
    proximal_mu: float = 0.0  # FedProx's proximal term; > 0 only with name=fedprox
    # server optimizers (fedledger/server_opt.py); None: Flower's default for the strategy, refused for others
    server_lr: float | None = None  # fedavgm, fedadam, fedyogi, fedadagrad
    server_momentum: float | None = None  # fedavgm
    beta1: float | None = None  # fedadam, fedyogi
    beta2: float | None = None  # fedadam, fedyogi
    tau: float | None = None  # fedadam, fedyogi, fedadagrad
    # robust aggregation without encryption (fedledger/strategies.py); each only with its strategy
    beta: float | None = None  # fedtrimmedavg: the fraction cut at each end, per coordinate
    num_malicious: int | None = None  # krum: the hospitals assumed malicious (f)
    multi_krum_m: int | None = None  # krum: how many best-scored updates are averaged (1: Krum)
    # best round and early stopping, on the hospitals' validation rows (dataset.validation_fraction > 0)
    selection_metric: str = "loss"  # one of the study task's metrics (fedledger/tasks.py; binary: SELECTION_METRICS)
    early_stopping_patience: int | None = None  # rounds without improvement before the study stops; None: off


@dataclass
class TrainConfig:
    """Hydra group ``train``: one hospital's local training per round."""

    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    # personalisation: epochs each hospital fine-tunes a copy of the global model for at evaluation, with
    # DP-SGD charged to its accountant with each round's training (fl_client/personalisation.py); 0: off
    personalisation_epochs: int = 0

    @classmethod
    def from_any(cls, cfg: Any) -> TrainConfig:
        """From a TrainConfig, a mapping (e.g. Flower ConfigRecord / Hydra node) or an object.

        Mapping keys may use dashes (``local-epochs``, ``batch-size``) as in
        the round protocol; unknown keys are ignored, missing ones take the defaults.
        """
        if isinstance(cfg, cls):
            return cfg
        defaults = cls()
        out: dict[str, Any] = {}
        for f in fields(cls):
            kind = type(getattr(defaults, f.name))  # every field is an int or a float
            for key in (f.name, f.name.replace("_", "-")):
                if isinstance(cfg, Mapping) or hasattr(cfg, "keys"):
                    if key in cfg:
                        out[f.name] = kind(cfg[key])
                        break
                elif hasattr(cfg, key):
                    out[f.name] = kind(getattr(cfg, key))
                    break
        return cls(**out)


@dataclass
class PrivacyConfig:
    """Hydra group ``privacy``: a hospital's DP-SGD set-up.

    Exactly one of ``noise_multiplier`` / ``target_epsilon`` must be set when
    ``enabled``. ``delta`` None means ``min(1e-5, 1 / (10 n))`` of the
    hospital's record count.
    """

    enabled: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"  # one of ACCOUNTANTS
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE  # one of GRAD_SAMPLE_MODES
    secure_mode: bool = False
    budget: float | None = None  # default epsilon budget of a hospital; the hospital's own setting wins
    noise_source: str = "seeded"  # one of NOISE_SOURCES, for simulated hospitals; a deployed one's own setting wins
    stats_per_site: bool = False  # statistics queries may release per-hospital figures (docs/STATS.md)

    @classmethod
    def from_any(cls, cfg: Any) -> PrivacyConfig:
        """From a PrivacyConfig, a mapping (a Hydra DictConfig is one), None or an object with attributes.

        A mapping with a key this schema does not know is refused.
        """
        if isinstance(cfg, cls):
            return cfg
        if cfg is None:
            return cls()
        names = [f.name for f in fields(cls)]
        if isinstance(cfg, Mapping):
            unknown = set(cfg) - set(names)
            if unknown:
                raise ValueError(f"unknown privacy config keys: {sorted(unknown)}")
            return cls(**{k: cfg[k] for k in names if k in cfg})
        return cls(**{k: getattr(cfg, k) for k in names if hasattr(cfg, k)})

    def validate(self) -> None:
        """Refuse a set-up that would train with an unknown mechanism or no defined noise."""
        check_noise_source(self.noise_source)
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(f"privacy.accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ValueError(
                f"privacy.grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, got {self.grad_sample_mode!r}"
            )
        if not self.enabled:
            return
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "privacy: set exactly one of noise_multiplier (fixed noise) or target_epsilon "
                f"(noise derived for the whole study); got noise_multiplier={self.noise_multiplier}, "
                f"target_epsilon={self.target_epsilon}"
            )
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ValueError(f"privacy.noise_multiplier must be > 0 when DP is enabled, got {self.noise_multiplier}")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ValueError(f"privacy.target_epsilon must be > 0, got {self.target_epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError(f"privacy.delta must be in (0, 1), got {self.delta}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"privacy.max_grad_norm must be > 0, got {self.max_grad_norm}")


def check_dp_off_settings(privacy: Mapping[str, Any]) -> None:
    """With DP off, a noise or epsilon setting would be recorded and never applied: a study that reads as private."""
    if privacy.get("enabled"):
        return
    unused = [k for k in ("noise_multiplier", "target_epsilon") if privacy.get(k) is not None]
    if unused:
        raise ValueError(
            f"privacy.{unused[0]}={privacy[unused[0]]} with privacy.enabled=false trains without DP: "
            "set privacy=target_eps or privacy=fixed_noise (or privacy.enabled=true), or drop it"
        )


def check_noise_source(value: object, setting: str = "privacy.noise_source") -> str:
    """``value`` if it names a noise source; a misspelled one fails here, before any training."""
    if value not in NOISE_SOURCES:
        raise ValueError(f"{setting} must be one of {NOISE_SOURCES}, got {value!r}")
    return str(value)


@dataclass
class EncryptionConfig:
    enabled: bool = False
    preset: str = "off"
    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: list[int] = field(default_factory=list)
    global_scale_bits: int = 36
    max_update_bytes: int = 256 * 1024 * 1024
    symmetric: bool = True


@dataclass
class LedgerConfig:
    backend: str = "anvil"  # anvil | eth_tester | rpc | none
    rpc_url: str | None = None
    key_env: str | None = None
    keystore: str | None = None
    record_timeout_s: float = 120.0
    expiry_days: float = 30.0
    mode: str = "per_hospital"  # per_hospital | merkle | auto (Merkle above merkle_threshold hospitals)
    merkle_threshold: int = 32
    release_quorum: int | None = None  # hospitals that must sign a model release; None: a majority


@dataclass
class StudyConfig:
    # Each dataset kind has its own keys; fl_client.data validates them strictly (unknown key -> ConfigError).
    dataset: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    num_hospitals: int = 4
    num_rounds: int = 10
    seed: int = 0
    min_hospitals: int = 2
    baselines: bool = True
    audit: bool = True
    ray_num_cpus: int = 2
    budgets: dict[str, float] = field(default_factory=dict)
    # simulated hospitals' policies, keyed by hospital id or index, with fl_client/policy.py's node-config keys
    hospital_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    experiment: Any | None = None
    stats: Any | None = None  # descriptive statistics (python -m experiments.stats; conf/stats, docs/STATS.md)


def release_quorum(configured: int | None, num_hospitals: int) -> int:
    """The release quorum k: the configured one, else a majority, so no single party releases alone."""
    k = num_hospitals // 2 + 1 if configured is None else int(configured)
    if not 1 <= k <= max(num_hospitals, 1):
        raise ValueError(f"ledger.release_quorum must be between 1 and the {num_hospitals} hospitals, got {configured}")
    return k


def check_model(name: str, hidden: int) -> int:
    """The MLP's width, > 0; a logreg has no hidden layer, so a width for it would be recorded and never used."""
    hidden = int(hidden)
    if name == "mlp" and hidden < 1:
        raise ValueError(f"model.hidden must be >= 1 for model=mlp, got {hidden}")
    if name != "mlp" and hidden != 0:
        raise ValueError(f"model.hidden={hidden} is the MLP's width: set model=mlp, or model.hidden=0 for {name!r}")
    return hidden


def check_own_model(model: Mapping[str, Any]) -> str | None:
    """The ``_target_`` of ``model=own`` (None for a built-in model); an own-model key on a built-in is refused."""
    target, kwargs, fix = model.get("_target_"), model.get("kwargs") or {}, bool(model.get("fix_batchnorm", False))
    if model.get("name") == "own":
        if not target:
            raise ValueError("model=own needs model._target_=package.module.Class (e.g. mynet.SmallNet)")
        return str(target)
    own_keys = [k for k, set_ in (("_target_", target), ("kwargs", kwargs), ("fix_batchnorm", fix)) if set_]
    if own_keys:
        raise ValueError(
            f"model.{own_keys[0]} belongs to your own model, but model.name={model.get('name')!r}: "
            "add model=own (e.g. model=own model._target_=mynet.SmallNet)"
        )
    return None


def check_personalisation_epochs(epochs: Any) -> int:
    """A whole number of epochs >= 0 (0: no personalisation)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"train.personalisation_epochs must be a whole number >= 0, got {epochs!r}")
    return epochs


def check_proximal_mu(strategy: str, mu: float) -> float:
    """FedProx needs mu > 0 and nothing else takes one: a mu that would be silently ignored is refused."""
    mu = float(mu)
    if not mu >= 0.0:
        raise ValueError(f"strategy.proximal_mu must be >= 0, got {mu}")
    if strategy == "fedprox" and mu == 0.0:
        raise ValueError("strategy.name=fedprox needs strategy.proximal_mu > 0 (e.g. 0.01); with 0 it is FedAvg")
    if strategy != "fedprox" and mu != 0.0:
        raise ValueError(f"strategy.proximal_mu={mu} is FedProx's term: set strategy.name=fedprox (got {strategy!r})")
    return mu


def check_selection(strategy: Mapping[str, Any], validation_fraction: Any, task: str | None = None) -> None:
    """A selection metric the study's task reports (any task's while the task is not known yet, before the
    data is loaded); early stopping only with validation rows to stop on."""
    metric = strategy.get("selection_metric", "loss")
    known = task_kind(task).selection_metrics if task is not None else all_metrics()
    if metric not in known and not (task in (None, "multiclass") and is_task_metric(str(metric))):
        where = f" of task {task!r}" if task is not None else ""
        raise ValueError(f"strategy.selection_metric must be one of {tuple(known)}{where}, got {metric!r}")
    patience = strategy.get("early_stopping_patience")
    if patience is None:
        return
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(
            f"strategy.early_stopping_patience must be a whole number >= 1 (or null: off), got {patience!r}"
        )
    if not float(validation_fraction or 0.0) > 0.0:
        raise ValueError(
            "strategy.early_stopping_patience needs validation rows to judge improvement: "
            "set dataset.validation_fraction > 0 (e.g. 0.2), or drop early_stopping_patience"
        )


def check_on_bad_aggregate(value: str) -> str:
    """Refuse a policy no hospital implements, naming the ones it does."""
    if value not in ON_BAD_AGGREGATE:
        raise ValueError(f"strategy.on_bad_aggregate must be one of {ON_BAD_AGGREGATE}, got {value!r}")
    return value


def hospital_count(listed: Any, default: Any, sites: Any = None) -> int:
    """``num_hospitals`` of a study: the length of its hospital list (a CSV study), else the centers a
    ``by_column`` split declares (``dataset.num_sites``), else ``default``."""
    if listed:
        return len(listed)
    return int(sites) if sites is not None else int(default)


def register_schemas() -> None:
    """Register the schema so `defaults: [study_schema]` validates every group.

    Also the ``hospital_count`` resolver, with which ``num_hospitals`` follows a CSV study's hospital list.
    """
    from hydra.core.config_store import ConfigStore  # only launchers need Hydra; a hospital reads the classes
    from omegaconf import OmegaConf

    cs = ConfigStore.instance()
    cs.store(name="study_schema", node=StudyConfig)
    if not OmegaConf.has_resolver("hospital_count"):
        OmegaConf.register_new_resolver("hospital_count", hospital_count)
