"""The round protocol's overlap of the commit with the evaluation dispatch, on a recording fake grid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fedledger.round_task import EvaluationReport, TrainReport
from fedledger.wire import ModelPayload, decode, encode
from fl_server.round_protocol import send_and_receive_around


class RecordingGrid:
    """Answers each pushed message on the second pull; logs push/pull order."""

    pull_interval = 0.0

    def __init__(self) -> None:
        self.log: list[str] = []
        self.pulls = 0

    def push_messages(self, messages):
        self.log.append("push")
        return [f"id-{m}" for m in messages]

    def pull_messages(self, ids):
        self.log.append("pull")
        self.pulls += 1
        if self.pulls < 2:
            return []
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)) for i in sorted(ids)]


def test_work_runs_between_the_push_and_the_first_pull():
    # arrange
    grid = RecordingGrid()
    # act
    replies, result = send_and_receive_around(grid, ["a", "b"], lambda: grid.log.append("commit") or "receipt", 5.0)
    # assert
    assert grid.log == ["push", "commit", "pull", "pull"]
    assert result == "receipt" and sorted(r.metadata.reply_to_message_id for r in replies) == ["id-a", "id-b"]


def test_a_failed_commit_stops_before_anything_is_pulled():
    grid = RecordingGrid()

    def commit():
        raise RuntimeError("chain down")

    with pytest.raises(RuntimeError, match="chain down"):
        send_and_receive_around(grid, ["a"], commit, 5.0)
    assert grid.log == ["push"]


# -- the round task and reports: the wire schema ------------------------------------------------

SPEC = {
    "study_id": "0x" + "11" * 32,
    "keys": {"fingerprint": "0x" + "ee" * 32},
    "chain": {"contract": "0x" + "cd" * 20, "chain_id": 31337},
    "config": {
        "model": {"name": "mlp", "hidden": 16},
        "seed": 7,
        "train": {"local_epochs": 2, "batch_size": 32, "lr": 1, "momentum": 0.0, "weight_decay": 0.0},
        "num_rounds": 5,
        "num_hospitals": 4,
        "strategy": {"name": "fedavg"},
        "ledger": {"release_quorum": None},
        "privacy": {"enabled": True, "target_epsilon": 3.0, "delta": None},
        "encryption": {"enabled": True},
    },
}
QUORUM = 3  # a majority of the 4 hospitals


def test_the_study_task_goes_on_the_wire_with_the_keys_and_values_of_the_old_layout():
    from fl_server.study import round_task

    # act
    wire = round_task(SPEC).for_round(3, "0x" + "ab" * 32).to_wire()
    # assert: the old layout's keys in their order, plus the four protocol-v3 keys after num-rounds
    # and the protocol-v4 keys at the end (docs/INTERFACES.md)
    assert list(wire.items()) == [
        ("model", "mlp"),
        ("hidden", 16),
        ("seed", 7),
        ("local-epochs", 2),
        ("batch-size", 32),
        ("lr", 1.0),
        ("momentum", 0.0),
        ("weight-decay", 0.0),
        ("num-rounds", 5),
        ("strategy", "fedavg"),
        ("proximal-mu", 0.0),
        ("on-bad-aggregate", "keep-previous"),
        ("release-quorum", QUORUM),
        ("privacy", '{"enabled": true, "target_epsilon": 3.0, "delta": null}'),
        ("encrypted", True),
        ("context-fingerprint", "0x" + "ee" * 32),
        ("ledger", True),
        ("chain-id", 31337),
        ("contract", "0x" + "cd" * 20),
        ("prev-hash", "0x" + "ab" * 32),
        ("study-id", "0x" + "11" * 32),
        ("server-round", 3),
        ("task", "binary"),  # protocol v4: the study's task type, the model's output count and the task options, last
        ("num-outputs", 1),
        ("server-lr", 0.0),
        ("server-momentum", 0.0),
        ("server-beta1", 0.0),
        ("server-beta2", 0.0),
        ("server-tau", 0.0),
        ("personalisation-epochs", 0),
        ("task-options", ""),
    ]
    assert isinstance(wire["lr"], float) and isinstance(wire["encrypted"], bool)


def test_a_round_task_reads_back_and_names_a_missing_or_bad_key():
    from fedledger.round_task import RoundMessageError, RoundTask
    from fl_server.study import round_task

    task = round_task(SPEC).for_round(3, "0x" + "ab" * 32)
    wire = task.to_wire()
    assert RoundTask.from_wire(wire) == task
    assert RoundTask.from_wire(ConfigRecord(wire)) == task
    assert RoundTask.from_wire(wire).privacy == {"enabled": True, "target_epsilon": 3.0, "delta": None}
    with pytest.raises(RoundMessageError, match="lacks 'prev-hash'"):
        RoundTask.from_wire({k: v for k, v in wire.items() if k != "prev-hash"})
    with pytest.raises(RoundMessageError, match="'server-round' must be an integer"):
        RoundTask.from_wire({**wire, "server-round": "3"})
    with pytest.raises(RoundMessageError, match="'privacy' is not JSON"):
        RoundTask.from_wire({**wire, "privacy": "{"})
    # keys a hospital always read with a default may be absent
    optional = ("seed", "privacy", "encrypted", "context-fingerprint", "ledger", "chain-id", "contract")
    bare = RoundTask.from_wire({k: v for k, v in wire.items() if k not in optional})
    assert (bare.seed, bare.privacy, bare.encrypted, bare.ledger, bare.contract) == (0, {}, False, False, "")


def test_reports_read_back_and_keep_their_wire_keys():
    from fedledger.round_task import EvaluationReport, RoundMessageError, TrainReport

    train = TrainReport(num_examples=61, train_loss=0.25, epsilon=1.5, delta=1e-5, hospital="h0", accountant="rdp")
    metrics, info = train.to_wire()
    assert list(metrics) == ["num-examples", "train-loss", "epsilon", "delta"] and info == {
        "hospital": "h0",
        "accountant": "rdp",
    }
    assert TrainReport.from_wire(metrics, info) == train
    assert train.privacy() == {"epsilon": 1.5, "delta": 1e-5, "accountant": "rdp"}
    with pytest.raises(RoundMessageError, match="positive integer"):
        TrainReport.from_wire({**metrics, "num-examples": 0}, info)
    with pytest.raises(RoundMessageError, match="'epsilon' must be a number"):
        TrainReport.from_wire({**metrics, "epsilon": [1.0]}, info)
    one_class = EvaluationReport(loss=0.4, accuracy=0.5, num_examples=30, auc=None, hospital="h2")
    metrics, info = one_class.to_wire()
    assert metrics == {"loss": 0.4, "accuracy": 0.5, "num-examples": 30, "auc": 0.0, "auc-defined": 0}
    assert EvaluationReport.from_wire(metrics, info) == one_class


# -- run_rounds on a fake grid -----------------------------------------------------------------------


class HospitalsGrid:
    """Two hospitals answering in process: each trains to 'global + its id' and evaluates with fixed metrics."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []

    def get_node_ids(self):
        return [1, 2]

    def _answer(self, msg: Message) -> Message:
        task = dict(msg.content.config_records["config"])
        self.tasks.append({"type": msg.metadata.message_type, **task})
        node = msg.metadata.dst_node_id
        if msg.metadata.message_type == "train":
            arrays = {k: v + node for k, v in decode(msg.content.array_records["global"]).arrays.items()}
            report = TrainReport(num_examples=node, train_loss=0.5, hospital=f"h{node}")
            first = {"update": encode(ModelPayload(arrays=arrays))}
        else:
            report = EvaluationReport(loss=0.1, accuracy=0.9, num_examples=10, auc=None, hospital=f"h{node}")
            first = {}
        metrics, info = report.to_wire()
        content = RecordDict({**first, "metrics": MetricRecord(metrics), "info": ConfigRecord(info)})
        return Message(content=content, reply_to=msg)

    def send_and_receive(self, messages, timeout=None):
        return [self._answer(m) for m in messages]


