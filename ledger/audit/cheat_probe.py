"""Does the RPC the auditor reads answer cheat methods? (``--require-evidence-chain``, docs/AUDIT.md)

A chain whose node answers ``anvil_*`` or ``hardhat_*`` methods can be
rewritten by whoever reaches it (impersonated senders, state overrides,
snapshots); its history is then evidence only as far as the hospitals'
signatures and receipts reach. The probe asks harmless, read-only methods
(node information, never a snapshot or anything that changes state) and
reports those that answer: a failure when the audit requires an evidence
chain, a notice otherwise.
"""

from __future__ import annotations

from typing import Any

from ledger.audit.records import ChainView
from ledger.audit.result import Finding

CHECK = "evidence_chain"
#: Read-only methods a development node answers and a guarded or production node refuses.
PROBES = ("anvil_nodeInfo", "hardhat_metadata")


def cheat_methods_answered(w3: Any) -> list[str]:
    """The probe methods the node answers with a result (not an error)."""
    answered = []
    for method in PROBES:
        try:
            resp = w3.provider.make_request(method, [])
        except Exception:  # a provider that does not know the method raises rather than answering
            continue
        if isinstance(resp, dict) and "result" in resp and "error" not in resp:
            answered.append(method)
    return answered


def check_evidence_chain(w3: Any, view: ChainView, required: bool) -> list[Finding]:
    """A failure (``required``) or a notice when cheat methods answer; a pass when none does."""
    answered = cheat_methods_answered(w3)
    if not answered:
        return [Finding(CHECK, True, f"the RPC refuses the cheat methods probed ({', '.join(PROBES)})")]
    msg = (
        f"the RPC answers {', '.join(answered)}: a development node whose history its operator can rewrite "
        "(impersonation, state overrides, snapshots); its record is evidence only as far as the hospitals' "
        "signatures and receipts (--receipts) reach; serve it through python -m ledger.rpc_guard"
    )
    if required:
        return [Finding(CHECK, False, msg)]
    view.notices.append(msg)
    return []
