"""One descriptive-statistics study end to end, in process: hospitals, CKKS, the chain, Table 1, Kaplan-Meier.

Each hospital answers the query on its own rows (``fl_client.stats.site``:
suppress, charge its privacy account, add noise, encrypt under the study's
CKKS key, sign its charge); the aggregator sums the ciphertexts with the
public context only (``fl_server.stats_aggregate``); a key holder decrypts
the pooled vector for release (per-site vectors only when the registered
protocol's ``privacy.stats_per_site`` allows it); the aggregator records the
query with every signed charge on the StudyLedger; the auditor reads the
record back and checks it, and the regulator's query alerts are evaluated.
No Flower: a statistics round is one message each way.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from experiments.km_plot import plot_km
from experiments.stats_figures import exact_frame_figures, km_curves, km_dp_band, merge_tables, noisy_table
from experiments.table1 import write_table1
from fedledger.ckks import (
    create_keys,
    load_aggregator_context,
    load_secret_context,
    params_from_config,
)
from fedledger.commitment import epsilon_to_micro
from fedledger.hashing import to_hex
from fedledger.protocol import protocol_hash
from fedledger.query_charge import sign_request
from fedledger.stats.calibration import calibrate
from fedledger.stats.layout import vector_size
from fedledger.stats.query import StatsQuery
from fedledger.study_task import round_task
from fl_client.accounting import PrivacyAccount
from fl_client.data.csv_schema import load_schema
from fl_client.stats.data import builtin_hospitals, csv_hospitals
from fl_client.stats.noise import fresh_rng
from fl_client.stats.release import decrypt_statistics
from fl_client.stats.site import answer_query
from fl_server.stats_aggregate import sum_answers
from ledger.audit.auditor import audit
from ledger.audit.events import read_chain_view
from ledger.audit.query_alerts import query_alerts
from ledger.chains import start_chain
from ledger.client import LedgerClient

log = logging.getLogger("fedledger.stats")
REPO_ROOT = Path(__file__).resolve().parent.parent
STATS_KEYS = {"source", "label", "purpose", "show_exact", "repeats", "query"}
QUERY_SETTINGS = ("mechanism", "epsilon", "delta", "min_cell", "per_site")


def stats_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg['stats']``, or conf/stats/<dataset name>.yaml when the study names none; unknown keys refused."""
    st = cfg.get("stats")
    if not st:
        name = str(cfg["dataset"].get("name"))
        path = REPO_ROOT / "conf" / "stats" / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"no statistics settings for dataset {name!r}: pass stats=<name> (conf/stats)")
        st = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(st, dict)
    unknown = sorted(set(st) - STATS_KEYS - set(QUERY_SETTINGS))
    if unknown:
        raise ValueError(f"unknown stats setting(s) {unknown}; allowed: {sorted(STATS_KEYS | set(QUERY_SETTINGS))}")
    return st


def _path(p: str, base: str | None) -> Path:
    for root in [base, os.getcwd(), str(REPO_ROOT)]:
        if root and (Path(root) / p).exists():
            return Path(root) / p
    return Path(p)


def load_sites(cfg: dict[str, Any], st: dict[str, Any]) -> tuple[list[tuple[str, pd.DataFrame]], StatsQuery]:
    """The hospitals' raw rows and the query (from the settings, or the CSV schema's stats section)."""
    ds = cfg["dataset"]
    source = st.get("source", "study")
    if source == "study" and ds.get("name") == "csv":
        schema_path = _path(str(ds["schema"]), ds.get("base_dir"))
        entries = [{"id": h["id"], "path": str(_path(str(h["path"]), ds.get("base_dir")))} for h in ds["hospitals"]]
        sites = csv_hospitals(schema_path, entries)
        spec = st.get("query") or load_schema(schema_path).stats
        if not spec:
            raise ValueError(f"{schema_path}: no stats section (declare ranges and bins, docs/STATS.md)")
    else:
        name = str(ds.get("name")) if source == "study" else str(source)
        sites = builtin_hospitals(name, int(cfg["num_hospitals"]), int(cfg["seed"]), str(st.get("label")))
        spec = st.get("query")
    if not spec:
        raise ValueError("the stats settings hold no query")
    spec = {**{k: st[k] for k in QUERY_SETTINGS if k in st}, **spec}
    return sites, StatsQuery.from_mapping(spec)


