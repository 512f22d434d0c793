"""Audit entry points: a chain given by hand (:func:`run_audit`) or a finished study's run directory.

A run directory's study.json names the chain backend; the chain is reached
live (a running node, the in-process registry) or by reopening a copy of the
anvil state kept in DIR/chain/, so the audit never writes into the evidence.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from ledger.audit.auditor import audit
from ledger.audit.events import read_chain_view
from ledger.audit.report import print_report, write_html, write_json
from ledger.audit.result import FORMAT, AuditResult
from ledger.chains import STATE_FILE, reopen_anvil
from ledger.local_registry import lookup
from ledger.rpc import http_w3, rpc_answers

AGGREGATOR_CONTEXT = Path("keys") / "ckks" / "aggregator_public.ctx"
RPC_TIMEOUT_S = 30
LOCAL_BACKENDS = ("anvil", "eth_tester")
#: What a coordinator-run chain's audit is checked against; extend as evidence the coordinator cannot rewrite is added.
LOCAL_CHAIN_PROVES = ["the hospitals' signatures"]
LOCAL_CHAIN_SCOPE = (
    "this study's chain ({backend}) was run by the study coordinator, not by an independent party: "
    "the audit proves integrity only against {proves}, not against an independent chain "
    "(whoever runs a local chain can rebuild it; docs/AUDIT.md 'What the audit proves and what it does not')"
)


class AuditSetupError(RuntimeError):
    """The audit cannot start (no chain, no study spec, ...)."""


def study_spec(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "study.json"
    if not path.exists():
        raise AuditSetupError(f"{path} not found: is {run_dir} a FedLedger run directory?")
    spec = json.loads(path.read_text())
    if not (spec.get("chain") or {}).get("contract"):
        raise AuditSetupError(f"{path} records no chain (ledger backend 'none'?): nothing to audit on chain")
    return spec


def rpc_w3(url: str) -> Any:
    return http_w3(url, timeout=RPC_TIMEOUT_S)


def _has_code(w3: Any, contract: str) -> bool:
    try:
        return len(w3.eth.get_code(w3.to_checksum_address(contract))) > 0
    except Exception:
        return False


def open_run_dir_chain(run_dir: Path, spec: dict[str, Any], stack: ExitStack) -> Any:
    """A web3 handle on the study's chain: live registry (eth_tester), a running node, or the anvil state file.

    The anvil state is copied to a temporary directory before reopening, so
    the audit never writes into the evidence it checks.
    """
    chain = spec["chain"]
    backend = chain.get("backend")
    contract = chain["contract"]
    if backend == "eth_tester":
        live = lookup(contract)
        if live is None:
            raise AuditSetupError(
                "this study ran on an in-process eth_tester chain that no longer exists; "
                "audit it from the process that ran it, or use the anvil backend"
            )
        return live.w3
    url = chain.get("rpc_url")
    if url and backend == "rpc":
        w3 = rpc_w3(url)
        if not _has_code(w3, contract):
            raise AuditSetupError(f"no StudyLedger at {contract} on {url}")
        return w3
    if backend == "anvil":
        if url and rpc_answers(url, 0.3):
            w3 = rpc_w3(url)
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


def mark_coordinator_chain(result: AuditResult, spec: dict[str, Any], receipts: bool = False) -> None:
    """Say plainly (terminal, JSON, HTML) when the chain is one the coordinator ran itself.

    ``receipts``: the hospitals' receipts were checked too (``--receipts``).
    """
    backend = (spec.get("chain") or {}).get("backend")
    if backend not in LOCAL_BACKENDS:
        return
    against = LOCAL_CHAIN_PROVES + (["the hospitals' receipts"] if receipts else [])
    result.view.notices.insert(0, LOCAL_CHAIN_SCOPE.format(backend=backend, proves=" and ".join(against)))
    result.meta["evidence_scope"] = {
        "chain": "coordinator-run local chain",
        "backend": backend,
        "integrity_against": against,
        "not_against": "an independent chain",
    }


def run_audit(
    w3: Any,
    contract: str,
    study_id: str | bytes,
    *,
    store: Path | None = None,
    context_bytes: bytes | None = None,
    from_block: int = 0,
    resum: bool = True,
    reference_signatures: bool = False,
) -> AuditResult:
    view = read_chain_view(w3, contract, study_id, from_block=from_block)
    return audit(view, store, context_bytes, resum=resum, reference_signatures=reference_signatures)


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
    run_dir = Path(run_dir)
    console = console or Console()
    json_path = json_path or run_dir / "audit.json"
    html_path = html_path or run_dir / "audit.html"
    try:
        spec = study_spec(run_dir)
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
            mark_coordinator_chain(result, spec)
    except Exception as exc:  # the launcher must get a verdict, not a traceback
        verdict = {"format": FORMAT, "ok": False, "error": f"{type(exc).__name__}: {exc}", "failures": []}
        write_json(verdict, json_path)
        console.print(f"[bold red]AUDIT ERROR[/]: {verdict['error']}")
        return verdict
    verdict = write_json(result, json_path)
    write_html(result, html_path)
    if not quiet:
        print_report(result, console)
        console.print(f"reports: {json_path}  {html_path}")
    return verdict
