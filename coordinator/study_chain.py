"""Put a new study on the chain: deploy (or reuse) the contract, register, hospitals consent.

Used by the simulation launcher; ``fedledger provision`` does the same for a
deployment, except that each hospital consents from its own machine
(``fedledger consent``): the coordinator knows neither its row count nor, when
the hospital brought its own key, its key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from fedledger.commitment import epsilon_to_micro
from fedledger.config import release_quorum
from fedledger.hashing import from_hex, sha256, to_hex
from ledger.accounts import generate_eth_key
from ledger.chains import Chain, load_aggregator_account, start_chain
from ledger.client import LedgerClient
from ledger.local_registry import register

UNBOUNDED_MICRO = 2**64 - 1
CODE_VERSION = "fedledger-0.1.0"
REGISTER_BATCH = 200


def context_hash(spec: dict[str, Any]) -> bytes:
    """SHA-256 of the aggregator's public CKKS context (zero when the study is not encrypted)."""
    path = (spec.get("keys") or {}).get("aggregator_context")
    return sha256(Path(path).read_bytes()) if path else b"\x00" * 32


def budget_micro(budget: float | None) -> int:
    return UNBOUNDED_MICRO if budget is None else epsilon_to_micro(budget)


def cohort_cap(hospital: dict[str, Any]) -> int:
    """The cohort size a hospital registers when it consents: its training record count (the contract
    refuses a commitment claiming more; its policy states no larger bound)."""
    return int(hospital["n_train"])


def study_roles(chain: Chain, led: dict[str, Any], keys_dir: Path) -> tuple[LocalAccount, LocalAccount, Path | None]:
    """The study's admin and aggregator, and the aggregator's key file when one was written.

    An operator's key (``key_env`` / ``keystore``; always on backend ``rpc``) holds both roles;
    otherwise each study gets two fresh keys, written as secrets under ``keys_dir``. On a local
    chain they are funded from a development account, which gets no role: the contract is
    deployed from the study admin's key.
    """
    if chain.backend == "rpc":
        return chain.admin, chain.aggregator, None  # the operator's key, never a development one
    agg_key = None
    if led.get("key_env") or led.get("keystore"):
        admin = aggregator = load_aggregator_account(
            led.get("key_env"), Path(led["keystore"]) if led.get("keystore") else None
        )
    else:
        admin = generate_eth_key(keys_dir / "admin_eth_key")
        agg_key = keys_dir / "aggregator_eth_key"
        aggregator = generate_eth_key(agg_key)
    for address in dict.fromkeys([admin.address, aggregator.address]):
        chain.transfer_from_dev(address)
    chain.assign_roles(admin, aggregator)
    return admin, aggregator, agg_key


def setup_chain(cfg: dict[str, Any], spec: dict[str, Any], keys_dir: Path) -> Any:
    """Start the chain, deploy StudyLedger, register the study, record each hospital's consent."""
    led = cfg["ledger"]
    run_dir = Path(spec["run_dir"])
    chain = start_chain(
        led["backend"],
        run_dir,
        rpc_url=led.get("rpc_url"),
        key_env=led.get("key_env"),
        keystore=Path(led["keystore"]) if led.get("keystore") else None,
    )
    try:
        admin, aggregator, agg_key = study_roles(chain, led, keys_dir)
        client = LedgerClient.deploy(chain.w3, admin)
        hospitals: list[LocalAccount | None] = []
        for h in spec["hospitals"]:
            account = None
            if h.get("own_key"):  # the hospital brought its own key: the coordinator holds only its address
                h["eth_key"] = None
            else:
                account = generate_eth_key(keys_dir / h["id"] / "eth_key")
                h["eth_key"] = str(keys_dir / h["id"] / "eth_key")
                h["address"] = account.address
            if chain.backend in ("anvil", "eth_tester"):
                chain.fund(h["address"])  # gas for its consent and release signatures on a local chain
            hospitals.append(account)
        expiry = int(time.time() + float(led["expiry_days"]) * 86400)
        addresses = [h["address"] for h in spec["hospitals"]]
        budgets = [budget_micro(h["budget"]) for h in spec["hospitals"]]
        ctx_hash = context_hash(spec)
        client.register_study(
            spec["study_id"],
            from_hex(spec["protocol_hash"]),  # configHash v2: the study protocol (docs/HASHES.md)
            from_hex(spec["initial_model_hash"]),
            ctx_hash,
            CODE_VERSION,
            aggregator.address,
            expiry,
            addresses[:REGISTER_BATCH],
            budgets[:REGISTER_BATCH],
            release_quorum(led.get("release_quorum"), len(addresses)),
        )
        for start in range(REGISTER_BATCH, len(addresses), REGISTER_BATCH):  # one block cannot hold 1,000 registrations
            client.add_hospitals(
                spec["study_id"], addresses[start : start + REGISTER_BATCH], budgets[start : start + REGISTER_BATCH]
            )
        for account, h in zip(hospitals, spec["hospitals"]):
            # Without the hospital's key or its row count (a deployment reads no data), the hospital
            # consents from its own machine: `fedledger consent` (deploy/run_hospital.sh runs it).
            if account is not None and h.get("n_train") is not None:
                client.consent(spec["study_id"], account, cohort_cap(h))
        spec["chain"] = {
            "backend": chain.backend,
            "rpc_url": chain.rpc_url,
            "chain_id": client.chain_id,
            "contract": client.address,
            "deploy_block": client.deploy_block,
            "admin": admin.address,
            "aggregator": aggregator.address,
            "aggregator_key": str(agg_key) if agg_key else None,
            "key_env": led.get("key_env"),
            "keystore": led.get("keystore"),
            "record_timeout_s": float(led["record_timeout_s"]),
            "context_hash": to_hex(ctx_hash),
            "expiry": expiry,
        }
        if chain.backend == "eth_tester":
            register(client.address, chain)
        return chain
    except BaseException:
        chain.stop()
        raise
