"""The auditor: verify a study's entire history from the chain, with no secret key.

Two halves:

* **reading** (:func:`read_chain_view`): turn the chain (StudyLedger events,
  the calldata of each ``recordRound`` transaction, block times) into a plain
  :class:`ChainView`. Nothing is trusted from the aggregator here.
* **checking** (every ``check_*`` function and :func:`audit`): pure functions
  over a :class:`ChainView` and, optionally, the run's artifact store. Each
  returns :class:`Finding` objects, one per (round, check) when the check
  holds, one per failing (round, hospital, check) when it does not, so a
  report can name exactly what broke.

Modules: ``records`` (the typed views), ``rpc_reader`` (logs, calldata and
block times over JSON-RPC), ``events`` (the study's view from them),
``signatures`` (off-chain signer recovery), ``chain_checks``, ``start_model``
(every hospital of a round trained from the same model), ``merkle_checks``, ``epsilon_checks`` (each committed epsilon against the one
the registered protocol gives), ``store`` (the artifact store, read-only), ``artifacts``
(the store against the chain), ``resum`` (the CKKS re-sum), ``checkpoints``,
``result`` (findings and the JSON verdict), ``auditor`` (:func:`audit`),
``report`` (terminal, JSON, HTML), ``run_dir`` (entry points), ``follow``
(watch mode) and ``cli`` (``fedledger audit``). docs/AUDIT.md lists every check.

The package exposes the Python API of docs/AUDIT.md, plus what the tests and
benchmarks drive directly (``SignerVerifier``, ``load_public_context``);
everything else is imported from its module.
"""

from __future__ import annotations

from ledger.audit.artifacts import check_artifacts, check_context, load_public_context
from ledger.audit.auditor import audit
from ledger.audit.chain_checks import check_hash_chain, check_participants, check_privacy, check_study
from ledger.audit.checkpoints import check_checkpoints
from ledger.audit.events import read_chain_view
from ledger.audit.records import ChainView
from ledger.audit.report import print_report, write_html, write_json
from ledger.audit.result import AuditResult, Finding
from ledger.audit.run_dir import audit_run_dir, run_audit
from ledger.audit.signatures import SignerVerifier
from ledger.audit.start_model import check_start_model

__all__ = [
    "AuditResult",
    "ChainView",
    "Finding",
    "SignerVerifier",
    "audit",
    "audit_run_dir",
    "check_artifacts",
    "check_checkpoints",
    "check_context",
    "check_hash_chain",
    "check_participants",
    "check_privacy",
    "check_start_model",
    "check_study",
    "load_public_context",
    "print_report",
    "read_chain_view",
    "run_audit",
    "write_html",
    "write_json",
]