@pytest.fixture
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


def test_run_rounds_chains_the_hashes_and_reports_what_the_strategy_returned(tmp_path, task_identity, monkeypatch):
    # arrange
    from fedledger.hashing import model_hash, to_hex
    from fl_server import round_protocol
    from fl_server.artifact_store import ArtifactStore
    from fl_server.strategy import FedAvgStrategy
    from fl_server.study import round_task

    initial = {"w": np.zeros(2, np.float32)}
    grid = HospitalsGrid()
    monkeypatch.setattr(  # the overlap has its own tests above: here, commit then evaluate
        round_protocol,
        "send_and_receive_around",
        lambda g, msgs, work, timeout: (work(), g.send_and_receive(msgs))[::-1],
    )
    spec = {**SPEC, "chain": None, "config": {**SPEC["config"], "encryption": {"enabled": False}}}
    # act
    final, outcomes = round_protocol.run_rounds(
        grid,
        FedAvgStrategy(template=initial),
        ModelPayload(arrays=initial),
        round_task(spec),
        num_rounds=2,
        min_hospitals=2,
        store=ArtifactStore(tmp_path),
    )
    # assert: (1*(0+1) + 2*(0+2)) / 3 = 5/3 after round 1
    assert outcomes[0].aggregate_hash == to_hex(model_hash({"w": np.full(2, 5 / 3, np.float32)}))
    assert [o.prev_hash for o in outcomes] == [to_hex(model_hash(initial)), outcomes[0].aggregate_hash]
    assert outcomes[1].aggregate_hash == to_hex(final.digest())
    assert outcomes[0].participants == ["h1", "h2"] and outcomes[0].total_examples == 3
    assert outcomes[0].metrics == {"accuracy": 0.9, "auc": None, "loss": 0.1}
    assert set(outcomes[0].per_hospital) == {"h1", "h2"} and outcomes[0].train_loss == pytest.approx(0.5)
    evals = [t for t in grid.tasks if t["type"] == "evaluate" and t["server-round"] == 1]
    assert {t["prev-hash"] for t in evals} == {outcomes[0].aggregate_hash}
    manifest = ArtifactStore(tmp_path).read_round(1)
    assert manifest["aggregate"]["hash"] == outcomes[0].aggregate_hash
    assert [u["update_hash"] for u in manifest["updates"]] == [
        to_hex(model_hash({"w": np.full(2, 1.0, np.float32)})),
        to_hex(model_hash({"w": np.full(2, 2.0, np.float32)})),
    ]


