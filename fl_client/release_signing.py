"""The hospital's side of a model release: it signs the hash of the checkpoint it decrypted itself.

A release counts on-chain only with ``releaseQuorum`` such signatures
(``StudyLedger.releaseModel``, docs/LEDGER.md), so a coordinator cannot
release a model the hospitals did not obtain. The checkpoint is hashed
exactly as it is released (experiments/release.py): an encrypted aggregate
decrypted, divided by the weight it came with and rounded to the release grid
(:func:`fedledger.ckks.decrypt_for_release`); a plaintext aggregate as received.
With a server optimizer under CKKS the hospitals use the stepped model, not
the aggregate (fl_client/server_step.py): that model, rounded to the same grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedledger.hashing import from_hex, model_hash
from fedledger.model_io import num_params, unflatten
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload
from fl_client import hospital_runtime as rt
from fl_client.settings import HospitalSettings


def released_arrays(
    settings: HospitalSettings, payload: ModelPayload, template: dict[str, Any], stepped: np.ndarray | None = None
) -> dict[str, Any]:
    """The global model of the payload as the study would release it (``stepped``: the server optimizer's model)."""
    if stepped is not None:
        from fedledger.ckks.release import round_for_release

        return unflatten(round_for_release(stepped), template)
    if not payload.encrypted:
        return payload.arrays
    from fedledger.ckks import decrypt_for_release  # defers TenSEAL to encrypted studies

    flat = decrypt_for_release(
        rt.secret_context(settings), payload.ciphertexts, num_params(template), total_weight=payload.total_weight
    )
    return unflatten(flat, template)


def release_attestation(
    settings: HospitalSettings,
    task: RoundTask,
    payload: ModelPayload,
    template: dict[str, Any],
    stepped: np.ndarray | None = None,
) -> dict[str, str] | None:
    """This hospital's signed ModelRelease for the evaluated round's model (the evaluation reply's ``release``),
    or None when the study has no ledger or the hospital no key."""
    if not task.ledger or not settings.eth_key:
        return None
    from fedledger.commitment import domain  # defers eth_account
    from fedledger.release_attestation import ModelRelease, ReleaseAttestation
    from ledger.accounts import load_eth_account

    release = ModelRelease(
        from_hex(task.study_id), task.server_round, model_hash(released_arrays(settings, payload, template, stepped))
    )
    signed = ReleaseAttestation.sign(load_eth_account(settings.eth_key), domain(task.chain_id, task.contract), release)
    return signed.to_wire()
