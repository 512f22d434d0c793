"""The `fedledger` console script. Each subcommand lives in its own module and registers here."""

from __future__ import annotations

import argparse
import sys

from coordinator import keys_cli, provision_cli
from fl_client import check_data, consent
from ledger.audit import cli as audit_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedledger")
    sub = parser.add_subparsers(dest="command", required=True)
    keys_cli.add_parser(sub)
    provision_cli.add_parser(sub)
    audit_cli.add_parser(sub)
    check_data.add_parser(sub)
    consent.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
