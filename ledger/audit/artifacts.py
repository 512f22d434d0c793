"""The artifact store against the chain, round by round: context, manifests, participants, blobs, update hashes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedledger.hashing import aggregate_hash, ciphertexts_hash, sha256, to_hex
from ledger.audit.records import ZERO32, ChainView, CommitmentView, RoundView
from ledger.audit.result import Finding, per_round
from ledger.audit.resum import resum_round
from ledger.audit.store import StoreReader, hex32, signed_address


def load_public_context(data: bytes) -> Any:
    """Load the aggregator's PUBLIC CKKS context; refuses any context carrying a secret key."""
    from fedledger.ckks import aggregator_context_from_bytes  # defers tenseal

    return aggregator_context_from_bytes(data, origin="aggregator context")


def check_context(view: ChainView, context_bytes: bytes | None, encrypted: bool) -> list[Finding]:
    if view.context_hash == ZERO32:
        return [Finding("context", True, "study registered without encryption (context hash zero)", skipped=True)]
    if context_bytes is None:
        return (
            [
                Finding(
                    "context",
                    False,
                    "the aggregator's public CKKS context was not found; the stored ciphertexts cannot be re-summed",
                )
            ]
            if encrypted
            else [Finding("context", True, "no public context given", skipped=True)]
        )
    fp = sha256(context_bytes)
    if fp != view.context_hash:
        return [
            Finding(
                "context",
                False,
                f"public context fingerprint {to_hex(fp)} does not match the registered "
                f"context hash {to_hex(view.context_hash)} (artifacts from a different study?)",
            )
        ]
    return [Finding("context", True, f"public context matches the registered hash {to_hex(fp)[:18]}..")]


def update_digest(blobs: list[bytes], encrypted: bool) -> bytes:
    """What a hospital signs as ``updateHash``: the ciphertexts hash, or a plaintext update's SHA-256."""
    return ciphertexts_hash(blobs) if encrypted else (sha256(blobs[0]) if len(blobs) == 1 else ciphertexts_hash(blobs))


def check_artifacts(view: ChainView, store_dir: Path, public_ctx: Any = None, resum: bool = True) -> list[Finding]:
    """The artifact store agrees with the chain, round by round; re-sum the stored ciphertexts."""
    store = StoreReader(store_dir)
    out: list[Finding] = []
    chain_rounds = {rv.round: rv for rv in view.rounds}
    stored = store.round_numbers()
    for r in sorted(set(stored) - set(chain_rounds)):
        out.append(Finding("manifest", False, f"round {r} is in the artifact store but was never recorded on chain", r))
    for r, rv in sorted(chain_rounds.items()):
        try:
            m = store.manifest(r)
        except (OSError, ValueError) as exc:
            out.append(Finding("manifest", False, f"manifest of round {r} is unreadable: {exc}", r))
            continue
        if m is None:
            out.append(
                Finding("manifest", False, f"round {r} is on chain but has no manifest in the artifact store", r)
            )
            continue
        out += _check_round_artifacts(view, rv, m, store, public_ctx, resum)
    return out


def _manifest_failures(view: ChainView, rv: RoundView, m: dict[str, Any]) -> list[Finding]:
    r = rv.round
    mf: list[Finding] = []
    if hex32(m.get("study_id")) != view.study_id:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest belongs to study {m.get('study_id')}, not "
                f"{to_hex(view.study_id)} (artifact store from a different study?)",
                r,
            )
        )
    if int(m.get("round", -1)) != r:
        mf.append(Finding("manifest", False, f"manifest file of round {r} says round {m.get('round')}", r))
    if hex32(m.get("prev_hash")) != rv.prev_hash:
        mf.append(
            Finding("manifest", False, f"manifest prev hash {m.get('prev_hash')} != on-chain {to_hex(rv.prev_hash)}", r)
        )
    agg = m.get("aggregate") or {}
    if hex32(agg.get("hash")) != rv.aggregate_hash:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest aggregate hash {agg.get('hash')} != on-chain {to_hex(rv.aggregate_hash)}",
                r,
            )
        )
    if agg.get("total_weight") is not None and int(agg["total_weight"]) != rv.total_samples:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest total weight {agg['total_weight']} != on-chain total samples {rv.total_samples}",
                r,
            )
        )
    return mf


def check_protocol(view: ChainView, r: int, m: dict[str, Any]) -> Finding:
    """The round's task was sent under the protocol the study registered (manifest ``protocol_hash`` = configHash)."""
    recorded = m.get("protocol_hash")
    if recorded is None:
        return Finding("protocol", True, "manifest does not record the round's protocol (older run)", r, skipped=True)
    if hex32(recorded) != view.config_hash:
        return Finding(
            "protocol",
            False,
            f"round {r} was sent under protocol {recorded}, but the study registered configHash "
            f"{to_hex(view.config_hash)} (model, training or privacy parameters changed mid-study)",
            r,
        )
    return Finding("protocol", True, "the round's protocol hash is the registered configHash", r)


