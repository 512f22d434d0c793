"""`fedledger audit`: verify a study from the chain (and optionally its artifact store).

    fedledger audit --rpc URL --contract ADDRESS --study ID [--artifacts DIR] [--context FILE]
                    [--from-block N] [--json FILE] [--html FILE]
    fedledger audit --run-dir DIR            # reads DIR/study.json, reopens a local anvil
    fedledger audit ... --follow [--alert-share 0.8] [--poll-interval S] [--max-polls N]

Exit code: 0 when every check holds, 1 when any fails (each failing round,
hospital and check is printed), 2 when the audit could not run (chain not
reachable, study unknown, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ledger import audit as A
from ledger.audit_report import print_report, write_html, write_json

AGGREGATOR_CONTEXT = Path("keys") / "ckks" / "aggregator_public.ctx"


class AuditSetupError(RuntimeError):
    """The audit cannot start (no chain, no study spec, ...)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
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
    p.set_defaults(handler=handle)
    return p


# ------------------------------------------------------------------------------ chain access


def _study_spec(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "study.json"
    if not path.exists():
        raise AuditSetupError(f"{path} not found: is {run_dir} a FedLedger run directory?")
    spec = json.loads(path.read_text())
    if not (spec.get("chain") or {}).get("contract"):
        raise AuditSetupError(f"{path} records no chain (ledger backend 'none'?): nothing to audit on chain")
    return spec


def _rpc_w3(url: str):
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))


def _has_code(w3, contract: str) -> bool:
    try:
        return len(w3.eth.get_code(w3.to_checksum_address(contract))) > 0
    except Exception:
        return False


def open_run_dir_chain(run_dir: Path, spec: dict[str, Any], stack: ExitStack):
    """A web3 handle on the study's chain: live registry (eth_tester), a running node, or the anvil state file.

    The anvil state is copied to a temporary directory before reopening, so
    the audit never writes into the evidence it checks.
    """
    chain = spec["chain"]
    backend = chain.get("backend")
    contract = chain["contract"]
    if backend == "eth_tester":
        from ledger.local_registry import lookup

        live = lookup(contract)
        if live is None:
            raise AuditSetupError(
                "this study ran on an in-process eth_tester chain that no longer exists; "
                "audit it from the process that ran it, or use the anvil backend"
            )
        return live.w3
    url = chain.get("rpc_url")
    if url and backend == "rpc":
        w3 = _rpc_w3(url)
        if not _has_code(w3, contract):
            raise AuditSetupError(f"no StudyLedger at {contract} on {url}")
        return w3
    if backend == "anvil":
        from ledger.chains import STATE_FILE, reopen_anvil
        from ledger.rpc import rpc_answers

        if url and rpc_answers(url, 0.3):
            w3 = _rpc_w3(url)
            if _has_code(w3, contract):
                return w3
        state = Path(run_dir) / "chain" / STATE_FILE
        if not state.exists():
            raise AuditSetupError(f"no anvil state at {state}: was the chain stopped cleanly?")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedledger-audit-")))
        (tmp / "chain").mkdir()
        shutil.copy2(state, tmp / "chain" / STATE_FILE)
        reopened = reopen_anvil(tmp)
        stack.callback(reopened.stop)
        if not _has_code(reopened.w3, contract):
            raise AuditSetupError(f"the reopened anvil state has no contract at {contract}")
        return reopened.w3
    raise AuditSetupError(f"cannot reach the chain of backend {backend!r}")


def find_context(store: Path | None, spec: dict[str, Any] | None, explicit: Path | None) -> bytes | None:
    candidates = [explicit] if explicit else []
    if store is not None:
        candidates.append(Path(store) / AGGREGATOR_CONTEXT)
    if spec and (spec.get("keys") or {}).get("aggregator_context"):
        candidates.append(Path(spec["keys"]["aggregator_context"]))
    for c in candidates:
        if c is not None and Path(c).is_file():
            return Path(c).read_bytes()
    return None


# ------------------------------------------------------------------------------ entry points


def run_audit(
    w3,
    contract: str,
    study_id: str | bytes,
    *,
    store: Path | None = None,
    context_bytes: bytes | None = None,
    from_block: int = 0,
    resum: bool = True,
    reference_signatures: bool = False,
) -> A.AuditResult:
    view = A.read_chain_view(w3, contract, study_id, from_block=from_block)
    return A.audit(view, store, context_bytes, resum=resum, reference_signatures=reference_signatures)


