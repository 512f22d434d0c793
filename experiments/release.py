"""Release the study's global checkpoints: decrypt each round's aggregate and record its hash on-chain.

Only key holders (the hospitals) can decrypt; in a simulated study the
launcher holds the hospitals' shared secret context in the run directory and
acts as the consortium's release step. The released plaintext checkpoint is
``checkpoints/round_XXXXX.npz``; its model hash goes on-chain (ModelReleased),
so anyone holding the file can check it is the model the study produced.
The released values are rounded to a grid (fedledger.ckks.release), never the
raw decryption, which beside the stored ciphertext would give away the key;
the on-chain hash is of the rounded checkpoint as written.
"""

from __future__ import annotations

from pathlib import Path

from coordinator.study_setup import PreparedStudy
from fedledger.files import load_npz
from fedledger.hashing import model_hash
from fedledger.model_io import num_params, unflatten
from fl_server.artifact_store import ArtifactStore


def release_checkpoints(prepared: PreparedStudy) -> list[int]:
    spec = prepared.spec
    store = ArtifactStore(Path(spec["run_dir"]))
    template = load_npz(spec["initial_model"])
    ctx = None
    if spec["config"]["encryption"]["enabled"]:
        from fedledger.ckks import decrypt_for_release, load_secret_context

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
    released = []
    for r in store.round_numbers():
        manifest = store.read_round(r)
        if manifest["encrypted"]:
            blobs = store.get_blobs(manifest["aggregate"]["blobs"])
            flat = decrypt_for_release(
                ctx, blobs, num_params(template), total_weight=float(manifest["aggregate"]["total_weight"])
            )
            arrays = unflatten(flat, template)
            store.write_checkpoint(r, arrays)
        else:
            arrays = store.read_checkpoint(r)
        if client is not None:
            client.release_model(spec["study_id"], r, model_hash(arrays))
        released.append(r)
    return released
