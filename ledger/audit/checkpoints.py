"""Released checkpoints against the model hashes the chain released (``ModelReleased``)."""

from __future__ import annotations

from pathlib import Path

from fedledger.files import load_npz
from fedledger.hashing import model_hash, to_hex
from ledger.audit.records import ChainView
from ledger.audit.result import Finding


def check_checkpoints(view: ChainView, store_dir: Path) -> list[Finding]:
    """Every released model (ModelReleased) has a checkpoint that hashes to the released hash."""
    out: list[Finding] = []
    ckpt_dir = Path(store_dir) / "checkpoints"
    for r, released in sorted(view.released.items()):
        p = ckpt_dir / f"round_{r:05d}.npz"
        if not p.exists():
            out.append(
                Finding(
                    "checkpoint",
                    False,
                    f"round {r} model was released on chain but {p.name} is not in the artifact store",
                    r,
                )
            )
            continue
        try:
            got = model_hash(load_npz(p))
        except Exception as exc:  # corrupt zip, pickled object arrays, ...
            out.append(Finding("checkpoint", False, f"{p.name} cannot be read safely: {exc}", r))
            continue
        if got != released:
            out.append(
                Finding(
                    "checkpoint",
                    False,
                    f"{p.name} hashes to {to_hex(got)[:18]}.., the chain released "
                    f"{to_hex(released)[:18]}.. (altered checkpoint)",
                    r,
                )
            )
        else:
            out.append(Finding("checkpoint", True, f"{p.name} matches the released model hash", r))
    if ckpt_dir.exists():
        for p in sorted(ckpt_dir.glob("round_*.npz")):
            try:
                r = int(p.stem.split("_")[1])
            except (IndexError, ValueError):
                continue
            if r not in view.released:
                out.append(
                    Finding("checkpoint", True, f"{p.name} was never released on chain; not checked", r, skipped=True)
                )
    return out
