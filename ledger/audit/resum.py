"""Re-sum a round's stored ciphertexts with the public context and compare with the recorded aggregate.

On a mismatch, name the cause where one can be found: an update that does not
parse, an update left out of the sum (leave-one-out re-sums), or extra
updates in it (the manifest's uncommitted updates added).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.hashing import aggregate_hash, to_hex
from ledger.audit.records import ChainView, RoundView
from ledger.audit.result import Finding


def resum_round(
    view: ChainView,
    rv: RoundView,
    encrypted: bool,
    resum: bool,
    public_ctx: Any,
    update_blobs: dict[str, list[bytes] | None],
    extra_blobs: list[tuple[str, list[bytes] | None]],
) -> list[Finding]:
    """The round's ``resum`` findings; skipped for plaintext rounds or when not requested."""
    r = rv.round
    if not encrypted:
        return [Finding("resum", True, "plaintext round: nothing to re-sum", r, skipped=True)]
    if not resum:
        return [Finding("resum", True, "re-sum not requested", r, skipped=True)]
    if public_ctx is None:
        return [Finding("resum", False, "cannot re-sum: no public CKKS context", r)]
    missing = [cv.hospital for cv in rv.commitments if update_blobs.get(cv.hospital) is None]
    if missing:
        return [
            Finding(
                "resum",
                False,
                f"cannot re-sum: the update of {view.label(h)} is not (fully) in the artifact store",
                r,
                h,
            )
            for h in missing
        ]
    parts = [(cv.hospital, update_blobs[cv.hospital] or []) for cv in rv.commitments]
    return _RoundSum(view, rv, parts, [(n, b) for n, b in extra_blobs if b is not None], public_ctx).findings()


@dataclass
class _RoundSum:
    """The committed updates of one round (and the manifest's uncommitted extras) under the public context."""

    view: ChainView
    rv: RoundView
    parts: list[tuple[str, list[bytes]]]
    extras: list[tuple[str, list[bytes]]]
    ctx: Any

    def _sum_hash(self, parts: list[list[bytes]]) -> bytes:
        """The aggregate hash (v2: ciphertexts and weight) of the re-sum under the chain's totalSamples."""
        return self._sum_hashes(parts, (self.rv.total_samples,))[0]

    def _sum_hashes(self, parts: list[list[bytes]], weights: tuple[int, ...]) -> list[bytes]:
        """The re-sum's aggregate hash under each candidate weight (diagnosing a sum weighed differently)."""
        from fedledger.ckks import sum_ciphertexts  # defers tenseal

        blobs = sum_ciphertexts(self.ctx, parts)
        return [aggregate_hash(blobs, w) for w in weights if w > 0]

    def findings(self) -> list[Finding]:
        view, rv, parts, r = self.view, self.rv, self.parts, self.rv.round
        try:
            got = self._sum_hash([b for _, b in parts])
        except Exception as exc:  # CiphertextError and anything SEAL raises on hostile bytes
            bad = []
            for h, blobs in parts:
                try:
                    self._sum_hash([blobs])
                except Exception:
                    bad.append(h)
            if bad:
                return [
                    Finding(
                        "resum",
                        False,
                        f"stored update of {view.label(h)} does not parse as a ciphertext under the public "
                        f"context: {exc}",
                        r,
                        h,
                    )
                    for h in bad
                ]
            return [Finding("resum", False, f"re-summing the stored updates failed: {exc}", r)]
        if got == rv.aggregate_hash:
            return [
                Finding("resum", True, f"re-sum of {len(parts)} stored updates reproduces the recorded aggregate", r)
            ]
        return self._diagnose() or [
            Finding(
                "resum",
                False,
                f"re-sum of the {len(parts)} committed updates hashes to {to_hex(got)[:18]}.., "
                f"the chain records {to_hex(rv.aggregate_hash)[:18]}.. (an update was dropped, added or altered)",
                r,
            )
        ]

    def _diagnose(self) -> list[Finding]:
        """Extra updates in the sum, or one committed update left out; [] when neither explains the aggregate."""
        view, rv, parts, extras, r = self.view, self.rv, self.parts, self.extras, self.rv.round
        if extras:
            try:
                if rv.aggregate_hash in self._sum_hashes(
                    [b for _, b in parts] + [b for _, b in extras], (rv.total_samples,)
                ):
                    return [
                        Finding(
                            "resum",
                            False,
                            f"the recorded aggregate includes update(s) of {n!r} that were not "
                            "committed on chain (extra update added)",
                            r,
                            n,
                        )
                        for n, _ in extras
                    ]
            except Exception:
                pass
        if len(parts) > 1:
            for i, (h, _) in enumerate(parts):
                rest = [b for j, (_, b) in enumerate(parts) if j != i]
                try:
                    left_out = rv.commitments[i].commitment.sample_count
                    if rv.aggregate_hash in self._sum_hashes(rest, (rv.total_samples, rv.total_samples - left_out)):
                        return [
                            Finding(
                                "resum",
                                False,
                                f"the recorded aggregate leaves out the committed update of "
                                f"{view.label(h)} (update left out of the sum)",
                                r,
                                h,
                            )
                        ]
                except Exception:
                    continue
        return []
