"""Merkle-mode rounds (only a root on chain): check each manifest leaf against the root, then attach it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from fedledger.commitment import RoundCommitment
from fedledger.hashing import as_bytes, to_hex
from fedledger.merkle import MerkleError, MerkleTree, commitment_leaf, verify_proof
from ledger.audit.records import ZERO32, ChainView, CommitmentView, RoundView
from ledger.audit.result import Finding, per_round
from ledger.audit.signatures import digest
from ledger.audit.store import StoreReader, hex32


def attach_merkle_leaves(view: ChainView, store_dir: Path) -> list[Finding]:
    """Check the leaves of every Merkle-mode round against its on-chain root, and fill in its commitments.

    The leaves come from the round manifest (``updates[i].merkle``: the signer's
    address, the full commitment, the leaf and its proof; the signature is
    ``updates[i].commitment.signature``). Each leaf is recomputed from the
    commitment's EIP-712 digest and the address, its proof is verified against
    the on-chain root, all leaves must rebuild that root and number exactly the
    recorded participants, each leaf's update hash and sample count must be
    those of the stored update it sits in (the update that was summed), and its
    sample count at most the cohort size its hospital registered at consent. The
    commitments are then attached to the round so that the per-hospital checks
    (signature recovers to the address, binding, registration, consent,
    budget, samples, privacy) run on them.
    """
    store = StoreReader(store_dir)
    out: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        if rv.mode != 2:
            continue
        r = rv.round
        try:
            m = store.manifest(r)
        except (OSError, ValueError) as exc:
            m, problem = None, f"manifest of round {r} is unreadable: {exc}"
        else:
            problem = (
                f"round {r} is a Merkle round but has no manifest: its {rv.participants} commitments cannot be checked"
            )
        if not isinstance(m, dict):
            out.append(Finding("merkle", False, problem, r))
            continue
        out += _check_round_leaves(view, rv, m)
    return out


def _check_round_leaves(view: ChainView, rv: RoundView, m: dict[str, Any]) -> list[Finding]:
    r, root = rv.round, rv.commitments_hash or ZERO32
    dom = view.domain
    fails: list[Finding] = []
    leaves: list[bytes] = []
    commitments: list[CommitmentView] = []
    for u in [u for u in m.get("updates", []) if isinstance(u, dict)]:
        name = str(u.get("hospital"))
        entry = u.get("merkle")
        signed = u.get("commitment") if isinstance(u.get("commitment"), dict) else {}
        if not isinstance(entry, dict):
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"update of {name!r} has no Merkle leaf (an update that is not under the on-chain root)",
                    r,
                    name,
                )
            )
            continue
        try:
            address = to_checksum_address(str(entry["address"]))
            c = RoundCommitment.from_json(entry["commitment"])
            stored_leaf = hex32(entry.get("leaf"))
            proof = [as_bytes(str(p)) for p in entry.get("proof", [])]
            signature = as_bytes(str(signed.get("signature", "")))
        except (KeyError, ValueError, TypeError) as exc:
            fails.append(Finding("merkle", False, f"Merkle leaf of {name!r} is malformed: {exc}", r, name))
            continue
        who = f"{name} ({address})"
        leaf = commitment_leaf(address, digest(dom, c))
        leaves.append(leaf)
        if stored_leaf != leaf:
            fails.append(
                Finding("merkle", False, f"leaf of {who} does not match its commitment (altered leaf)", r, address)
            )
        if not verify_proof(proof, root, leaf):
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"commitment of {who} is not under the on-chain root "
                    f"{to_hex(root)[:18]}.. (its proof does not verify: leaf added or altered)",
                    r,
                    address,
                )
            )
        if (hex32(u.get("update_hash")), u.get("num_examples")) != (c.update_hash, c.sample_count):
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"leaf of {who} commits to update "
                    f"{to_hex(c.update_hash)[:18]}.. / {c.sample_count} samples, the manifest stores "
                    f"{str(u.get('update_hash'))[:18]}.. / {u.get('num_examples')}",
                    r,
                    address,
                )
            )
        cap = view.hospitals[address].max_samples if address in view.hospitals else None
        if cap is not None and c.sample_count > cap:
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"leaf of {who} claims {c.sample_count} samples, above the cohort size of {cap} it registered "
                    "at consent (the contract refuses this in recordRound; a Merkle round is checked here)",
                    r,
                    address,
                )
            )
        commitments.append(CommitmentView(address, c, signature, rv.log_index))
    fails += _tree_failures(rv, m, leaves, commitments)
    rv.commitments = commitments
    rv.leaves_loaded = True
    return per_round("merkle", r, fails, f"{len(leaves)} leaves verify against the on-chain root")


def _tree_failures(
    rv: RoundView, m: dict[str, Any], leaves: list[bytes], commitments: list[CommitmentView]
) -> list[Finding]:
    """The leaves as a whole: their number, the root they rebuild, and the declared largest epsilon."""
    r, root = rv.round, rv.commitments_hash or ZERO32
    fails: list[Finding] = []
    if len(leaves) != rv.participants:
        missing = _missing_leaves(m, leaves)
        fails.append(
            Finding(
                "merkle",
                False,
                f"the manifest has {len(leaves)} leaves, the chain records "
                f"{rv.participants} participants (leaf dropped or added)"
                + (f"; leaves named in proofs but absent: {', '.join(missing)}" if missing else ""),
                r,
            )
        )
    try:
        rebuilt = MerkleTree(leaves).root if leaves else None
    except MerkleError as exc:
        rebuilt = None
        fails.append(Finding("merkle", False, f"the leaves do not form a tree: {exc}", r))
    if leaves and rebuilt is not None and rebuilt != root:
        fails.append(
            Finding(
                "merkle",
                False,
                f"the {len(leaves)} leaves rebuild root {to_hex(rebuilt)[:18]}.., "
                f"the chain records {to_hex(root)[:18]}..",
                r,
            )
        )
    max_eps = max((cv.commitment.epsilon_micro for cv in commitments), default=0)
    if rv.max_epsilon_micro is not None and commitments and max_eps != rv.max_epsilon_micro:
        fails.append(
            Finding(
                "merkle",
                False,
                f"the leaves' largest epsilon is {max_eps / 1e6:.6f}, the "
                f"aggregator declared {rv.max_epsilon_micro / 1e6:.6f} on chain",
                r,
            )
        )
    return fails


def _missing_leaves(manifest: dict[str, Any], leaves: list[bytes]) -> list[str]:
    """First-level siblings in the manifest's proofs that are not themselves leaves (a dropped leaf's hash)."""
    have = set(leaves)
    out: list[str] = []
    for u in manifest.get("updates", []):
        proof = ((u or {}).get("merkle") or {}).get("proof") or []
        if proof:
            sib = hex32(proof[0])
            if sib is not None and sib not in have and to_hex(sib) not in out:
                # a first-level sibling is a leaf, unless it is an inner node of a promoted subtree: report candidates
                out.append(to_hex(sib))
    return [x[:18] + ".." for x in out]
