"""Hospitals' refusals, as the round manifests record them (``refusals``, docs/HASHES.md).

Watched: policy and protocol refusals of a task, an aggregate's weight refused
(``total-weight-*``), and an aggregate that failed a public bound
(``aggregate-*``, fl_client/aggregate_bounds.py). An entry with
``aggregate_round`` is a hospital that refused that round's aggregate and
trained from its last accepted global model (``on-bad-aggregate`` keep-previous).

A refusal is a hospital doing its job, not a failed check: the report lists
each as a notice, and ``--follow`` raises an ALERT for each new one, so a
regulator sees an aggregator whose tasks hospitals turn down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledger.audit.store import StoreReader

#: Codes a hospital refuses with for its own policy, the study's registered protocol, an aggregate's weight or bounds.
WATCHED_PREFIXES = ("policy-", "protocol-", "total-weight-", "aggregate-")


@dataclass(frozen=True)
class RoundRefusal:
    round: int
    hospital: str
    node_id: int | None
    code: str
    reason: str
    aggregate_round: int | None = None  # the round whose aggregate was refused (the hospital trained on)

    def what(self) -> str:
        if self.aggregate_round is None:
            return "refused the task"
        return f"refused round {self.aggregate_round}'s aggregate and trained from its last accepted model"

    def notice(self) -> str:
        return f"round {self.round}: hospital {self.hospital} {self.what()} ({self.code}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "round": self.round,
            "hospital": self.hospital,
            "node_id": self.node_id,
            "code": self.code,
            "reason": self.reason,
            **({"aggregate_round": self.aggregate_round} if self.aggregate_round is not None else {}),
        }


def _entry(r: int, raw: object) -> RoundRefusal | None:
    if not isinstance(raw, dict) or not str(raw.get("code", "")).startswith(WATCHED_PREFIXES):
        return None
    node_id, agg_round = raw.get("node_id"), raw.get("aggregate_round")
    return RoundRefusal(
        r,
        str(raw.get("hospital", "")),
        node_id if isinstance(node_id, int) else None,
        str(raw["code"]),
        str(raw.get("reason", "")),
        agg_round if isinstance(agg_round, int) and not isinstance(agg_round, bool) else None,
    )


def store_refusals(store_dir: Path, rounds: set[int] | None = None) -> list[RoundRefusal]:
    """Every watched refusal in the store's manifests (only ``rounds`` when given), by round.

    A manifest without ``refusals`` (every manifest written before the key
    existed) has none; an unreadable one is the manifest check's business.
    """
    store = StoreReader(store_dir)
    out: list[RoundRefusal] = []
    for r in store.round_numbers():
        if rounds is not None and r not in rounds:
            continue
        try:
            m = store.manifest(r) or {}
        except (OSError, ValueError):
            continue
        entries = m.get("refusals") if isinstance(m, dict) else None
        for raw in entries if isinstance(entries, list) else []:
            refusal = _entry(r, raw)
            if refusal is not None:
                out.append(refusal)
    return out
