"""A hospital's release signature is over the checkpoint exactly as the study releases it: the hash it signs
from its own decryption equals the hash of the checkpoint experiments/release.py writes and the auditor reads."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger import ckks
from fedledger.commitment import domain
from fedledger.files import load_npz
from fedledger.hashing import from_hex, model_hash, to_hex
from fedledger.model_io import flatten, num_params, unflatten
from fedledger.release_attestation import ModelRelease, ReleaseAttestation, matching_signatures
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload
from fl_client.release_signing import release_attestation
from fl_client.settings import HospitalSettings
from fl_server.artifact_store import ArtifactStore
from ledger.accounts import generate_eth_key

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
STUDY = "0x" + "11" * 32


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return ckks.create_keys(tmp_path_factory.mktemp("ckks"), ckks.preset("ckks_n4096"))


def _task(ledger: bool = True) -> RoundTask:
    return RoundTask(
        model="logreg", hidden=0, local_epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0,
        num_rounds=3, ledger=ledger, chain_id=31337, contract=CONTRACT, study_id=STUDY, server_round=3,
        prev_hash="0x" + "22" * 32,
    )  # fmt: skip


def _settings(tmp_path, keys) -> tuple[HospitalSettings, object]:
    account = generate_eth_key(tmp_path / "eth_key")
    settings = HospitalSettings(
        hospital_id="hospital_0",
        index=0,
        num_hospitals=2,
        seed=0,
        dataset="{}",
        secret_context=str(keys.secret_context),
        eth_key=str(tmp_path / "eth_key"),
    )
    return settings, account


def test_signed_hash_is_the_hash_of_the_released_checkpoint(tmp_path, keys):
    # Arrange: two hospitals' encrypted updates summed by the aggregator (weights 7 and 13)
    rng = np.random.default_rng(5)
    template = {"b": np.zeros((1,), np.float32), "w": np.zeros((6,), np.float32)}
    n = num_params(template)
    sec, pub = ckks.load_secret_context(keys.secret_context), ckks.load_aggregator_context(keys.aggregator_context)
    updates = [ckks.encrypt_update(sec, rng.normal(size=n) * 0.3, k) for k in (7, 13)]
    blobs = ckks.sum_ciphertexts(pub, updates)
    settings, account = _settings(tmp_path, keys)
    # Act: the hospital's evaluate path, then what experiments/release.py writes for the round
    wire = release_attestation(settings, _task(), ModelPayload(ciphertexts=blobs, total_weight=20.0), template)
    released = unflatten(ckks.decrypt_for_release(sec, blobs, n, total_weight=float(20)), template)
    path = ArtifactStore(tmp_path / "run").write_checkpoint(3, released)
    # Assert
    assert wire is not None
    att = ReleaseAttestation.from_wire(wire)
    assert att is not None and att.signer == account.address
    assert att.model_hash == model_hash(released) == model_hash(load_npz(path))
    assert np.array_equal(flatten(released), ckks.round_for_release(flatten(released)))  # on the release grid
    release = ModelRelease(from_hex(STUDY), 3, model_hash(released))
    sigs, left_out = matching_signatures(
        domain(31337, CONTRACT), release, {"hospital_0": wire}, {"hospital_0": account.address}
    )
    assert sigs == [att.signature] and left_out == {}


def test_plaintext_model_is_signed_as_received_and_no_ledger_signs_nothing(tmp_path, keys):
    # Arrange
    arrays = {"b": np.array([0.5], np.float32), "w": np.arange(6, dtype=np.float32)}
    settings, _ = _settings(tmp_path, keys)
    # Act
    wire = release_attestation(settings, _task(), ModelPayload(arrays=arrays), arrays)
    none = release_attestation(settings, _task(ledger=False), ModelPayload(arrays=arrays), arrays)
    # Assert
    assert wire is not None and wire["release-model-hash"] == to_hex(model_hash(arrays))
    assert none is None
