"""Released checkpoints against the model hashes the chain released (``ModelReleased``), and who agreed to each."""

from __future__ import annotations

from pathlib import Path

from fedledger.files import load_npz
from fedledger.hashing import model_hash, to_hex
from ledger.audit.records import ChainView
from ledger.audit.result import Finding


def check_release_signers(view: ChainView) -> list[Finding]:
    """Every release carries ModelRelease signatures from at least the study's release quorum of distinct
    hospitals registered for the study (the contract's rule, re-checked from the ModelReleased events)."""
    out: list[Finding] = []
    for r in sorted(view.released):
        signers = view.release_signers.get(r, ())
        strangers = [a for a in signers if a not in view.hospitals]
        if strangers:
            for a in strangers:
                out.append(Finding("checkpoint", False, f"round {r} release signed by {a}, not a study hospital", r, a))
        elif len(set(signers)) < view.release_quorum:
            out.append(
                Finding(
                    "checkpoint",
                    False,
                    f"round {r} release carries {len(set(signers))} hospital signature(s), the study's "
                    f"release quorum is {view.release_quorum}",
                    r,
                )
            )
        else:
            names = ", ".join(view.label(a) or a for a in signers)
            out.append(
                Finding("checkpoint", True, f"round {r} release signed by {len(signers)} hospital(s): {names}", r)
            )
    return out


def check_checkpoints(view: ChainView, store_dir: Path) -> list[Finding]:
    """Every released model (ModelReleased) has a checkpoint that hashes to the released hash, and its release
    has the hospitals' quorum (:func:`check_release_signers`)."""
    out: list[Finding] = check_release_signers(view)
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
