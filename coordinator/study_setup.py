"""Set up a study before round 1: data check, initial model, keys, hospital identities, the chain.

Writes ``<run dir>/study.json`` (the study spec the ServerApp and, in
simulation, the ClientApps read). Every key goes to ``<run dir>.secrets/keys/``
(:func:`coordinator.credentials.secrets_dir`): the run dir is the evidence an
auditor receives, and holds only the public CKKS context. The same steps back ``fedledger
provision`` for a deployment.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from coordinator.credentials import move_public_ckks, secrets_dir
from coordinator.study_chain import setup_chain
from fedledger.config import (
    check_dp_off_settings,
    check_model,
    check_noise_source,
    check_on_bad_aggregate,
    check_own_model,
    check_selection,
    release_quorum,
)
from fedledger.config_keys import check_hospital_keys, check_known_settings
from fedledger.dp.plan import check_study_delta
from fedledger.files import save_npz
from fedledger.hashing import model_hash, sha256, to_hex
from fedledger.model_source import source_hash
from fedledger.protocol import protocol_hash
from fedledger.strategies import check_strategy
from fl_client.data import HospitalData, load_hospitals, study_layout, study_task
from fl_client.models import get_arrays
from fl_client.own_model import build_study_model
from fl_client.policy import policies_by_hospital
from fl_client.tasks import task_for
from fl_server.study import round_task


@dataclass
class PreparedStudy:
    spec_path: Path
    spec: dict[str, Any]
    hospitals: list[HospitalData]
    chain: Any = None  # ledger.chains.Chain while the study runs

    def close(self) -> None:
        if self.chain is not None:
            self.chain.stop()
            self.chain = None


def config_hash(cfg: dict[str, Any]) -> bytes:
    """SHA-256 of the resolved config as canonical JSON (sorted keys, no spaces).

    Kept in study.json (``config_hash``) and in the study id; what the chain registers as
    ``configHash`` is the protocol hash (:func:`fedledger.protocol.protocol_hash`, docs/HASHES.md).
    """
    return sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode())


def hospital_budget(cfg: dict[str, Any], hospital_id: str) -> float | None:
    """A hospital's own epsilon budget: its override, else the study default, else the target epsilon."""
    if hospital_id in (cfg.get("budgets") or {}):
        return float(cfg["budgets"][hospital_id])
    privacy = cfg["privacy"]
    if privacy.get("budget") is not None:
        return float(privacy["budget"])
    if privacy.get("enabled") and privacy.get("target_epsilon") is not None:
        return float(privacy["target_epsilon"])
    return None


def ckks_keys(cfg: dict[str, Any], run_dir: Path, keys_dir: Path) -> dict[str, Any]:
    """The CKKS key ceremony: the secret context stays in ``keys_dir``; the public files go to ``<run dir>/keys/ckks``."""
    from fedledger.ckks import create_keys, params_from_config

    paths = create_keys(keys_dir / "ckks", params_from_config(cfg["encryption"]))
    return {
        "secret_context": str(paths.secret_context),
        "aggregator_context": str(move_public_ckks(paths, run_dir / "keys" / "ckks")),
        "fingerprint": paths.fingerprint_hex,
    }


def check_model_size(cfg: dict[str, Any], n_params: int) -> None:
    """An encrypted study's model must fit its CKKS preset's update size limit (refused with the numbers)."""
    if cfg["encryption"]["enabled"]:
        from fedledger.ckks.params import check_update_size, params_from_config

        check_update_size(n_params, params_from_config(cfg["encryption"]))