def _budget(cfg: dict[str, Any], hospital: str) -> float | None:
    b = (cfg.get("budgets") or {}).get(hospital, cfg["privacy"].get("budget"))
    return None if b is None else float(b)


def _accounts(cfg: dict[str, Any], sites: list[tuple[str, pd.DataFrame]], study_id: str) -> dict[str, PrivacyAccount]:
    """Each hospital's privacy account for this study, as training would build it (the budget is shared)."""
    train = cfg["train"]
    accounts = {
        hid: PrivacyAccount(
            cfg["privacy"],
            max(len(df), 1),
            int(train["batch_size"]),
            int(cfg["num_rounds"]),
            int(train["local_epochs"]),
            budget=_budget(cfg, hid),
        )
        for hid, df in sites
    }
    for acc in accounts.values():
        acc.study_id = study_id  # the saved state names its study: another study's account refuses it
    return accounts


def _chain_study(
    cfg: dict[str, Any], run_dir: Path, spec: dict[str, Any], sites: list[tuple[str, pd.DataFrame]]
) -> dict[str, Any]:
    """Start the chain, deploy, register the study (configHash: the protocol hash), hospitals consent."""
    chain = start_chain(cfg["ledger"]["backend"], run_dir)
    if chain is None:
        raise ValueError("a statistics study records its queries on chain: ledger.backend none is not supported")
    client = LedgerClient.deploy(chain.w3, chain.admin)
    hospitals = chain.funded_accounts[2 : 2 + len(sites)]
    if len(hospitals) < len(sites):
        raise ValueError(f"the chain has funded accounts for {len(hospitals)} hospitals, not {len(sites)}")
    spec["chain"] = {"contract": client.address, "chain_id": chain.chain_id}
    task = round_task(spec)
    budgets = [epsilon_to_micro(b) if (b := _budget(cfg, hid)) is not None else 2**64 - 1 for hid, _ in sites]
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    sid = bytes.fromhex(spec["study_id"][2:])
    client.register_study(
        sid,
        protocol_hash(task),
        b"\x00" * 32,
        spec["context_hash"],
        "fedledger-stats-0.1",
        chain.aggregator.address,
        now + 86400 * int(cfg["ledger"].get("expiry_days", 30)),
        [h.address for h in hospitals],
        budgets,
        1,
    )
    for h, (_, df) in zip(hospitals, sites):
        client.consent(sid, h, max(len(df), 1))
    return {"chain": chain, "client": client, "hospitals": hospitals, "task": task, "study_id": sid}


