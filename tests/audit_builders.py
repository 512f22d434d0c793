"""What the auditor's tests build alike: a deployed StudyLedger, a registered study, a hospital's signed reply.

Shared by tests/test_audit.py (studies recorded through the client) and
tests/test_audit_merkle.py (studies recorded through the server's
LedgerCommit), so both audit studies made the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from fedledger import ckks
from fedledger.commitment import Domain, RoundCommitment, epsilon_to_micro, sign_commitment
from fedledger.hashing import ciphertexts_hash, model_hash, sha256, to_hex
from fedledger.model_io import flatten, unflatten
from fedledger.release_attestation import ModelRelease, sign_release
from fedledger.wire import ModelPayload
from ledger.chains import Chain, start_chain
from ledger.client import LedgerClient


def deployed_ledger(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """An in-process eth_tester chain with a fresh StudyLedger, and a folder for the studies' run dirs."""
    chain = start_chain("eth_tester", tmp_path_factory.mktemp("chain"))
    client = LedgerClient.deploy(chain.w3, chain.admin)
    return SimpleNamespace(chain=chain, client=client, root=tmp_path_factory.mktemp("studies"))


def register_consenting(
    chain: Chain,
    client: LedgerClient,
    study_id: bytes,
    initial_model_hash: bytes,
    context_hash: bytes | str,
    accounts: Sequence[Any],
    budget: float,
    max_samples: int = 10**6,
    release_quorum: int = 1,
    config_hash: bytes = sha256(b"cfg"),
) -> int:
    """Register the study for a day with ``accounts`` as its hospitals, each consenting with a cohort cap of
    ``max_samples``; its first block."""
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 86400
    start_block = chain.w3.eth.block_number + 1
    client.register_study(
        study_id,
        config_hash,
        initial_model_hash,
        context_hash,
        "test",
        chain.aggregator.address,
        expiry,
        [a.address for a in accounts],
        [epsilon_to_micro(budget)] * len(accounts),
        release_quorum,
        sender=chain.admin,
    )
    for a in accounts:
        client.consent(study_id, a, max_samples)
    return start_block


def release_signatures(
    client: LedgerClient, accounts: Sequence[Any], study_id: bytes, r: int, model_hash: bytes
) -> list[bytes]:
    """Each hospital's EIP-712 ModelRelease signature over ``model_hash`` for round ``r`` (what releaseModel takes)."""
    return [sign_release(a, client.domain(), ModelRelease(study_id, r, model_hash)) for a in accounts]


def start_hash(sec: Any, agg: ModelPayload, template: dict[str, np.ndarray]) -> bytes:
    """The hash of the plaintext model a hospital trains from after ``agg``: decrypted, divided by its weight."""
    flat = ckks.decrypt_update(sec, agg.ciphertexts, flatten(template).size, agg.total_weight)
    return model_hash(unflatten(flat, template))


def signed_reply(
    sec: Any,
    rng: np.random.Generator,
    n: int,
    dom: Domain,
    study_id: bytes,
    r: int,
    prev: bytes,
    i: int,
    account: Any,
    start: bytes,
) -> SimpleNamespace:
    """Hospital ``i``'s encrypted update of ``n`` values in round ``r``, trained from the plaintext model
    hashing to ``start``, as the server keeps its reply.

    ``commitment`` is the signed record of the reply; ``c`` and ``sig`` are the
    commitment and signature to record on chain.
    """
    n_k = int(rng.integers(5, 50))
    blobs = ckks.encrypt_update(sec, rng.normal(size=n) * 0.1, n_k)
    eps = epsilon_to_micro(0.4 * r + 0.05 * i)
    c = RoundCommitment(study_id, r, prev, ciphertexts_hash(blobs), n_k, eps, start)
    sig = sign_commitment(account, dom, c)
    return SimpleNamespace(
        hospital=f"hospital_{i}",
        node_id=100 + i,
        num_examples=n_k,
        payload=ModelPayload(ciphertexts=blobs),
        commitment={
            "hospital": f"hospital_{i}",
            "address": account.address,
            "update-hash": to_hex(c.update_hash),
            "epsilon-micro": c.epsilon_micro,
            "start-model-hash": to_hex(start),
            "signature": "0x" + sig.hex(),
        },
        c=c,
        sig=sig,
    )