def test_the_round_manifest_says_what_drew_each_dp_hospitals_noise(tmp_path):
    # arrange: a DP hospital that drew its noise from the OS, a DP one seeded, one without DP
    from fl_server.artifact_store import ArtifactStore
    from fl_server.round_protocol import write_manifest
    from fl_server.validation import TrainReply

    def update(node: int, source: str | None) -> TrainReply:
        payload = ModelPayload(arrays={"w": np.full((2,), float(node), np.float32)})
        report = TrainReport(num_examples=10, epsilon=0.5 if source else None, noise_source=source)
        return TrainReply(node, f"h{node}", payload, report, None)

    accepted = [update(1, "os-entropy"), update(2, "seeded"), update(3, None)]
    store = ArtifactStore(tmp_path)
    aggregate = ModelPayload(arrays={"w": np.ones((2,), np.float32)})
    # act
    manifest = write_manifest(store, "0x" + "11" * 32, 1, "0x" + "22" * 32, aggregate, accepted)
    # assert: the hospital's own statement, kept per update; absent without DP
    assert [u.get("noise_source") for u in manifest["updates"]] == ["os-entropy", "seeded", None]
    assert "noise_source" not in manifest["updates"][2]
    assert store.read_round(1)["updates"][0]["noise_source"] == "os-entropy"


def test_results_record_the_protocol_as_it_ran_with_defaults_resolved():
    from fedledger.protocol import PROTOCOL_FIELDS
    from fl_server.study import protocol_record

    record = protocol_record({**SPEC, "protocol_hash": "0x" + "77" * 32})

    assert record["hash"] == "0x" + "77" * 32
    assert record["release-quorum"] == QUORUM and SPEC["config"]["ledger"]["release_quorum"] is None
    assert record["strategy"] == "fedavg" and record["on-bad-aggregate"] == "keep-previous"
    assert list(record) == ["hash", *(name for name, _, _ in PROTOCOL_FIELDS)]