def run_stats_study(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Run one query over every hospital (module docstring); write the tables, the plot and stats.json."""
    t0 = time.perf_counter()
    st = stats_settings(cfg)
    sites, query = load_sites(cfg, st)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not cfg["encryption"].get("enabled"):
        raise ValueError("a statistics study sends its noisy vectors under CKKS: set encryption=ckks")
    keys = create_keys(run_dir / "keys", params_from_config(cfg["encryption"]))
    secret, public = load_secret_context(keys.secret_context), load_aggregator_context(keys.aggregator_context)
    spec = {
        "config": cfg,
        "study_id": to_hex(os.urandom(32)),
        "keys": {"fingerprint": keys.fingerprint_hex},
        "context_hash": bytes.fromhex(keys.fingerprint_hex[2:]),
    }
    onchain = _chain_study(cfg, run_dir, spec, sites)
    chain, client = onchain["chain"], onchain["client"]
    try:
        per_site_allowed = bool(onchain["task"].privacy.get("stats_per_site", False))
        accounts = _accounts(cfg, sites, spec["study_id"])
        dom = client.domain()
        answers = [
            answer_query(
                hid,
                df,
                query,
                secret_context=secret,
                account=accounts[hid],
                signer=signer,
                domain=dom,
                study_id=onchain["study_id"],
                per_site_allowed=per_site_allowed,
                rng=fresh_rng(),
            )
            for (hid, df), signer in zip(sites, onchain["hospitals"])
        ]
        for hid, acc in accounts.items():
            acc.save_state(run_dir / f"privacy_state_{hid}.json")
        pooled_ct = sum_answers(public, answers, query.hash(), vector_size(query))
        pooled = decrypt_statistics(secret, pooled_ct, query)
        # the requester signs its query and purpose: here the study's aggregator, a member of the study
        purpose, requester = str(st.get("purpose", "")), chain.aggregator.address
        asked = sign_request(chain.aggregator, dom, onchain["study_id"], query.hash(), purpose)
        receipt = client.with_account(chain.aggregator).record_query(
            onchain["study_id"],
            query.hash(),
            purpose,
            query.canonical_json().decode(),
            [a.charge for a in answers],
            [a.signature for a in answers],
            asked,
        )
        view = read_chain_view(chain.w3, client.address, onchain["study_id"], from_block=client.deploy_block)
        verdict = audit(view)
        alerts = query_alerts(view)
        out = _write_outputs(run_dir, cfg, st, query, sites, pooled, answers, secret)
    finally:
        chain.stop()
    results = {
        "query_hash": to_hex(query.hash()),
        "query": query.to_mapping(),
        "purpose": st.get("purpose"),
        "requester": requester,
        "record_tx": receipt.tx_hash,
        "contract": client.address,
        "study_id": to_hex(onchain["study_id"]),
        "config_hash": to_hex(protocol_hash(onchain["task"])),
        "hospitals": [
            {
                "id": a.hospital,
                "signer": a.signer,
                "epsilon": a.charge.epsilon_micro / 1e6,
                "total_epsilon": a.charge.total_epsilon_micro / 1e6,
                "suppression": a.suppression,
            }
            for a in answers
        ],
        "audit": {"ok": verdict.ok, "query_findings": [f.message for f in verdict.findings if f.check == "query"]},
        "alerts": alerts,
        "outputs": out,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (run_dir / "stats.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return results


def _write_outputs(
    run_dir: Path,
    cfg: dict[str, Any],
    st: dict[str, Any],
    query: StatsQuery,
    sites: list[tuple[str, pd.DataFrame]],
    pooled: np.ndarray,
    answers: list[Any],
    secret: Any,
) -> dict[str, str]:
    cal = calibrate(query)
    rng = np.random.default_rng(int(cfg["seed"]))
    reps = int(st.get("repeats", 200))
    exact = exact_frame_figures(dict(sites), query) if st.get("show_exact") else None
    tables = [noisy_table(pooled, query, cal, len(sites), rng, exact=exact, repeats=reps)]
    if query.per_site:  # every hospital accepted a per-site query, so its protocol allows it
        for a in answers:
            own = decrypt_statistics(secret, a.ciphertexts, query)
            tables.append(noisy_table(own, query, cal, 1, rng, prefix=f"{a.hospital}: ", repeats=reps))
    scale = "Laplace b" if cal.mechanism == "laplace" else "Gaussian sigma"
    meta = {
        "sites": f"{len(sites)} hospitals, pooled by CKKS (public-context sum)",
        "mechanism": f"{query.mechanism}, epsilon {query.epsilon:g} per hospital"
        + (f", delta {query.delta:g}" if query.delta else ""),
        "small cells": f"cells of fewer than {query.min_cell} records set to 0 before noise (sensitivity x{query.min_cell})",
        "noise scale": f"{scale} per hospital and cell; ± is the 95% DP-noise interval ({reps} draws)",
        "query hash": to_hex(query.hash()),
    }
    paths = {k: str(v) for k, v in write_table1(run_dir, "table1", merge_tables(*tables), meta).items()}
    if query.survival is not None:
        curves = km_curves(pooled, query)
        band = km_dp_band(pooled, query, cal, len(sites), rng)
        exact_curves = km_curves(exact, query) if exact is not None else None
        title = f"Kaplan-Meier, {len(sites)} hospitals, DP epsilon {query.epsilon:g} (band: 95% DP noise + Greenwood)"
        paths["km"] = str(plot_km(run_dir / "kaplan_meier.png", curves, band, title, exact_curves))
    return paths
