"""Run every check over a :class:`ChainView`, in report order; the artifact checks when a store is given."""

from __future__ import annotations

import time
from pathlib import Path

from ledger.audit.artifacts import check_artifacts, check_context, load_public_context
from ledger.audit.chain_checks import check_hash_chain, check_participants, check_privacy, check_study, epsilon_table
from ledger.audit.checkpoints import check_checkpoints
from ledger.audit.epsilon_checks import check_epsilon_accounting
from ledger.audit.merkle_checks import attach_merkle_leaves
from ledger.audit.queries import check_queries
from ledger.audit.records import ZERO32, ChainView
from ledger.audit.refusals import store_refusals
from ledger.audit.result import AuditResult, Finding
from ledger.audit.secret_scan import check_secrets
from ledger.audit.start_model import check_start_model
from ledger.audit.store import StoreReader, learn_labels


def audit(
    view: ChainView,
    store_dir: Path | None = None,
    context_bytes: bytes | None = None,
    resum: bool = True,
    reference_signatures: bool = False,
) -> AuditResult:
    """Run every check; artifact checks only when ``store_dir`` is given."""
    t0 = time.perf_counter()
    merkle_findings: list[Finding] = []
    if store_dir is not None:
        merkle_findings = attach_merkle_leaves(view, Path(store_dir))
        learn_labels(view, Path(store_dir))
    elif any(rv.mode == 2 for rv in view.rounds):
        view.notices.append(
            "Merkle-mode rounds: their commitments are only in the artifact store; without it "
            "signatures, consent and budgets of those rounds are not checked"
        )
    findings = (
        merkle_findings
        + check_study(view)
        + check_hash_chain(view)
        + check_participants(view, reference_signatures)
        + check_start_model(view)
        + check_privacy(view)
    )
    findings += check_queries(view)
    accounting = check_epsilon_accounting(view, Path(store_dir) if store_dir is not None else None)
    findings += accounting.findings
    if store_dir is not None:
        store_dir = Path(store_dir)
        store = StoreReader(store_dir)
        encrypted = (
            any(bool((store.manifest(r) or {}).get("encrypted")) for r in store.round_numbers()[:1])
            or view.context_hash != ZERO32
        )
        findings += check_secrets(store_dir)  # evidence holding a key is refused, whatever else it proves
        findings += check_context(view, context_bytes, encrypted)
        ctx = None
        if context_bytes is not None:
            try:
                ctx = load_public_context(context_bytes)
            except Exception as exc:
                findings.append(Finding("context", False, f"public context does not load: {exc}"))
        findings += check_artifacts(view, store_dir, ctx, resum)
        findings += check_checkpoints(view, store_dir)
    result = AuditResult(view, findings, epsilon_table(view), store_dir is not None, time.perf_counter() - t0)
    result.meta["epsilon_accounting"] = accounting.to_json()
    if store_dir is not None:
        refusals = store_refusals(Path(store_dir))
        view.notices.extend(r.notice() for r in refusals)
        result.meta["refusals"] = [r.to_json() for r in refusals]
    return result