def prepare_study(
    cfg: dict[str, Any],
    run_dir: Path,
    read_data: bool = True,
    hospital_addresses: dict[str, str] | None = None,
) -> PreparedStudy:
    """Check the config, write the initial model, make the keys, register the study on the chain.

    ``read_data=False`` (``fedledger provision``): no hospital's data is read; the feature layout
    comes from the schema (:func:`fl_client.data.study_layout`), the spec holds no row counts, and
    the coordinator consents for no hospital: each consents from its own machine with its own
    cohort size (``fedledger consent``). ``hospital_addresses``: hospitals that bring their own
    Ethereum key, by id; the chain registers these addresses and no key is made for them.
    """
    check_known_settings(cfg)  # a '+key' Hydra let through, which nothing would read, stops here
    check_noise_source(cfg["privacy"].get("noise_source", "seeded"))  # Hydra checks its type only: a typo stops here
    check_on_bad_aggregate(cfg["strategy"].get("on_bad_aggregate", "keep-previous"))
    check_strategy(
        cfg["strategy"], encrypted=bool(cfg["encryption"]["enabled"]), num_hospitals=int(cfg["num_hospitals"])
    )
    release_quorum(cfg["ledger"].get("release_quorum"), int(cfg["num_hospitals"]))
    check_model(cfg["model"]["name"], cfg["model"]["hidden"])
    own_target = check_own_model(cfg["model"])
    own_source = source_hash(own_target) if own_target else None  # not importable here: stops before any data
    check_selection(cfg["strategy"], cfg["dataset"].get("validation_fraction"))
    check_dp_off_settings(cfg["privacy"])
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    hospitals: list[HospitalData] = []
    if read_data:
        hospitals = load_hospitals(cfg["dataset"], int(cfg["num_hospitals"]), int(cfg["seed"]))
        ids = [h.hospital_id for h in hospitals]
        n_features = hospitals[0].X_train.shape[1]
        task = study_task(hospitals)
    else:
        layout = study_layout(cfg["dataset"], int(cfg["num_hospitals"]))
        ids, n_features = list(layout.hospital_ids), layout.n_features
        task = {"name": layout.task, "num_outputs": layout.num_outputs}
        if layout.options:
            task["options"] = layout.options
    policies = policies_by_hospital(cfg.get("hospital_policies") or {}, ids)
    check_hospital_keys("budgets", cfg.get("budgets") or {}, ids)
    check_hospital_keys("hospital addresses", hospital_addresses or {}, ids)
    if cfg["privacy"].get("enabled") and hospitals:  # delta below 1/n for every hospital (else each refuses
        # privacy-delta-invalid; without the data, each hospital's node makes this check itself)
        check_study_delta(cfg["privacy"].get("delta"), {h.hospital_id: h.n_train for h in hospitals})
    check_selection(cfg["strategy"], cfg["dataset"].get("validation_fraction"), task["name"])
    if cfg["privacy"].get("enabled"):  # a loss that couples the patients of a batch (Cox): refused before anything
        task_for(task["name"], task["num_outputs"], task.get("options")).check_dp()
    model = build_study_model(cfg["model"], n_features, int(cfg["seed"]), n_outputs=task["num_outputs"])
    initial = get_arrays(model)
    check_model_size(cfg, sum(a.size for a in initial.values()))
    save_npz(run_dir / "initial_model.npz", initial)

    study_id = to_hex(sha256(b"fedledger-study" + config_hash(cfg) + secrets.token_bytes(16)))
    spec: dict[str, Any] = {
        "format": "fedledger-study-v1",
        "study_id": study_id,
        "run_dir": str(run_dir),
        "config": cfg,
        "config_hash": to_hex(config_hash(cfg)),
        "initial_model": str(run_dir / "initial_model.npz"),
        "initial_model_hash": to_hex(model_hash(initial)),
        "n_features": int(n_features),
        "task": task,
        "model_source_hash": own_source,  # model=own: sha256 of its module file (docs/HASHES.md 3b); else None
        "hospitals": [],
        "keys": {},
        "chain": None,
    }
    keys_dir = secrets_dir(run_dir) / "keys"  # never inside the run dir handed to the auditor
    if cfg["encryption"]["enabled"]:
        spec["keys"] = ckks_keys(cfg, run_dir, keys_dir)
    spec["protocol_hash"] = to_hex(protocol_hash(round_task(spec)))  # registered on chain as configHash
    counts = {h.hospital_id: (h.n_train, h.n_test) for h in hospitals}
    for i, hid in enumerate(ids):
        entry: dict[str, Any] = {
            "id": hid,
            "index": i,
            "n_train": counts.get(hid, (None, None))[0],  # None: the coordinator read no data
            "n_test": counts.get(hid, (None, None))[1],
            "budget": hospital_budget(cfg, hid),
            "secret_context": spec["keys"].get("secret_context"),
        }
        if hid in (hospital_addresses or {}):
            entry["address"] = to_checksum_address(hospital_addresses[hid])  # type: ignore[index]
            entry["own_key"] = True
        if hid in policies:
            entry["policy"] = policies[hid]
        spec["hospitals"].append(entry)
    prepared = PreparedStudy(run_dir / "study.json", spec, hospitals)
    if cfg["ledger"]["backend"] != "none":
        prepared.chain = setup_chain(cfg, spec, keys_dir)
    prepared.spec_path.write_text(json.dumps(spec, indent=1))
    return prepared
