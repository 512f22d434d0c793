"""`fedledger provision <study_dir> ...`: a study for Flower's Deployment Engine (see docs/DEPLOYMENT.md)."""

from __future__ import annotations

import argparse
import sys

from coordinator.credentials import secrets_dir
from coordinator.provision import parse_hospitals, provision_study
from ledger.chains import ChainError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("provision", help="provision a study for SuperLink + one SuperNode per hospital")
    p.add_argument(
        "study_dir",
        help="new directory for the study (aggregator side); keys and hospitals/<id>/ bundles go to <study_dir>.secrets/",
    )
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--hospitals", help="id=path.csv,... : one CSV per hospital (dataset=csv)")
    data.add_argument(
        "--builtin",
        type=int,
        metavar="N",
        help="N hospitals on built-in data: breast cancer, or dataset=diabetes among the overrides",
    )
    p.add_argument("--schema", help="CSV schema (YAML) for --hospitals; default: conf/dataset/csv.yaml's")
    p.add_argument(
        "--hospital-data-dir",
        help="directory where each hospital sees its own CSV (e.g. /data in the "
        "hospital container); default: the path given in --hospitals",
    )
    p.add_argument(
        "--ledger",
        default="anvil",
        choices=("anvil", "rpc", "none"),
        help="anvil: a local chain, stopped after setup and served by deploy/run_chain.sh; rpc: --rpc-url",
    )
    p.add_argument(
        "--rpc-url", help="--ledger rpc: the chain's JSON-RPC URL (aggregator key in $FEDLEDGER_AGGREGATOR_KEY)"
    )
    p.add_argument(
        "--chain-url",
        help="the chain URL the aggregator and hospitals use during the study "
        "(default: the URL used while provisioning), e.g. http://anvil:8545",
    )
    p.add_argument("--superlink", default="127.0.0.1:9093", help="SuperLink address host:port (default 127.0.0.1:9093)")
    p.add_argument("--tls", action="store_true", help="create a study CA and the SuperLink's TLS certificate")
    p.add_argument("--tls-host", action="append", default=[], help="extra host name/IP for the certificate")
    p.add_argument("--auth", action="store_true", help="SuperNode authentication: a key pair per hospital + allow-list")
    p.add_argument("--join-timeout", type=float, help="seconds the ServerApp waits for all hospitals (default 120)")
    p.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, right after study_dir: e.g. num_rounds=5 privacy=off encryption=ckks",
    )
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    try:
        hospitals = parse_hospitals(args.hospitals) if args.hospitals else None
        prov = provision_study(
            args.study_dir,
            args.overrides,
            hospitals=hospitals,
            builtin=args.builtin,
            schema=args.schema,
            ledger=args.ledger,
            rpc_url=args.rpc_url,
            chain_url=args.chain_url,
            tls=args.tls,
            auth=args.auth,
            superlink_address=args.superlink,
            tls_hosts=args.tls_host,
            join_timeout_s=args.join_timeout,
            hospital_data_dir=args.hospital_data_dir,
        )
    except (ValueError, FileExistsError, FileNotFoundError, ChainError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    spec = prov.spec
    print(f"study {spec['study_id']} provisioned in {prov.study_dir}")
    print(f"  spec          {prov.study_dir / 'study.json'}  ({prov.study_dir}: no secrets, the auditor's copy)")
    print(f"  secrets       {secrets_dir(prov.study_dir)}  (keys: never hand this directory over)")
    print(
        f"  superlink     {prov.superlink_address} ({'TLS' if prov.tls else 'insecure'}"
        f"{', SuperNode auth' if prov.auth else ''})"
    )
    if spec.get("chain"):
        print(f"  chain         {prov.chain_url} contract {spec['chain']['contract']}")
    for hid, d in prov.hospitals.items():
        print(f"  hospital      {hid}: give {d} (see its README.md) to that hospital only")
    print(
        "next: deploy/run_chain.sh, deploy/run_superlink.sh, deploy/run_hospital.sh, deploy/run_study.sh "
        "(docs/DEPLOYMENT.md)"
    )
    return 0
