"""`fedledger audit`: verify a study from the chain (and optionally its artifact store).

    fedledger audit --rpc URL --contract ADDRESS --study ID [--artifacts DIR] [--context FILE]
                    [--from-block N] [--json FILE] [--html FILE]
                    [--receipts DIR_OR_FILE ...] [--require-evidence-chain]
    fedledger audit --run-dir DIR            # reads DIR/study.json, reopens a local anvil
    fedledger audit ... --follow [--alert-share 0.8] [--poll-interval S] [--max-polls N]
                                 # with --artifacts or --run-dir, also alerts on hospitals' refusals

Exit code: 0 when every check holds, 1 when any fails (each failing round,
hospital and check is printed), 2 when the audit could not run (chain not
reachable, study unknown, bad arguments).
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from ledger.audit.follow import follow
from ledger.audit.receipt_checks import evidence_findings
from ledger.audit.report import print_report, write_html, write_json
from ledger.audit.run_dir import (
    find_context,
    mark_coordinator_chain,
    open_run_dir_chain,
    rpc_w3,
    run_audit,
    study_spec,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "audit",
        help="verify a study's history from the chain (no secret key needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("where the study is")
    src.add_argument("--run-dir", type=Path, help="a study's run directory (study.json, artifact store, anvil state)")
    src.add_argument("--rpc", help="JSON-RPC URL of the chain")
    src.add_argument("--contract", help="StudyLedger contract address")
    src.add_argument("--study", help="study id (0x + 64 hex)")
    src.add_argument(
        "--from-block", type=int, default=None, help="block to read events from (default: deploy block or 0)"
    )
    src.add_argument("--artifacts", type=Path, help="artifact store to check against the chain (a run directory)")
    src.add_argument(
        "--context",
        type=Path,
        help="the aggregator's PUBLIC CKKS context (default: <artifacts>/keys/ckks/aggregator_public.ctx)",
    )
    out = p.add_argument_group("reports")
    out.add_argument("--json", type=Path, help="write the JSON verdict here (run-dir default: DIR/audit.json)")
    out.add_argument("--html", type=Path, help="write the HTML report here (run-dir default: DIR/audit.html)")
    out.add_argument("--no-resum", action="store_true", help="skip re-summing the stored ciphertexts")
    out.add_argument(
        "--reference-signatures",
        action="store_true",
        help="recover every signer with fedledger.commitment.recover_signer (slower)",
    )
    ev = p.add_argument_group("evidence the coordinator cannot rewrite")
    ev.add_argument(
        "--receipts",
        type=Path,
        nargs="+",
        help="hospitals' round receipts (files, or directories of *.jsonl): FAIL where the chain contradicts one",
    )
    ev.add_argument(
        "--require-evidence-chain",
        action="store_true",
        help="FAIL when the RPC answers cheat methods (anvil_*, hardhat_*); without it a notice",
    )
    fol = p.add_argument_group("watch mode (regulators)")
    fol.add_argument("--follow", action="store_true", help="poll for new rounds, print each, alert on problems")
    fol.add_argument(
        "--alert-share",
        type=float,
        default=0.8,
        help="alert when a hospital has spent this share of its epsilon budget (default 0.8)",
    )
    fol.add_argument("--poll-interval", type=float, default=5.0, help="seconds between polls (default 5)")
    fol.add_argument("--max-polls", type=int, default=None, help="stop after N polls (default: run until Ctrl-C)")
    fol.add_argument(
        "--member",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an address that may request statistics queries besides the aggregator and hospitals (repeatable)",
    )
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    console = Console()
    try:
        with ExitStack() as stack:
            spec = None
            store = args.artifacts
            if args.run_dir is not None:
                spec = study_spec(args.run_dir)
                w3 = open_run_dir_chain(args.run_dir, spec, stack) if not args.rpc else rpc_w3(args.rpc)
                contract = args.contract or spec["chain"]["contract"]
                study = args.study or spec["study_id"]
                from_block = (
                    args.from_block if args.from_block is not None else int(spec["chain"].get("deploy_block") or 0)
                )
                store = store or args.run_dir
                json_path = args.json or args.run_dir / "audit.json"
                html_path = args.html or args.run_dir / "audit.html"
            else:
                if not (args.rpc and args.contract and args.study):
                    console.print("[red]error[/]: give --run-dir DIR, or --rpc URL --contract ADDRESS --study ID")
                    return 2
                w3, contract, study = rpc_w3(args.rpc), args.contract, args.study
                from_block = args.from_block or 0
                json_path, html_path = args.json, args.html
            if args.follow and (args.receipts or args.require_evidence_chain):
                console.print("[red]error[/]: --receipts and --require-evidence-chain audit once; not with --follow")
                return 2
            if args.follow:
                return follow(
                    w3,
                    contract,
                    study,
                    console,
                    alert_share=args.alert_share,
                    poll_interval=args.poll_interval,
                    max_polls=args.max_polls,
                    from_block=from_block,
                    store=store,
                    members=tuple(args.member),
                )
            result = run_audit(
                w3,
                contract,
                study,
                store=store,
                context_bytes=find_context(store, spec, args.context),
                from_block=from_block,
                resum=not args.no_resum,
                reference_signatures=args.reference_signatures,
            )
            result.findings += evidence_findings(w3, result.view, args.receipts, args.require_evidence_chain)
            if spec is not None:
                mark_coordinator_chain(result, spec, receipts=bool(args.receipts))
    except Exception as exc:
        console.print(f"[bold red]AUDIT ERROR[/]: {type(exc).__name__}: {exc}")
        return 2
    print_report(result, console)
    if json_path:
        write_json(result, json_path)
    if html_path:
        write_html(result, html_path, alert_share=args.alert_share)
    if json_path or html_path:
        console.print("reports: " + "  ".join(str(p) for p in (json_path, html_path) if p))
    return 0 if result.ok else 1
