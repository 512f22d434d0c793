"""Findings and the audit result, with the JSON verdict (``fedledger-audit-v1``) they serialise to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from fedledger.hashing import to_hex
from ledger.audit.records import ChainView

FORMAT = "fedledger-audit-v1"

#: Every check name, in report order.
CHECKS = (
    "study",
    "hash_chain",
    "signature",
    "binding",
    "registered",
    "consent",
    "expiry",
    "budget",
    "samples",
    "start_model",
    "merkle",
    "privacy",
    "accounting",
    "context",
    "manifest",
    "protocol",
    "participants",
    "blobs",
    "update_hash",
    "resum",
    "checkpoint",
    "receipt",
    "evidence_chain",
    "query",
)


@dataclass
class Finding:
    """One check's verdict; ``round``/``hospital`` are None for study-wide checks."""

    check: str
    ok: bool
    message: str
    round: int | None = None
    hospital: str | None = None  # checksum address, or a manifest's hospital name
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("pass" if self.ok else "fail")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        return d


def per_round(check: str, r: int, failures: list[Finding], ok_message: str) -> list[Finding]:
    """The round's failures of one check, or one passing finding when there are none."""
    return failures or [Finding(check, True, ok_message, r)]


def _worst(fs: Iterable[Finding]) -> str:
    fs = list(fs)
    if any(not f.ok for f in fs):
        return "fail"
    if fs and all(f.skipped for f in fs):
        return "skip"
    return "pass"


@dataclass
class AuditResult:
    view: ChainView
    findings: list[Finding]
    epsilon: dict[str, dict[int, float]]
    artifacts: bool
    duration_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def round_rows(self) -> list[dict[str, Any]]:
        rounds = sorted({rv.round for rv in self.view.rounds} | {f.round for f in self.findings if f.round})
        by_round = {rv.round: rv for rv in self.view.rounds}
        rows = []
        for r in rounds:
            fs = [f for f in self.findings if f.round == r]
            rv = by_round.get(r)
            rows.append(
                {
                    "round": r,
                    "ok": all(f.ok for f in fs),
                    "on_chain": rv is not None,
                    "block": rv.block if rv else None,
                    "timestamp": rv.timestamp if rv else None,
                    "participants": [self.view.label(c.hospital) for c in rv.commitments] if rv else [],
                    "n_participants": len(rv.commitments) if rv else 0,
                    "total_samples": rv.total_samples if rv else None,
                    "aggregate_hash": to_hex(rv.aggregate_hash) if rv else None,
                    "checks": {
                        c: _worst([f for f in fs if f.check == c]) for c in CHECKS if any(f.check == c for f in fs)
                    },
                    "failed": [f.to_json() for f in fs if not f.ok],
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        v = self.view
        counts = {c: {"pass": 0, "fail": 0, "skip": 0} for c in CHECKS}
        for f in self.findings:
            counts.setdefault(f.check, {"pass": 0, "fail": 0, "skip": 0})[f.status] += 1
        hospitals = {}
        for a, hv in v.hospitals.items():
            eps = self.epsilon.get(a, {})
            hospitals[a] = {
                "label": v.labels.get(a),
                "budget": None if hv.budget_micro >= 2**64 - 1 else hv.budget_micro / 1e6,
                "budget_micro": hv.budget_micro,
                "epsilon": {str(r): e for r, e in sorted(eps.items())},
                "final_epsilon": max(eps.values()) if eps else 0.0,
                "status_events": [{"block": b, "log_index": li, "kind": k} for b, li, k in sorted(hv.events)],
            }
        return {
            "format": FORMAT,
            "ok": self.ok,
            "study_id": to_hex(v.study_id),
            "chain_id": v.chain_id,
            "contract": v.contract,
            "aggregator": v.aggregator,
            "code_version": v.code_version,
            "initial_model_hash": to_hex(v.initial_model_hash),
            "context_hash": to_hex(v.context_hash),
            "expiry": v.expiry,
            "registered_at": v.registered_at,
            "rounds_on_chain": len(v.rounds),
            "last_round": v.last_round,
            "artifacts_checked": self.artifacts,
            "duration_s": round(self.duration_s, 3),
            "checks": {k: c for k, c in counts.items() if sum(c.values())},
            "hospitals": hospitals,
            "rounds": self.round_rows(),
            "released": {str(r): to_hex(h) for r, h in sorted(v.released.items())},
            "failures": [f.to_json() for f in self.failures],
            "notices": list(v.notices),
            **self.meta,
        }
