"""The inflated-sample attack at the aggregator (issue 18): a hospital claiming more records than it registered
is dropped before aggregation, with its node id and a named reason, and the honest hospitals' round is recorded.

A real eth-tester chain and StudyLedger: the cap the aggregator checks is the one each hospital registered in
its own consent transaction.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fedledger.commitment import RoundCommitment, SignedCommitment
from fedledger.hashing import model_hash, sha256, to_hex
from fedledger.round_task import RoundTask
from fedledger.wire import ModelPayload, encode
from fl_server.artifact_store import ArtifactStore
from fl_server.ledger_commit import SAMPLE_COUNT_ABOVE_CAP, LedgerCommit
from fl_server.round_protocol import write_manifest
from fl_server.strategy import FedAvgStrategy
from fl_server.validation import parse_train_replies
from tests.audit_builders import deployed_ledger, register_consenting

TEMPLATE = {"w": np.zeros((2,), np.float32)}


@pytest.fixture(autouse=True)
def task_identity():
    """Flower messages need a run id; the simulation sets one, unit tests set it here."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


def _reply(node: int, hospital: str, w: list[float], n: int, signer, dom, study: bytes, prev: bytes) -> Message:
    payload = ModelPayload(arrays={"w": np.array(w, np.float32)})
    c = RoundCommitment(study, 1, prev, payload.digest(), n, 1_000, prev)
    instruction = Message(
        content=RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=node, message_type="train"
    )
    content = RecordDict(
        {
            "update": encode(payload),
            "metrics": MetricRecord({"num-examples": n, "train-loss": 0.5}),
            "info": ConfigRecord({"hospital": hospital}),
            "commitment": ConfigRecord(SignedCommitment.sign(signer, dom, c, hospital).to_json()),
        }
    )
    return Message(content=content, reply_to=instruction)


def test_aggregator_drops_a_hospital_claiming_more_samples_than_it_registered(tmp_path_factory, caplog):
    # Arrange: three hospitals registered 100 records each; hospital_3 claims 100,000 (signed, so only the cap
    # stands in its way)
    env = deployed_ledger(tmp_path_factory)
    chain, client = env.chain, env.client
    accounts = chain.funded_accounts[2:5]
    names = ["hospital_1", "hospital_2", "hospital_3"]
    study, prev = sha256(b"inflated-sample-attack"), model_hash(TEMPLATE)
    register_consenting(chain, client, study, prev, b"\x00" * 32, accounts, 10.0, max_samples=100)
    commit = LedgerCommit(
        FedAvgStrategy(template=TEMPLATE),
        client.with_account(chain.aggregator),
        to_hex(study),
        dict(zip(names, (a.address for a in accounts))),
        env.root,
        30.0,
    )
    task = RoundTask(
        model="logreg", hidden=0, local_epochs=1, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0,
        num_rounds=1, study_id=to_hex(study), server_round=1, prev_hash=to_hex(prev),
    )  # fmt: skip
    grid = type("Grid", (), {"get_node_ids": lambda self: [1, 2, 3]})()
    commit.configure_train(1, encode(ModelPayload(arrays=TEMPLATE)), ConfigRecord(task.to_wire()), grid)
    dom = client.domain()
    replies = [
        _reply(1, "hospital_1", [1.0, 1.0], 100, accounts[0], dom, study, prev),
        _reply(2, "hospital_2", [3.0, 3.0], 100, accounts[1], dom, study, prev),
        _reply(3, "hospital_3", [1000.0, -1000.0], 100_000, accounts[2], dom, study, prev),
    ]
    # Act
    result = commit.aggregate_outcome(1, parse_train_replies(replies))
    manifest = write_manifest(
        ArtifactStore(env.root), to_hex(study), 1, to_hex(prev), result.aggregate, result.accepted
    )
    receipt = commit.commit_round(1, manifest)
    # Assert
    assert [r.hospital for r in result.accepted] == ["hospital_1", "hospital_2"]
    (dropped,) = result.rejected
    assert (dropped.node_id, dropped.hospital) == (3, "hospital_3")
    assert dropped.reason.startswith(f"commitment rejected: {SAMPLE_COUNT_ABOVE_CAP}: hospital_3 claims 100000")
    assert "node=3 hospital=hospital_3" in caplog.text and SAMPLE_COUNT_ABOVE_CAP in caplog.text
    assert result.aggregate.arrays["w"].tolist() == [2.0, 2.0]  # the honest average, untouched
    info = client.read_round(study, 1)
    assert (info.participants, info.total_samples, receipt["block"]) == (2, 200, info.block_number)
