"""A hospital's own settings: where its data, keys, budget and state live.

Deployment: every value comes from the SuperNode's ``--node-config``
(hospital-id, data-path, schema-path, secret-context, eth-key, privacy-budget,
state-dir, chain-rpc, contract, protocol-hash). Simulation: the study spec written by the
launcher (``$FEDLEDGER_STUDY``) gives the same values per partition id.
Study-wide settings (model, training, DP parameters) come in each round's
message instead, from the server.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fedledger.config import check_noise_source
from fedledger.study_spec import STUDY_ENV


class SettingsError(ValueError):
    """A hospital's node config is incomplete or inconsistent."""


@dataclass(frozen=True)
class HospitalSettings:
    hospital_id: str
    index: int
    num_hospitals: int
    seed: int
    dataset: str  # JSON of the dataset config this hospital loads
    secret_context: str | None = None
    eth_key: str | None = None  # file holding the hospital's private key (hex) or an encrypted keystore
    budget: float | None = None
    state_dir: str | None = None
    chain_rpc: str | None = None
    contract: str | None = None
    simulation: bool = True
    noise_source: str = "seeded"  # what draws DP noise and Poisson samples (fedledger.config.NOISE_SOURCES)
    protocol_hash: str | None = None  # the study's protocol hash when no chain is read (fedledger.protocol)
    policy: str | None = None  # JSON of a simulated hospital's policy keys (the study's hospital_policies)


@lru_cache(maxsize=4)
def load_spec(path: str) -> dict[str, Any]:
    """The study spec a simulated study writes into its run directory."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SettingsError(f"study spec {path} not found (set {STUDY_ENV} or give a node config)") from exc


def _protocol_hash(value: object) -> str | None:
    """A node config's ``protocol-hash``: 0x and 64 hex digits, or unset."""
    if value in (None, "", "none"):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{64}", value.strip()):
        raise SettingsError(f"node config protocol-hash must be 0x and 64 hex digits, got {value!r}")
    return value.strip().lower()


def from_node_config(node_config: dict[str, Any]) -> HospitalSettings:
    """Deployment: a SuperNode's --node-config names this hospital's files."""
    required = ("hospital-id", "data-path")
    missing = [k for k in required if k not in node_config]
    if missing:
        raise SettingsError(f"node config lacks {missing}; a hospital needs at least {list(required)}")
    dataset = {
        "name": "csv",
        "schema": node_config.get("schema-path"),
        "hospitals": [{"id": node_config["hospital-id"], "path": node_config["data-path"]}],
    }
    if node_config["data-path"] in ("builtin:breast_cancer", "builtin:diabetes"):
        name = node_config["data-path"].removeprefix("builtin:")
        dataset = {"name": name, "partitioner": node_config.get("partitioner", "iid")}
    budget = node_config.get("privacy-budget")
    return HospitalSettings(
        hospital_id=str(node_config["hospital-id"]),
        index=int(node_config.get("partition-index", 0)),
        num_hospitals=int(node_config.get("num-partitions", 1)),
        seed=int(node_config.get("seed", 0)),
        dataset=json.dumps(dataset, sort_keys=True),
        secret_context=node_config.get("secret-context"),
        eth_key=node_config.get("eth-key"),
        budget=float(budget) if budget not in (None, "", "none") else None,
        state_dir=node_config.get("state-dir"),
        chain_rpc=node_config.get("chain-rpc"),
        contract=node_config.get("contract"),
        simulation=False,
        noise_source=check_noise_source(node_config.get("noise-source", "os-entropy"), "node config noise-source"),
        protocol_hash=_protocol_hash(node_config.get("protocol-hash")),
    )


def from_context(node_config: dict[str, Any]) -> HospitalSettings:
    """Settings for this node, from its node config or, in simulation, from the study spec."""
    if "hospital-id" in node_config:
        return from_node_config(node_config)
    spec_path = os.environ.get(STUDY_ENV)
    if not spec_path:
        raise SettingsError(f"no hospital-id in node config and {STUDY_ENV} is not set")
    spec = load_spec(spec_path)
    index = int(node_config["partition-id"])
    h = spec["hospitals"][index]
    cfg = spec["config"]
    return HospitalSettings(
        hospital_id=h["id"],
        index=index,
        num_hospitals=int(cfg["num_hospitals"]),
        seed=int(cfg["seed"]),
        dataset=json.dumps(cfg["dataset"], sort_keys=True),
        secret_context=h.get("secret_context"),
        eth_key=h.get("eth_key"),
        budget=h.get("budget"),
        state_dir=h.get("state_dir"),
        chain_rpc=(spec.get("chain") or {}).get("rpc_url"),
        contract=(spec.get("chain") or {}).get("contract"),
        simulation=True,
        noise_source=check_noise_source(cfg["privacy"].get("noise_source", "seeded")),
        protocol_hash=spec.get("protocol_hash"),
        policy=json.dumps(h["policy"], sort_keys=True) if h.get("policy") else None,
    )
