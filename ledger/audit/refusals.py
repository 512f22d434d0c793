"""Hospitals' policy and protocol refusals, as the round manifests record them (``refusals``, docs/HASHES.md).

A refusal is a hospital doing its job, not a failed check: the report lists
each as a notice, and ``--follow`` raises an ALERT for each new one, so a
regulator sees an aggregator whose tasks hospitals turn down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ledger.audit.store import StoreReader

#: Codes a hospital refuses with for its own policy or the study's registered protocol.
WATCHED_PREFIXES = ("policy-", "protocol-")


@dataclass(frozen=True)
class RoundRefusal:
    round: int
    hospital: str
    node_id: int | None
    code: str
    reason: str

    def notice(self) -> str:
        return f"round {self.round}: hospital {self.hospital} refused the task ({self.code}): {self.reason}"

    def to_json(self) -> dict[str, object]:
        return {
            "round": self.round,
            "hospital": self.hospital,
            "node_id": self.node_id,
            "code": self.code,
            "reason": self.reason,
        }


def _entry(r: int, raw: object) -> RoundRefusal | None:
    if not isinstance(raw, dict) or not str(raw.get("code", "")).startswith(WATCHED_PREFIXES):
        return None
    node_id = raw.get("node_id")
    return RoundRefusal(
        r,
        str(raw.get("hospital", "")),
        node_id if isinstance(node_id, int) else None,
        str(raw["code"]),
        str(raw.get("reason", "")),
    )


def store_refusals(store_dir: Path, rounds: set[int] | None = None) -> list[RoundRefusal]:
    """Every policy/protocol refusal in the store's manifests (only ``rounds`` when given), by round.

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
