"""Hospitals' round receipts against the chain (``fedledger audit --receipts``, docs/AUDIT.md "Receipts").

A receipt counts when its signature recovers to a hospital the study
registered and it names this chain, contract and study. The chain then
contradicts it when the round is gone, the block at the receipted height has
another hash, or the round record hashes otherwise (ledger/round_record.py);
each contradiction is a failure naming the round and the hospital. Receipts
that do not count are listed as notices, never as failures: anyone can
write a file, only a registered hospital's signature is evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fedledger.hashing import to_hex
from fedledger.receipt import ReceiptError, SignedReceipt, read_receipts
from ledger.audit.cheat_probe import check_evidence_chain
from ledger.audit.records import ChainView
from ledger.audit.result import Finding
from ledger.round_record import ChainReads, contradiction

CHECK = "receipt"


def receipt_files(paths: Iterable[Path]) -> list[Path]:
    """The receipt files named: a file as given, a directory's ``*.jsonl`` files at any depth."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(p.rglob("*.jsonl")))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"receipts: {p} is neither a file nor a directory")
    return out


def load_receipts(paths: Iterable[Path]) -> tuple[list[SignedReceipt], list[str]]:
    """Every receipt in the files, and a notice for each line that is not one."""
    receipts: list[SignedReceipt] = []
    notices: list[str] = []
    for path in receipt_files(paths):
        found, problems = read_receipts(path)
        receipts += found
        notices += [f"receipts: {p}; ignored" for p in problems]
    return receipts, notices


def _counted(view: ChainView, s: SignedReceipt) -> str | None:
    """Why a receipt is not evidence about this study on this chain (None: it is)."""
    r = s.receipt
    if r.study_id != view.study_id:
        return f"is for study {to_hex(r.study_id)}"
    if s.chain_id != view.chain_id or s.contract.lower() != view.contract.lower():
        return f"is for chain {s.chain_id} contract {s.contract}, this is chain {view.chain_id} {view.contract}"
    try:
        signer = s.recover()
    except ReceiptError as exc:
        return f"has a bad signature ({exc})"
    if signer != s.signer:
        return f"claims signer {s.signer} but was signed by {signer}"
    if signer not in view.hospitals:
        return f"is signed by {signer}, not a hospital this study registered"
    return None


def check_receipts(w3: Any, view: ChainView, receipts: Sequence[SignedReceipt]) -> list[Finding]:
    """One finding per counted receipt (failures name round and hospital); notices for the rest."""
    findings: list[Finding] = []
    seen: set[tuple[str, bytes]] = set()
    reads = ChainReads(w3)  # each block and round asked once, however many hospitals receipted it
    for s in receipts:
        who = s.hospital or s.signer
        why_not = _counted(view, s)
        if why_not is not None:
            view.notices.append(f"receipt of round {s.receipt.round} from {who} {why_not}: not counted")
            continue
        key = (s.signer, s.receipt.digest(s.domain))
        if key in seen:
            continue
        seen.add(key)
        r = s.receipt
        problem = contradiction(reads, s)
        if problem is None:
            msg = f"hospital {who}'s receipt (block {r.block_number}) agrees with the chain"
            findings.append(Finding(CHECK, True, msg, r.round, s.signer))
        else:
            msg = f"the chain contradicts hospital {who}'s receipt of round {r.round}: {problem}"
            findings.append(Finding(CHECK, False, msg, r.round, s.signer))
    if not receipts:
        view.notices.append("receipts: none given in the files named")
    return findings


def evidence_findings(w3: Any, view: ChainView, receipt_paths: Sequence[Path] | None, require: bool) -> list[Finding]:
    """What the audit adds about the chain as evidence: the cheat-method probe, then the receipts given."""
    findings = check_evidence_chain(w3, view, require)
    if receipt_paths:
        receipts, notices = load_receipts(receipt_paths)
        view.notices.extend(notices)
        findings += check_receipts(w3, view, receipts)
    return findings
