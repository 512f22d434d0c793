"""The weight a hospital divides by, against the chain (issue 19.1): an anvil chain read over JSON-RPC.

The aggregator records an aggregate whose hash (v2) covers one weight and a
``totalSamples`` that is another: every hospital then receives the same
model, but divides by a weight the commitments do not add up to. A hospital
reading the chain refuses it (``total-weight-mismatch``); a weight other than
the one hashed fails the chain's hash (``chain-mismatch``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from fedledger import ckks
from fedledger.hashing import aggregate_hash, model_hash, to_hex
from fedledger.protocol import protocol_hash
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload
from fl_client.chain_view import recorded_total_samples
from fl_client.client_app import train
from fl_client.models import build_model, get_arrays
from tests.conftest_ledger import StudyHarness
from tests.test_aggregate_bounds import N_PARAMS, keys, message, node_config, round_config, task_identity  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def chain_study(ledger_chain, ledger, keys):
    """A study registered with the protocol of the tasks below, round 1 recorded with a weight-hash of 2 W."""
    if ledger_chain.rpc_url is None:
        pytest.skip("the hospital reads over JSON-RPC; eth-tester has no endpoint")
    _, sec, _ = keys
    study_id = os.urandom(32)
    sid = to_hex(study_id)
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    registered = protocol_hash(RoundTask.from_wire(round_config(2, "0x" + "00" * 32, **{"study-id": sid})))
    hospitals = list(ledger_chain.funded_accounts[2:4])
    now = ledger_chain.w3.eth.get_block("latest")["timestamp"]
    ledger.register_study(
        study_id,
        registered,
        model_hash(initial),
        os.urandom(32),
        "test-1.0",
        ledger_chain.aggregator.address,
        now + 3600,
        [h.address for h in hospitals],
        [5_000_000] * 2,
        1,
    )
    for h in hospitals:
        ledger.consent(study_id, h, 1_000)
    study = StudyHarness(
        ledger_chain, ledger, ledger_chain.aggregator, study_id, model_hash(initial), hospitals, [5_000_000] * 2, now
    )
    blobs = ckks.encrypt_update(sec, np.full(N_PARAMS, 0.1), 101.0)
    weight = 50 + 51  # the harness's two commitments
    study.record(1, aggregate=aggregate_hash(blobs, 2 * weight))
    return sid, ledger.address, blobs, weight


def test_the_recorded_total_samples_is_read_by_one_bare_call(chain_study, ledger_chain):
    sid, contract, _, weight = chain_study
    assert recorded_total_samples(ledger_chain.rpc_url, contract, sid, 1) == weight


def test_a_weight_other_than_the_rounds_total_samples_is_refused(chain_study, ledger_chain, keys):
    paths = keys[0]
    sid, contract, blobs, weight = chain_study
    nc = node_config(str(paths.secret_context), **{"chain-rpc": ledger_chain.rpc_url, "contract": contract})
    ctx = Context(run_id=1, node_id=3, node_config=nc, state=RecordDict(), run_config={})

    def refusal(total: int) -> dict:
        payload = ModelPayload(ciphertexts=blobs, total_weight=float(total))
        reply = train(message(payload, round_config(2, to_hex(payload.digest()), **{"study-id": sid})), ctx)
        return dict(reply.content.config_records["refusal"])

    # the weight hashed into the recorded aggregate, but not the samples the commitments add up to
    doubled = refusal(2 * weight)
    assert doubled["code"] == "total-weight-mismatch"
    assert f"chain records {weight} samples for round 1" in doubled["reason"]
    # the commitments' total: not the weight the recorded hash covers
    assert refusal(weight)["code"] == "chain-mismatch"