def audit_run_dir(
    run_dir: Path,
    console: Any = None,
    *,
    json_path: Path | None = None,
    html_path: Path | None = None,
    w3: Any = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Audit a finished study from its run directory; write DIR/audit.json and DIR/audit.html.

    Returns the JSON verdict (key ``ok``). Never raises for an audit that
    cannot run: the verdict then has ``ok: False`` and ``error``.
    """
    from rich.console import Console

    run_dir = Path(run_dir)
    console = console or Console()
    json_path = json_path or run_dir / "audit.json"
    html_path = html_path or run_dir / "audit.html"
    try:
        spec = _study_spec(run_dir)
        with ExitStack() as stack:
            w3 = w3 or open_run_dir_chain(run_dir, spec, stack)
            result = run_audit(
                w3,
                spec["chain"]["contract"],
                spec["study_id"],
                store=run_dir,
                context_bytes=find_context(run_dir, spec, None),
                from_block=int(spec["chain"].get("deploy_block") or 0),
            )
    except Exception as exc:  # the launcher must get a verdict, not a traceback
        verdict = {"format": A.FORMAT, "ok": False, "error": f"{type(exc).__name__}: {exc}", "failures": []}
        write_json(verdict, json_path)
        console.print(f"[bold red]AUDIT ERROR[/]: {verdict['error']}")
        return verdict
    verdict = write_json(result, json_path)
    write_html(result, html_path)
    if not quiet:
        print_report(result, console)
        console.print(f"reports: {json_path}  {html_path}")
    return verdict


def handle(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    try:
        with ExitStack() as stack:
            spec = None
            store = args.artifacts
            if args.run_dir is not None:
                spec = _study_spec(args.run_dir)
                w3 = open_run_dir_chain(args.run_dir, spec, stack) if not args.rpc else _rpc_w3(args.rpc)
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
                w3, contract, study = _rpc_w3(args.rpc), args.contract, args.study
                from_block = args.from_block or 0
                json_path, html_path = args.json, args.html
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


# ------------------------------------------------------------------------------ watch mode


def follow(
    w3,
    contract: str,
    study: str,
    console: Any,
    *,
    alert_share: float = 0.8,
    poll_interval: float = 5.0,
    max_polls: int | None = None,
    from_block: int = 0,
) -> int:
    """Poll the chain; print each newly recorded round; alert on failed checks, budget share, odd events.

    Returns 1 if any alert was raised, else 0 (when ``max_polls`` ends the watch).
    """
    from ledger.client import LedgerClient

    client = LedgerClient.at(w3, contract, deploy_block=from_block, max_attempts=3)
    seen_rounds: set[int] = set()
    seen_notices: set[str] = set()
    share_alerted: set[str] = set()
    alerts = 0
    polls = 0
    console.print(f"following study {str(study)[:18]}.. on {contract} (alert at {alert_share:.0%} of a budget)")
    try:
        while max_polls is None or polls < max_polls:
            polls += 1
            view = A.read_chain_view(w3, contract, study, from_block=from_block, client=client)
            view.notices += _role_notices(client, from_block)
            result = A.audit(view)
            by_round = {}
            for f in result.failures:
                by_round.setdefault(f.round, []).append(f)
            for rv in sorted(view.rounds, key=lambda x: x.round):
                if rv.round in seen_rounds:
                    continue
                seen_rounds.add(rv.round)
                bad = by_round.get(rv.round, [])
                console.print(
                    f"round {rv.round}: block {rv.block}, {len(rv.commitments)} hospitals, "
                    f"{rv.total_samples} samples, aggregate {A.to_hex(rv.aggregate_hash)[:18]}.. "
                    + ("[green]ok[/]" if not bad else "[bold red]FAIL[/]")
                )
                for f in bad:
                    alerts += 1
                    console.print(f"[bold red]ALERT[/] round {f.round} {f.hospital or ''} {f.check}: {f.message}")
            for f in by_round.get(None, []):
                key = f"{f.check}:{f.message}"
                if key not in seen_notices:
                    seen_notices.add(key)
                    alerts += 1
                    console.print(f"[bold red]ALERT[/] study {f.check}: {f.message}")
            for addr, eps in result.epsilon.items():
                hv = view.hospitals.get(addr)
                if not eps or hv is None or hv.budget_micro >= 2**64 - 1 or addr in share_alerted:
                    continue
                spent = max(eps.values())
                budget = hv.budget_micro / 1e6
                if budget > 0 and spent >= alert_share * budget:
                    share_alerted.add(addr)
                    alerts += 1
                    console.print(
                        f"[bold yellow]ALERT[/] hospital {view.label(addr)} has spent epsilon {spent:.3f}, "
                        f"{spent / budget:.0%} of its budget {budget:.3f}"
                    )
            for n in view.notices:
                if n not in seen_notices:
                    seen_notices.add(n)
                    alerts += 1
                    console.print(f"[bold yellow]ALERT[/] unexpected event: {n}")
            if max_polls is not None and polls >= max_polls:
                break
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        console.print("stopped")
    console.print(f"followed {len(seen_rounds)} rounds over {polls} polls, {alerts} alert(s)")
    return 1 if alerts else 0


def _role_notices(client, from_block: int) -> list[str]:
    """Access-control changes after deployment are outside a study's normal flow.

    ``from_block`` is the deployment block when known (a run dir's ``deploy_block``,
    ``--from-block``). When it is 0 (``--rpc`` without ``--from-block``) the deployment
    block is the contract's first ``RoleGranted`` (its constructor's grant to the
    deployer), so that grant is not reported as an unexpected event.
    """
    logs = {}
    for name in ("RoleGranted", "RoleRevoked"):
        try:
            logs[name] = client.events(name, None, from_block)
        except Exception:
            logs[name] = []
    deploy_block = from_block
    if from_block == 0 and logs["RoleGranted"]:
        deploy_block = min(ev["blockNumber"] for ev in logs["RoleGranted"])
    out = []
    for name, evs in logs.items():
        for ev in evs:
            if ev["blockNumber"] > deploy_block:
                a = ev["args"]
                out.append(
                    f"block {ev['blockNumber']}: {name} role 0x{bytes(a['role']).hex()[:8]}.. account {a['account']}"
                )
    return out
