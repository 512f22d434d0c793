"""Resume a study after the aggregator (ServerApp / SuperLink) was killed.

Explicit, never automatic: a study resumes only when its spec says
``"resume": true`` (``study.json``). Starting a study whose run directory
already holds recorded rounds *without* it is refused, so a re-run can never
overwrite the manifests of rounds already on the chain.

Where a resumed study starts (:func:`resume_point`):

1. With a ledger: every journaled-but-unsubmitted record is flushed first
   (:class:`ledger.journal.RecordSubmitter`; a record that did reach the chain
   is only marked submitted). The chain's ``lastRound`` is then the last
   recorded round ``R``; its manifest must exist and agree with the chain
   (aggregate hash, previous hash), and so must every earlier manifest's hash
   chain. A manifest past ``R`` (written, never journaled) is a round that did
   not happen: it is redone and its manifest overwritten.
   Without a ledger: ``R`` is the last manifest whose predecessors are all
   present and hash-chained.
2. The global model after round ``R``: for an encrypted study the manifest's
   aggregate ciphertext blobs plus its total weight; for a plaintext study
   ``checkpoints/round_R.npz`` (or, if the crash came before the checkpoint
   was written, the aggregate's canonical model bytes in the artifact store).
   Its hash must equal the recorded aggregate hash.
3. The study continues at round ``R + 1`` with that model as the previous
   global model (hospitals check it against the chain's round ``R``).

Each round's outcome is also appended to ``<run dir>/round_outcomes.jsonl``
as the round ends (:func:`save_outcome`), so a resumed study's
``results.json`` / ``metrics.csv`` hold every round (:func:`earlier_outcomes`);
a recorded round whose outcome line was never written (crash between the
on-chain record and the end of evaluation) is rebuilt from its manifest and
the journal, without evaluation metrics.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.files import load_npz
from fedledger.hashing import MODEL_DOMAIN, to_hex
from fedledger.wire import ModelPayload
from fl_server.artifact_store import ArtifactStore
from fl_server.results import json_safe, round_entry
from fl_server.round_protocol import RoundOutcome

log = logging.getLogger("fedledger.server")

OUTCOMES_NAME = "round_outcomes.jsonl"


class ResumeError(RuntimeError):
    """The run directory, the journal and the chain do not agree on where the study stands."""


def resume_requested(spec: dict[str, Any]) -> bool:
    return bool(spec.get("resume", False))


def resume_point(spec: dict[str, Any]) -> tuple[int, ModelPayload]:
    """(first round to run, global model to send with it) for this run directory."""
    run_dir = Path(spec["run_dir"])
    store = ArtifactStore(run_dir)
    initial = ModelPayload(arrays=load_npz(spec["initial_model"]))
    client = _ledger_client(spec)
    if client is not None and resume_requested(spec):
        _flush_journal(spec, client)
    last = _last_recorded_round(spec, store, client, initial)
    if last == 0:
        return int(spec.get("start_round", 1)), initial
    if not resume_requested(spec):
        raise ResumeError(
            f"{run_dir} already holds recorded rounds 1..{last}; starting again would overwrite them. "
            f'To continue the study from round {last + 1}, set "resume": true in {run_dir / "study.json"} '
            "(see docs/DEPLOYMENT.md, Faults)"
        )
    manifest = store.read_round(last)
    model = _global_after(store, manifest)
    if to_hex(model.digest()) != manifest["aggregate"]["hash"]:
        raise ResumeError(
            f"round {last}: the stored global model hashes to {to_hex(model.digest())}, "
            f"the manifest records {manifest['aggregate']['hash']}"
        )
    log.warning(
        "resuming study %s at round %d (rounds 1..%d recorded%s)",
        spec["study_id"],
        last + 1,
        last,
        " on chain" if client is not None else "",
    )
    return last + 1, model


# -- where the study stands ------------------------------------------------------------


def _last_recorded_round(spec: dict[str, Any], store: ArtifactStore, client: Any, initial: ModelPayload) -> int:
    manifests = set(store.round_numbers())
    if client is None:
        last = 0
        prev = to_hex(initial.digest())
        while last + 1 in manifests:
            m = store.read_round(last + 1)
            if m["prev_hash"] != prev:
                break
            last, prev = last + 1, m["aggregate"]["hash"]
        return last
    study_id = spec["study_id"]
    last = int(client.last_round(study_id))
    for r in range(1, last + 1):
        if r not in manifests:
            raise ResumeError(f"round {r} is recorded on chain but {store.rounds_dir} has no manifest for it")
    if last:
        onchain = client.read_round(study_id, last)
        m = store.read_round(last)
        if m["aggregate"]["hash"] != to_hex(onchain.aggregate_hash) or m["prev_hash"] != to_hex(
            onchain.prev_global_hash
        ):
            raise ResumeError(
                f"round {last}: the manifest (aggregate {m['aggregate']['hash']}, previous "
                f"{m['prev_hash']}) differs from the chain (aggregate {to_hex(onchain.aggregate_hash)}, "
                f"previous {to_hex(onchain.prev_global_hash)})"
            )
        for r in range(2, last + 1):
            if store.read_round(r)["prev_hash"] != store.read_round(r - 1)["aggregate"]["hash"]:
                raise ResumeError(f"round {r}'s manifest does not continue round {r - 1}'s global model")
    stale = sorted(r for r in manifests if r > last)
    if stale:
        log.warning("round(s) %s have a manifest but were never recorded on chain: they are run again", stale)
    return last


def _global_after(store: ArtifactStore, manifest: dict[str, Any]) -> ModelPayload:
    agg = manifest["aggregate"]
    if manifest.get("encrypted"):
        return ModelPayload(ciphertexts=store.get_blobs(agg["blobs"]), total_weight=float(agg["total_weight"]))
    path = store.checkpoints / f"round_{int(manifest['round']):05d}.npz"
    if path.exists():
        arrays = store.read_checkpoint(int(manifest["round"]))
        if to_hex(ModelPayload(arrays=arrays).digest()) == agg["hash"]:
            return ModelPayload(arrays=arrays)
        log.warning("checkpoint %s does not match the manifest; using the aggregate blob", path)
    return ModelPayload(arrays=parse_canonical_model(store.get_blob(agg["blobs"][0])))


def parse_canonical_model(data: bytes) -> dict[str, np.ndarray]:
    """Inverse of fedledger.hashing.canonical_model_bytes (see docs/HASHES.md)."""
    if not data.startswith(MODEL_DOMAIN):
        raise ResumeError("aggregate blob is not a canonical model")
    pos = len(MODEL_DOMAIN)

    def take(n: int) -> bytes:
        nonlocal pos
        out = data[pos : pos + n]
        if len(out) != n:
            raise ResumeError("truncated canonical model bytes")
        pos += n
        return out

    (count,) = struct.unpack("<I", take(4))
    arrays: dict[str, np.ndarray] = {}
    for _ in range(count):
        (ln,) = struct.unpack("<H", take(2))
        name = take(ln).decode("utf-8")
        (ld,) = struct.unpack("<B", take(1))
        dtype = np.dtype(take(ld).decode("ascii"))
        (ndim,) = struct.unpack("<B", take(1))
        shape = tuple(struct.unpack("<Q", take(8))[0] for _ in range(ndim))
        (nraw,) = struct.unpack("<Q", take(8))
        arrays[name] = np.frombuffer(take(nraw), dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return arrays


# -- the ledger ---------------------------------------------------------------------------


def _ledger_client(spec: dict[str, Any]) -> Any:
    """The aggregator's LedgerClient for the study's chain (None without a ledger)."""
    chain_spec = spec.get("chain") or {}
    if not chain_spec.get("contract"):
        return None
    from fl_server.ledger_commit import aggregator_client  # defers web3 to studies with a ledger

    return aggregator_client(chain_spec)


def _flush_journal(spec: dict[str, Any], client: Any) -> None:
    from ledger.journal import Journal, RecordSubmitter

    journal = Journal(Path(spec["run_dir"]))
    pending = journal.pending()
    if pending:
        log.warning(
            "journal holds %d round record(s) never confirmed on chain (rounds %s): submitting them first",
            len(pending),
            [r.round for r in pending],
        )
        RecordSubmitter(
            client=client, journal=journal, limit_s=float(spec["chain"].get("record_timeout_s", 120))
        ).flush()


# -- outcomes of earlier rounds -------------------------------------------------------------


def save_outcome(run_dir: Path, outcome: RoundOutcome) -> None:
    """Append one finished round's outcome (fsynced) so a resumed study can report it."""
    path = Path(run_dir) / OUTCOMES_NAME
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(round_entry(outcome)), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def earlier_outcomes(spec: dict[str, Any], start_round: int) -> list[RoundOutcome]:
    """Outcomes of rounds before ``start_round`` (a resumed study), one per round, in order."""
    if start_round <= 1 or not resume_requested(spec):
        return []
    run_dir = Path(spec["run_dir"])
    saved: dict[int, dict[str, Any]] = {}
    path = run_dir / OUTCOMES_NAME
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn last line
            saved[int(entry["round"])] = entry
    store = ArtifactStore(run_dir)
    ledger = _journal_receipts(spec)
    out = []
    for r in range(1, start_round):
        manifest = store.read_round(r)
        entry = saved.get(r)
        if entry is not None and entry.get("aggregate_hash") == manifest["aggregate"]["hash"]:
            entry = dict(entry)
            entry["server_round"] = entry.pop("round")
            out.append(RoundOutcome(**entry))
            continue
        log.warning("round %d: no saved outcome; reporting it from its manifest (no evaluation metrics)", r)
        out.append(
            RoundOutcome(
                server_round=r,
                prev_hash=manifest["prev_hash"],
                aggregate_hash=manifest["aggregate"]["hash"],
                participants=[u["hospital"] for u in manifest["updates"]],
                rejected=[],
                total_examples=int(manifest["aggregate"]["total_weight"]),
                metrics={"accuracy": None, "auc": None, "loss": None},
                per_hospital={},
                train_loss=None,
                bytes_per_hospital=0.0,
                duration_s=0.0,
                ledger=ledger.get(r),
                privacy=_signed_epsilons(manifest),
            )
        )
    return out


def _signed_epsilons(manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each hospital's cumulative epsilon as its signed commitment states it (hospitals that spent any)."""
    from fedledger.commitment import SignedCommitment, micro_to_epsilon  # defers eth_account to this rare path

    out = {}
    for u in manifest["updates"]:
        if not u.get("commitment"):
            continue
        signed = SignedCommitment.from_json(
            u["commitment"],
            study_id=manifest["study_id"],
            round=int(manifest["round"]),
            prev_global_hash=manifest["prev_hash"],
            update_hash=u["update_hash"],
            sample_count=int(u["num_examples"]),
        )
        if signed.commitment.epsilon_micro:
            out[u["hospital"]] = {"epsilon": micro_to_epsilon(signed.commitment.epsilon_micro)}
    return out


def _journal_receipts(spec: dict[str, Any]) -> dict[int, dict[str, Any]]:
    if not (spec.get("chain") or {}).get("contract"):
        return {}
    from ledger.journal import Journal

    out = {}
    for key, done in Journal(Path(spec["run_dir"])).submitted().items():
        out[int(key.rsplit(":", 1)[1])] = {"tx": done.get("tx_hash"), "block": done.get("block"), "gas_used": None}
    return out
