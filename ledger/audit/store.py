"""Read-only access to a run's artifact store (layout in docs/HASHES.md), trusting none of it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from fedledger.hashing import as_bytes
from ledger.audit.records import ChainView


def hex32(value: Any) -> bytes | None:
    """32 bytes from a manifest's hex field, or None when it is not exactly that."""
    try:
        raw = as_bytes(str(value))
        return raw if len(raw) == 32 else None
    except ValueError:
        return None


def signed_address(update: dict[str, Any]) -> Any:
    """The address in a manifest update's signed commitment, if it carries one."""
    return (update.get("commitment") or {}).get("address") if isinstance(update.get("commitment"), dict) else None


class StoreReader:
    """Round manifests and content-addressed blobs; each blob's bytes come with why they cannot be trusted."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.rounds_dir = self.root / "artifacts" / "rounds"
        self.blobs_dir = self.root / "artifacts" / "blobs"
        self.checkpoints = self.root / "checkpoints"
        self._cache: dict[str, tuple[bytes | None, str | None]] = {}

    def round_numbers(self) -> list[int]:
        if not self.rounds_dir.exists():
            return []
        out = []
        for p in self.rounds_dir.glob("round_*.json"):
            try:
                out.append(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(out)

    def manifest(self, r: int) -> dict[str, Any] | None:
        p = self.rounds_dir / f"round_{r:05d}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def blob(self, digest: str) -> tuple[bytes | None, str | None]:
        """(content, problem): the blob's bytes and why they cannot be trusted, if so."""
        if digest not in self._cache:
            p = self.blobs_dir / str(digest)
            if not p.is_file():
                self._cache[digest] = (None, f"blob {digest[:16]}.. is missing from the artifact store")
            else:
                data = p.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
                problem = (
                    None
                    if actual == digest
                    else (f"blob {digest[:16]}.. does not hash to its content address (sha256 {actual[:16]}..)")
                )
                self._cache[digest] = (data, problem)
        return self._cache[digest]


def learn_labels(view: ChainView, store_dir: Path) -> None:
    """Name hospitals from the manifests (address in the signed commitment, or the matching update hash)."""
    store = StoreReader(store_dir)
    by_update = {(rv.round, cv.commitment.update_hash): cv.hospital for rv in view.rounds for cv in rv.commitments}
    for r in store.round_numbers():
        try:
            m = store.manifest(r) or {}
        except (OSError, ValueError):
            continue
        for u in m.get("updates", []) if isinstance(m, dict) else []:
            name = u.get("hospital")
            addr = signed_address(u)
            if not addr:
                addr = by_update.get((r, hex32(u.get("update_hash"))))
            if name and addr:
                try:
                    view.labels.setdefault(to_checksum_address(addr), str(name))
                except ValueError:
                    pass
