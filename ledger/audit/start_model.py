"""``start_model``: every hospital of a round trained from the same plaintext model (no key needed).

Each signed commitment binds ``startModelHash``, the model hash of the
plaintext parameters the hospital trained from (docs/HASHES.md section 4). In
encrypted mode the aggregator cannot see the model it sends, but it can send
one hospital a different ciphertext (or a different weight to divide by): that
hospital's start hash then differs from the others'. Round 1's reference is
the registered initial model hash; a later round's is the hash most of its
hospitals signed (ties: the first recorded).
"""

from __future__ import annotations

from collections import Counter

from fedledger.hashing import to_hex
from ledger.audit.records import ChainView, RoundView
from ledger.audit.result import Finding, per_round

CHECK = "start_model"


def check_start_model(view: ChainView) -> list[Finding]:
    """Per round: each hospital whose signed start model differs from the round's reference, named."""
    out: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        if rv.mode == 2 and not rv.leaves_loaded:
            msg = "Merkle round: its commitments are in the artifact store (audit with the artifact store)"
            out.append(Finding(CHECK, True, msg, rv.round, skipped=True))
            continue
        if not rv.commitments:
            continue
        reference, what = _reference(view, rv)
        fails = [
            Finding(
                CHECK,
                False,
                f"{view.label(cv.hospital)} trained round {rv.round} from model "
                f"{to_hex(cv.commitment.start_model_hash)}, not {what} {to_hex(reference)}",
                rv.round,
                cv.hospital,
            )
            for cv in rv.commitments
            if cv.commitment.start_model_hash != reference
        ]
        n = len(rv.commitments)
        out += per_round(CHECK, rv.round, fails, f"all {n} hospitals trained from {what} {to_hex(reference)[:10]}..")
    return out


def _reference(view: ChainView, rv: RoundView) -> tuple[bytes, str]:
    """The hash every hospital of the round must have started from, and how to name it."""
    if rv.round == 1:
        return view.initial_model_hash, "the registered initial model"
    counts = Counter(cv.commitment.start_model_hash for cv in rv.commitments)
    top = max(counts.values())
    first = next(h for h in (cv.commitment.start_model_hash for cv in rv.commitments) if counts[h] == top)
    if 2 * top > len(rv.commitments):
        return first, f"the model most hospitals trained from ({top} of {len(rv.commitments)})"
    return first, "the first recorded hospital's model (no majority)"
