"""Checks over the chain alone: the study, the hash chain, every commitment, and each hospital's privacy."""

from __future__ import annotations

from fedledger.commitment import CommitmentError, commitments_hash
from fedledger.hashing import to_hex
from ledger.audit.records import ChainView, CommitmentView, RoundView
from ledger.audit.result import Finding, per_round
from ledger.audit.signatures import SignerVerifier

#: The per-commitment checks of a round, in report order.
COMMITMENT_CHECKS = ("signature", "binding", "registered", "consent", "expiry", "budget", "samples")


def check_study(view: ChainView) -> list[Finding]:
    fails = []
    if not view.hospitals:
        fails.append(Finding("study", False, "no hospital is registered for the study"))
    if view.last_round != len({rv.round for rv in view.rounds}):
        fails.append(
            Finding(
                "study",
                False,
                f"the contract's last round is {view.last_round} but "
                f"{len(view.rounds)} RoundRecorded events were found",
            )
        )
    return fails or [
        Finding(
            "study",
            True,
            f"study {to_hex(view.study_id)} registered with {len(view.hospitals)} hospitals, {view.last_round} rounds",
        )
    ]


def check_hash_chain(view: ChainView) -> list[Finding]:
    """Rounds 1..R contiguous and ordered; prev hashes link to the initial model and previous aggregates."""
    out: list[Finding] = []
    by_round: dict[int, list[RoundView]] = {}
    for rv in view.rounds:
        by_round.setdefault(rv.round, []).append(rv)
    last = max([view.last_round] + list(by_round))
    prev_block = -1
    for r in range(1, last + 1):
        if r not in by_round:
            out.append(
                Finding(
                    "hash_chain", False, f"round {r} is missing from the chain record (rounds 1..{last} expected)", r
                )
            )
            continue
        recs = by_round[r]
        fails = []
        if len(recs) > 1:
            fails.append(Finding("hash_chain", False, f"round {r} recorded {len(recs)} times", r))
        rv = recs[0]
        if rv.block < prev_block:
            fails.append(
                Finding(
                    "hash_chain",
                    False,
                    f"round {r} was recorded in block {rv.block}, before round {r - 1} (block {prev_block})",
                    r,
                )
            )
        prev_block = rv.block
        if r == 1:
            expected, what = view.initial_model_hash, "the registered initial model hash"
        elif r - 1 in by_round:
            expected, what = by_round[r - 1][0].aggregate_hash, f"round {r - 1}'s aggregate hash"
        else:
            expected, what = None, ""
            fails.append(Finding("hash_chain", False, f"round {r} cannot be linked: round {r - 1} is missing", r))
        if expected is not None and rv.prev_hash != expected:
            fails.append(
                Finding("hash_chain", False, f"prev hash {to_hex(rv.prev_hash)} != {what} {to_hex(expected)}", r)
            )
        out += per_round("hash_chain", r, fails, "linked to " + ("the initial model" if r == 1 else f"round {r - 1}"))
    extra = sorted(r for r in by_round if r < 1)
    for r in extra:
        out.append(Finding("hash_chain", False, f"round number {r} is not a valid round", r))
    return out


def check_participants(view: ChainView, reference_signatures: bool = False) -> list[Finding]:
    """Signer, binding, registration, consent, expiry, budget and sample counts of every commitment."""
    verifier = SignerVerifier(view.domain, reference=reference_signatures)
    out: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        if rv.mode == 2 and not rv.leaves_loaded:
            for k in COMMITMENT_CHECKS:
                if k != "expiry":
                    out.append(
                        Finding(
                            k,
                            True,
                            f"Merkle round: its {rv.participants} commitments are in the artifact "
                            "store, not on chain (audit with the artifact store)",
                            rv.round,
                            skipped=True,
                        )
                    )
            out += per_round("expiry", rv.round, _expiry_failures(view, rv), "recorded before the study expiry")
        else:
            out += _check_round_commitments(view, rv, verifier)
    return out


def _expiry_failures(view: ChainView, rv: RoundView) -> list[Finding]:
    if rv.timestamp <= view.expiry:
        return []
    msg = f"round {rv.round} recorded at t={rv.timestamp}, after the study expiry t={view.expiry}"
    return [Finding("expiry", False, msg, rv.round)]


