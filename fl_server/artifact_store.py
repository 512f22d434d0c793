"""The run's artifact store: content-addressed blobs and one manifest per round.

Layout (public, the auditor reads it; see docs/HASHES.md):

    artifacts/blobs/<sha256 hex of the blob>      raw bytes (a serialized ciphertext,
                                                   or canonical model bytes)
    artifacts/rounds/round_00001.json             the round manifest
    artifacts/releases/round_00001.json           the hospitals' signed ModelRelease attestations
                                                   of the round's model (their evaluation replies)
    checkpoints/round_00001.npz                   plaintext global model of the round
                                                   (released checkpoints)

Writes are atomic (temp file + fsync + rename) so a crash never leaves half a blob.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.files import atomic_write, load_npz, save_npz


class ArtifactStore:
    """Blobs addressed by SHA-256 plus per-round JSON manifests under one directory."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "artifacts"
        self.blobs = self.root / "blobs"
        self.rounds_dir = self.root / "rounds"
        self.releases_dir = self.root / "releases"
        self.checkpoints = Path(run_dir) / "checkpoints"

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blobs / digest
        if not path.exists():
            atomic_write(path, data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        path = self.blobs / digest
        if not path.exists():
            raise FileNotFoundError(f"blob {digest} is not in the artifact store {self.blobs}")
        return path.read_bytes()

    def put_blobs(self, blobs: list[bytes]) -> list[str]:
        return [self.put_blob(b) for b in blobs]

    def get_blobs(self, digests: list[str]) -> list[bytes]:
        return [self.get_blob(d) for d in digests]

    def write_round(self, manifest: dict[str, Any]) -> Path:
        path = self.rounds_dir / f"round_{int(manifest['round']):05d}.json"
        atomic_write(path, json.dumps(manifest, indent=1, sort_keys=True).encode())
        return path

    def read_round(self, server_round: int) -> dict[str, Any]:
        path = self.rounds_dir / f"round_{server_round:05d}.json"
        if not path.exists():
            raise FileNotFoundError(f"no manifest for round {server_round} in {self.rounds_dir}")
        return json.loads(path.read_text())

    def round_numbers(self) -> list[int]:
        if not self.rounds_dir.exists():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.rounds_dir.glob("round_*.json"))

    def write_release_attestations(self, server_round: int, attestations: dict[str, dict[str, str]]) -> Path:
        """Each hospital's signed ModelRelease of the round's model, by hospital id, as its reply carried it."""
        path = self.releases_dir / f"round_{server_round:05d}.json"
        doc = {"round": server_round, "attestations": attestations}
        atomic_write(path, json.dumps(doc, indent=1, sort_keys=True).encode())
        return path

    def read_release_attestations(self, server_round: int) -> dict[str, dict[str, str]]:
        """The attestations kept for a round (empty when no hospital sent one)."""
        path = self.releases_dir / f"round_{server_round:05d}.json"
        return dict(json.loads(path.read_text())["attestations"]) if path.exists() else {}

    def write_checkpoint(self, server_round: int, arrays: dict[str, np.ndarray]) -> Path:
        path = self.checkpoints / f"round_{server_round:05d}.npz"
        save_npz(path, arrays)
        return path

    def read_checkpoint(self, server_round: int) -> dict[str, np.ndarray]:
        return load_npz(self.checkpoints / f"round_{server_round:05d}.npz")
