"""Release the study's global checkpoints: decrypt each round's aggregate and record its hash on-chain.

Only key holders (the hospitals) can decrypt; in a simulated study the
launcher holds the hospitals' shared secret context in the run directory and
acts as the consortium's release step. The released plaintext checkpoint is
``checkpoints/round_XXXXX.npz``; its model hash goes on-chain (ModelReleased),
so anyone holding the file can check it is the model the study produced.
The released values are rounded to a grid (fedledger.ckks.release), never the
raw decryption, which beside the stored ciphertext would give away the key;
the on-chain hash is of the rounded checkpoint as written.
With a server optimizer (FedAdam...) under CKKS the hospitals use the stepped
model, not the aggregate (fl_client/server_step.py): the release replays the
optimizer over the decrypted aggregates from the initial model, exactly as
each hospital stepped, and releases that model rounded to the grid. A round
whose aggregate the hospitals refused (keep-previous: no step) is not known
to the replay; from there its checkpoints differ from what the hospitals
signed, so they are not released (no quorum), rather than released wrong.

A release counts on-chain only with the study's release quorum of hospital
signatures (``StudyLedger.releaseModel``): each hospital signed, in its
evaluation reply, the hash of the checkpoint it decrypted itself
(``artifacts/releases/``). Only signatures over this checkpoint's hash by the
hospital's registered key are sent; a round without a quorum is not released.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from coordinator.study_setup import PreparedStudy
from fedledger.files import load_npz
from fedledger.hashing import from_hex, model_hash, to_hex
from fedledger.model_io import flatten, num_params, unflatten
from fedledger.server_opt import HeldModel, server_opt_settings
from fl_server.artifact_store import ArtifactStore

log = logging.getLogger("fedledger.release")


def release_checkpoints(prepared: PreparedStudy) -> dict[int, str]:
    """Write each round's checkpoint; return the rounds released on chain with the hash released."""
    spec = prepared.spec
    store = ArtifactStore(Path(spec["run_dir"]))
    template = load_npz(spec["initial_model"])
    ctx = None
    if spec["config"]["encryption"]["enabled"]:
        from fedledger.ckks import decrypt_aggregate, decrypt_for_release, load_secret_context
        from fedledger.ckks.release import check_release_scale, round_for_release

        ctx = load_secret_context(Path(spec["keys"]["secret_context"]))
    client = None
    if prepared.chain is not None and spec.get("chain"):
        from ledger.client import LedgerClient

        client = LedgerClient.at(
            prepared.chain.w3,
            spec["chain"]["contract"],
            prepared.chain.admin,
            deploy_block=int(spec["chain"].get("deploy_block", 0)),
        )
    released: dict[int, str] = {}
    opt = server_opt_settings(spec["config"]["strategy"]) if ctx is not None else None
    held = HeldModel.start(opt, flatten(template)) if opt is not None else None
    if held is not None:
        check_release_scale(ctx)  # as decrypt_for_release does: the stepped model is rounded to the same grid
    for r in store.round_numbers():
        manifest = store.read_round(r)
        if manifest["encrypted"]:
            blobs = store.get_blobs(manifest["aggregate"]["blobs"])
            weight = manifest["aggregate"]["total_weight"]
            if held is not None:
                held.advance(r, decrypt_aggregate(ctx, blobs, num_params(template), int(weight))[0])
                flat = round_for_release(held.model)
            else:
                flat = decrypt_for_release(ctx, blobs, num_params(template), total_weight=float(weight))
            arrays = unflatten(flat, template)
            store.write_checkpoint(r, arrays)
        else:
            arrays = store.read_checkpoint(r)
        digest = model_hash(arrays)
        if client is None or not _release_on_chain(client, spec, store, r, digest):
            continue
        released[r] = to_hex(digest)
    return released


def _release_on_chain(client: Any, spec: dict[str, Any], store: ArtifactStore, r: int, digest: bytes) -> bool:
    """Release round ``r``'s hash with the hospitals' matching ModelRelease signatures; False without a quorum."""
    from fedledger.release_attestation import ModelRelease, matching_signatures

    quorum = client.read_study(spec["study_id"]).release_quorum
    registered = {h["id"]: h["address"] for h in spec["hospitals"]}
    release = ModelRelease(from_hex(spec["study_id"]), r, digest)
    signatures, left_out = matching_signatures(client.domain(), release, store.read_release_attestations(r), registered)
    for hospital, why in left_out.items():
        log.warning("round %d release: %s's signature left out: %s", r, hospital, why)
    if len(signatures) < quorum:
        log.warning(
            "round %d not released on chain: %d hospital signature(s) over %s, the study needs %d",
            r,
            len(signatures),
            to_hex(digest),
            quorum,
        )
        return False
    client.release_model(spec["study_id"], r, digest, signatures)
    return True