def _check_round_commitments(view: ChainView, rv: RoundView, verifier: SignerVerifier) -> list[Finding]:
    r = rv.round
    fails: dict[str, list[Finding]] = {k: [] for k in COMMITMENT_CHECKS}
    seen: set[str] = set()
    digests = []
    for cv in rv.commitments:
        digest = verifier.digest(cv.commitment)
        digests.append(digest)
        _check_commitment(view, rv, cv, verifier, digest, seen, fails)
    fails["expiry"] += _expiry_failures(view, rv)
    total = sum(cv.commitment.sample_count for cv in rv.commitments)
    if total != rv.total_samples:
        fails["samples"].append(
            Finding("samples", False, f"sample counts sum to {total}, the round records {rv.total_samples}", r)
        )
    if len(rv.commitments) != rv.participants or not rv.commitments:
        fails["samples"].append(
            Finding(
                "samples",
                False,
                f"{len(rv.commitments)} commitments but the round records {rv.participants} participants",
                r,
            )
        )
    if rv.mode != 2 and rv.commitments_hash is not None and commitments_hash(digests) != rv.commitments_hash:
        fails["samples"].append(
            Finding("samples", False, "the commitments do not hash to the round's on-chain commitmentsHash", r)
        )
    oks = {
        "signature": f"{len(rv.commitments)} signatures verified off-chain"
        + (" (Merkle leaves)" if rv.mode == 2 else ""),
        "binding": "commitments bind study, round and prev hash",
        "registered": "all participants registered",
        "consent": "all participants consenting",
        "expiry": "recorded before the study expiry",
        "budget": "all epsilons within budget",
        "samples": f"{rv.participants} participants, {rv.total_samples} samples add up",
    }
    out: list[Finding] = []
    for k, fs in fails.items():
        out += per_round(k, r, fs, oks[k])
    return out


def _check_commitment(
    view: ChainView,
    rv: RoundView,
    cv: CommitmentView,
    verifier: SignerVerifier,
    digest: bytes,
    seen: set[str],
    fails: dict[str, list[Finding]],
) -> None:
    """One hospital's commitment: who signed it, what it binds, and the hospital's standing at that block."""
    r, c, h = rv.round, cv.commitment, cv.hospital
    name = view.label(h)
    try:
        signer = verifier.recover(c, cv.signature, h, digest)
        if signer != h:
            fails["signature"].append(Finding("signature", False, f"commitment of {name} was signed by {signer}", r, h))
    except CommitmentError as exc:
        fails["signature"].append(Finding("signature", False, f"signature of {name} does not verify: {exc}", r, h))
    bad = [
        f
        for f, ok in (
            ("studyId", c.study_id == view.study_id),
            ("round", c.round == r),
            ("prevGlobalHash", c.prev_global_hash == rv.prev_hash),
        )
        if not ok
    ]
    if bad:
        fails["binding"].append(
            Finding(
                "binding",
                False,
                f"commitment of {name} does not bind this study/round/prev hash: {', '.join(bad)} differ",
                r,
                h,
            )
        )
    if h in seen:
        fails["binding"].append(Finding("binding", False, f"{name} committed twice in round {r}", r, h))
    seen.add(h)
    hv = view.hospitals.get(h)
    if hv is None:
        fails["registered"].append(Finding("registered", False, f"{name} is not registered for this study", r, h))
        return
    status = hv.status_at(rv.block, cv.log_index)
    if status != "consented":
        fails["consent"].append(
            Finding(
                "consent",
                False,
                f"{name} was '{status}' (not consenting) when round {r} was recorded in block {rv.block}",
                r,
                h,
            )
        )
    if c.epsilon_micro > hv.budget_micro:
        fails["budget"].append(
            Finding(
                "budget",
                False,
                f"{name} epsilon {c.epsilon_micro / 1e6:.6f} exceeds its budget {hv.budget_micro / 1e6:.6f}",
                r,
                h,
            )
        )


def epsilon_table(view: ChainView) -> dict[str, dict[int, float]]:
    """Cumulative epsilon each hospital committed, per round (hospital address -> round -> epsilon)."""
    table: dict[str, dict[int, float]] = {a: {} for a in view.hospitals}
    for rv in sorted(view.rounds, key=lambda x: x.round):
        for cv in rv.commitments:
            table.setdefault(cv.hospital, {})[rv.round] = cv.commitment.epsilon_micro / 1e6
    return table


def check_privacy(view: ChainView) -> list[Finding]:
    """Each hospital's cumulative epsilon never decreases across rounds and stays within its budget."""
    out: list[Finding] = []
    last: dict[str, tuple[int, int]] = {}
    for rv in sorted(view.rounds, key=lambda x: x.round):
        fails = []
        for cv in rv.commitments:
            h, eps = cv.hospital, cv.commitment.epsilon_micro
            if h in last and eps < last[h][1]:
                fails.append(
                    Finding(
                        "privacy",
                        False,
                        f"{view.label(h)} epsilon decreased from "
                        f"{last[h][1] / 1e6:.6f} (round {last[h][0]}) to {eps / 1e6:.6f}",
                        rv.round,
                        h,
                    )
                )
            hv = view.hospitals.get(h)
            if hv is not None and eps > hv.budget_micro:
                fails.append(
                    Finding(
                        "privacy",
                        False,
                        f"{view.label(h)} cumulative epsilon {eps / 1e6:.6f} is over "
                        f"budget {hv.budget_micro / 1e6:.6f}",
                        rv.round,
                        h,
                    )
                )
            last[h] = (rv.round, max(eps, last.get(h, (0, 0))[1]))
        out += per_round("privacy", rv.round, fails, "cumulative epsilon non-decreasing and within budget")
    return out
