"""Structured-config schema of a study, so a typo in any override fails fast.

Hydra validates the composed config against these dataclasses; the server and
the clients read the same resolved config back from the study spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class HospitalFileConfig:
    id: str = MISSING
    path: str = MISSING


@dataclass
class DatasetConfig:
    name: str = MISSING  # breast_cancer | csv
    partitioner: str = "iid"  # iid | dirichlet | quantity | bootstrap (scale benchmarks only)
    alpha: float = 0.5
    quantity_alpha: float = 1.0
    min_rows: int = 10
    rows_per_hospital: int = 40  # bootstrap partitioner only
    test_fraction: float | None = 0.2
    schema: str | None = None
    base_dir: str | None = None
    hospitals: list[HospitalFileConfig] = field(default_factory=list)


@dataclass
class ModelConfig:
    name: str = "logreg"  # logreg | mlp
    hidden: int = 0


@dataclass
class StrategyConfig:
    name: str = "fedavg"
    fraction_train: float = 1.0
    fraction_evaluate: float = 1.0
    round_timeout_s: float = 600.0


@dataclass
class TrainConfig:
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class PrivacyConfig:
    enabled: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "prv"  # prv | rdp | gdp
    grad_sample_mode: str = "ew"
    secure_mode: bool = False
    budget: float | None = None  # default per-hospital budget; hospitals may override


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
    experiment: Any | None = None


def register_schemas() -> None:
    """Register the schema so `defaults: [study_schema]` validates every group."""
    cs = ConfigStore.instance()
    cs.store(name="study_schema", node=StudyConfig)
