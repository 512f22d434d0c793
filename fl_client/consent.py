"""`fedledger consent`: a hospital consents to a study on chain, from its own machine, with its own key.

The coordinator registers each hospital's address but consents for none in a deployment: it
knows neither the hospital's row count (it reads no hospital data) nor, when the hospital
brought its own Ethereum key, that key. The hospital sends ``consent(studyId, maxSamples)``
itself; ``maxSamples`` is its cohort size, the training rows its own node loads (the contract
then refuses a commitment claiming more). deploy/run_hospital.sh runs this first; a hospital
that has consented already is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_client.data import load_hospital
from fl_client.data.errors import DataError
from fl_client.settings import HospitalSettings, SettingsError, from_node_config, read_node_config


@dataclass(frozen=True)
class ConsentOutcome:
    status: str  # consented (now) | already-consented | no-ledger
    address: str | None = None
    max_samples: int | None = None
    tx_hash: str | None = None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("consent", help="a hospital consents to the study on chain with its own key")
    p.add_argument("--hospital-dir", required=True, help="the directory `fedledger provision` gave this hospital")
    p.add_argument("--eth-key", help="this hospital's key file (default: eth-key of its node_config.toml)")
    p.add_argument(
        "--max-samples", type=int, help="the cohort size to register (default: the training rows of its own data)"
    )
    p.set_defaults(handler=handle)
    return p


def cohort_size(settings: HospitalSettings) -> int:
    """The training rows this hospital's node will train on: its own data, loaded as the node loads it."""
    cfg = json.loads(settings.dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `fedledger check-data` is where a hospital reads its data's notes
        if cfg.get("name") == "csv" and len(cfg.get("hospitals", [])) == 1:
            return load_hospital(cfg, 0, 1, settings.seed).n_train
        return load_hospital(cfg, settings.index, settings.num_hospitals, settings.seed).n_train


class ConsentError(ValueError):
    """The hospital cannot consent: wrong key, withdrawn, not registered."""


def consent(hospital_dir: str | Path, eth_key: str | None = None, max_samples: int | None = None) -> ConsentOutcome:
    """Consent once: read this hospital's status on chain; if it is only registered, send its consent."""
    from ledger.accounts import load_eth_account
    from ledger.client import LedgerClient
    from ledger.rpc import http_w3

    values = read_node_config(hospital_dir, check=False)
    if eth_key:
        values["eth-key"] = str(Path(eth_key).resolve())
    if not values.get("chain-rpc") or not values.get("contract"):
        return ConsentOutcome("no-ledger")
    needed = {k: values.get(k) for k in ("eth-key", "study-id")}
    settings = from_node_config(values)  # refuses a placeholder (data-path, eth-key) naming it
    if not all(needed.values()):
        missing = [k for k, v in needed.items() if not v]
        raise SettingsError(
            f"{Path(hospital_dir) / 'node_config.toml'} lacks {missing}; give --eth-key or re-provision"
        )
    account = load_eth_account(str(settings.eth_key))
    expected = values.get("eth-address")
    if expected and account.address.lower() != str(expected).lower():
        raise ConsentError(
            f"the key {settings.eth_key} is {account.address}, but the study registered {expected} for hospital "
            f"{settings.hospital_id}: use the key whose address you gave the coordinator"
        )
    client = LedgerClient.at(http_w3(str(settings.chain_rpc)), str(settings.contract), account)
    study_id = str(values["study-id"])
    info = client.read_hospital(study_id, account.address)
    if info.status == "consented":
        return ConsentOutcome("already-consented", account.address, info.max_samples)
    if info.status != "registered":
        raise ConsentError(
            f"hospital {settings.hospital_id} ({account.address}) is '{info.status}' in study {study_id}: "
            "it cannot consent (withdrawal is final; an unregistered address was not given to the coordinator)"
        )
    n = int(max_samples) if max_samples is not None else cohort_size(settings)
    if n < 1:
        raise ConsentError(f"the cohort size must be at least 1, got {n}")
    receipt = client.consent(study_id, account, n)
    return ConsentOutcome("consented", account.address, n, receipt.tx_hash)


def handle(args: argparse.Namespace) -> int:
    from ledger.reverts import LedgerError

    try:
        out = consent(Path(args.hospital_dir), args.eth_key, args.max_samples)
    except (SettingsError, ConsentError, DataError, LedgerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if out.status == "no-ledger":
        print("this study keeps no ledger: nothing to consent to")
    elif out.status == "already-consented":
        print(f"already consented: {out.address}, cohort size {out.max_samples}")
    else:
        print(f"consented: {out.address}, cohort size {out.max_samples} (tx {out.tx_hash})")
    return 0


if __name__ == "__main__":  # deploy/run_hospital.sh: python -m fl_client.consent --hospital-dir DIR
    _parser = argparse.ArgumentParser(prog="python -m fl_client.consent")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    sys.exit(handle(_parser.parse_args(["consent", *sys.argv[1:]])))