def _match_updates(
    view: ChainView, rv: RoundView, updates: list[dict[str, Any]], pf: list[Finding]
) -> tuple[list[tuple[CommitmentView, dict[str, Any]]], list[dict[str, Any]]]:
    """Chain commitments paired with manifest updates by update hash (and signed address when given).

    Returns the pairs and the updates nobody committed; each unpaired side is a ``participants`` failure.
    """
    r = rv.round
    unmatched = list(range(len(updates)))
    matched: list[tuple[CommitmentView, dict[str, Any]]] = []
    for cv in rv.commitments:
        hit = None
        for i in unmatched:
            u = updates[i]
            addr = signed_address(u)
            if hex32(u.get("update_hash")) == cv.commitment.update_hash and (
                not addr or str(addr).lower() == cv.hospital.lower()
            ):
                hit = i
                break
        if hit is None:
            pf.append(
                Finding(
                    "participants",
                    False,
                    f"update committed on chain by {view.label(cv.hospital)} "
                    f"({to_hex(cv.commitment.update_hash)[:18]}..) is not in the manifest",
                    r,
                    cv.hospital,
                )
            )
        else:
            unmatched.remove(hit)
            matched.append((cv, updates[hit]))
    extras = [updates[i] for i in unmatched]
    for u in extras:
        pf.append(
            Finding(
                "participants",
                False,
                f"manifest lists an update of {u.get('hospital')!r} "
                f"({str(u.get('update_hash'))[:18]}..) that no hospital committed on chain (extra update)",
                r,
                str(u.get("hospital")),
            )
        )
    return matched, extras


def _load_blobs(
    store: StoreReader, digests: Sequence[str], who: str | None, r: int, bf: list[Finding]
) -> list[bytes] | None:
    """The blobs' bytes, or None when one is missing; every problem is a ``blobs`` failure."""
    blobs, ok = [], True
    for d in digests:
        data, problem = store.blob(str(d))
        if problem:
            bf.append(Finding("blobs", False, f"{who or 'aggregate'}: {problem}", r, who))
        if data is None:
            ok = False
        else:
            blobs.append(data)
    return blobs if ok else None


def _check_round_artifacts(
    view: ChainView, rv: RoundView, m: dict[str, Any], store: StoreReader, public_ctx: Any, resum: bool
) -> list[Finding]:
    r = rv.round
    out = per_round("manifest", r, _manifest_failures(view, rv, m), "manifest matches the chain record")
    out.append(check_protocol(view, r, m))
    encrypted = bool(m.get("encrypted", True))
    agg = m.get("aggregate") or {}

    pf: list[Finding] = []
    matched, extras = _match_updates(view, rv, [u for u in m.get("updates", []) if isinstance(u, dict)], pf)
    out += per_round("participants", r, pf, f"{len(matched)} stored updates match the on-chain participants")

    bf: list[Finding] = []
    uf: list[Finding] = []
    update_blobs: dict[str, list[bytes] | None] = {}
    for cv, u in matched:
        blobs = _load_blobs(store, u.get("blobs", []), cv.hospital, r, bf)
        update_blobs[cv.hospital] = blobs
        if blobs is not None and update_digest(blobs, encrypted) != cv.commitment.update_hash:
            uf.append(
                Finding(
                    "update_hash",
                    False,
                    f"stored update of {view.label(cv.hospital)} hashes to "
                    f"{to_hex(update_digest(blobs, encrypted))[:18]}.., its signed on-chain updateHash is "
                    f"{to_hex(cv.commitment.update_hash)[:18]}..",
                    r,
                    cv.hospital,
                )
            )
    extra_blobs = [
        (str(u.get("hospital")), _load_blobs(store, u.get("blobs", []), str(u.get("hospital")), r, bf)) for u in extras
    ]
    agg_blobs = _load_blobs(store, agg.get("blobs", []), None, r, bf)
    if agg_blobs is not None and encrypted and aggregate_hash(agg_blobs, rv.total_samples) != rv.aggregate_hash:
        uf.append(
            Finding(
                "update_hash",
                False,
                f"stored aggregate ciphertexts with the on-chain total weight {rv.total_samples} do not hash to the "
                "on-chain aggregate hash (aggregate hash v2 covers the weight)",
                r,
            )
        )
    out += per_round("blobs", r, bf, "every blob hashes to its content address")
    out += per_round("update_hash", r, uf, "every stored update hashes to its on-chain updateHash")
    out += resum_round(view, rv, encrypted, resum, public_ctx, update_blobs, extra_blobs)
    return out
