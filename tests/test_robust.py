"""Robust aggregation (median, trimmed mean, Krum) with Flower's own functions, on hand-checkable updates."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

from fedledger.hashing import model_hash, to_hex
from fedledger.round_task import EvaluationReport, TrainReport
from fedledger.strategies import StrategyChoice, check_strategy
from fedledger.wire import ModelPayload, decode, encode
from fl_server.robust import RobustStrategy, strategy_for
from fl_server.strategy import FedAvgStrategy, RoundStrategy
from fl_server.validation import TrainReply, ValidationOutcome

# four updates of one 3-vector: per coordinate, sorted
#   w0: 1, 2, 3, 100   w1: -1, 0, 0, 50   w2: 4, 5, 6, 7
UPDATES = [[1.0, 0.0, 4.0], [2.0, -1.0, 5.0], [3.0, 0.0, 6.0], [100.0, 50.0, 7.0]]
SAMPLES = [10, 20, 30, 40]
MEDIAN = StrategyChoice("fedmedian")
TRIMMED = StrategyChoice("fedtrimmedavg", beta=0.25)


def outcome(updates: list[list[float]], samples: list[int]) -> ValidationOutcome:
    replies = [
        TrainReply(i, f"h{i}", ModelPayload(arrays={"w": np.array(u, np.float32)}), TrainReport(num_examples=n), None)
        for i, (u, n) in enumerate(zip(updates, samples, strict=True))
    ]
    return ValidationOutcome(accepted=replies, rejected=[])


def combined(choice: StrategyChoice, updates=UPDATES, samples=SAMPLES) -> np.ndarray:
    result = RobustStrategy(choice).aggregate_outcome(1, outcome(updates, samples))
    assert result.aggregate is not None
    return result.aggregate.arrays["w"]


def flower(fn, *args) -> np.ndarray:
    return np.asarray(fn([([np.array(u, np.float64)], n) for u, n in zip(UPDATES, SAMPLES, strict=True)], *args)[0])


def test_median_is_flowers_and_the_mean_of_the_middle_two():
    # act
    w = combined(MEDIAN)
    # assert: (2+3)/2, (0+0)/2, (5+6)/2, whatever the sample counts
    np.testing.assert_allclose(w, [2.5, 0.0, 5.5])
    np.testing.assert_allclose(w, flower(aggregate_median))
    assert w.dtype == np.float32


def test_trimmed_mean_cuts_one_of_four_at_each_end():
    w = combined(TRIMMED)
    np.testing.assert_allclose(w, [2.5, 0.0, 5.5])  # int(0.25 * 4) = 1 cut each end: the middle two
    np.testing.assert_allclose(w, flower(aggregate_trimmed_avg, 0.25))
    five = combined(StrategyChoice("fedtrimmedavg", beta=0.2), [[0.0], [1.0], [2.0], [3.0], [1000.0]], [1] * 5)
    np.testing.assert_allclose(five, [2.0])  # int(0.2 * 5) = 1: mean of 1, 2, 3


def test_a_round_too_small_for_beta_to_cut_says_it_is_the_plain_mean(caplog):
    three = combined(TRIMMED, UPDATES[:3], SAMPLES[:3])  # int(0.25 * 3) = 0: a hospital dropped out
    np.testing.assert_allclose(three, [2.0, -1 / 3, 5.0], rtol=1e-6)
    assert "cuts none: this round is their plain mean" in caplog.text


def test_krum_picks_the_update_nearest_its_neighbours_and_multi_krum_averages_the_best_by_samples():
    # arrange: squared distances d(0,1)=3, d(0,2)=4, d(1,2)=3; with f=1 each update scores its n-f-2 = 1 nearest
    # scores: 0 -> 3, 1 -> 3, 2 -> 3, 3 -> far; ties go to the first (np.argmin)
    # act
    krum = combined(StrategyChoice("krum", num_malicious=1, multi_krum_m=1))
    multi = combined(StrategyChoice("krum", num_malicious=1, multi_krum_m=3))
    # assert
    np.testing.assert_allclose(krum, UPDATES[0])
    np.testing.assert_allclose(krum, flower(aggregate_krum, 1, 0))
    # the three honest updates, weighted 10, 20, 30: (10*1 + 20*2 + 30*3) / 60 = 140/60
    np.testing.assert_allclose(multi, [140 / 60, -20 / 60, (40 + 100 + 180) / 60], rtol=1e-6)
    np.testing.assert_allclose(multi, flower(aggregate_krum, 1, 3), rtol=1e-6)


def test_the_strategy_for_a_choice_is_the_rule_it_names():
    assert type(strategy_for(StrategyChoice("fedavg"), 1.0, 1.0, 0, None)) is FedAvgStrategy
    assert type(strategy_for(StrategyChoice("fedprox", proximal_mu=0.1), 1.0, 1.0, 0, None)) is FedAvgStrategy
    robust = strategy_for(TRIMMED, 1.0, 1.0, 0, None)
    assert isinstance(robust, RobustStrategy) and robust.choice == TRIMMED


def test_a_robust_rule_with_encryption_is_refused_saying_why():
    for name, extra in (("fedmedian", {}), ("fedtrimmedavg", {"beta": 0.25}), ("krum", {"num_malicious": 1})):
        with pytest.raises(ValueError, match="sees only ciphertexts"):
            check_strategy(
                {"name": name, **extra, "multi_krum_m": 1 if name == "krum" else None}, encrypted=True, num_hospitals=4
            )
    assert check_strategy({"name": "fedavg"}, encrypted=True, num_hospitals=4) == StrategyChoice("fedavg")


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"name": "fedmedain"}, "did you mean 'fedmedian'"),
        ({"name": "fedavg", "beta": 0.25}, "beta=0.25 is fedtrimmedavg's setting"),
        ({"name": "fedmedian", "num_malicious": 1}, "num_malicious=1 is krum's setting"),
        ({"name": "fedtrimmedavg", "beta": 0.2}, r"cuts int\(0.2 x 4\) = 0 of the 4 hospitals"),
        ({"name": "fedtrimmedavg"}, "needs strategy.beta"),
        ({"name": "fedtrimmedavg", "beta": 0.5}, r"must be in \(0, 0.5\)"),
        ({"name": "krum", "num_malicious": 1}, "needs strategy.num_malicious and strategy.multi_krum_m"),
        ({"name": "krum", "num_malicious": 4, "multi_krum_m": 1}, "between 0 and 3, got 4"),
        ({"name": "krum", "num_malicious": 1, "multi_krum_m": 4}, "between 1 .Krum. and 3"),
        ({"name": "fedtrimmedavg", "beta": 0.25, "fraction_train": 0.5}, "= 0 of the 2 hospitals a round trains"),
    ],
)
def test_a_setting_that_could_not_run_as_recorded_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        check_strategy(settings, encrypted=False, num_hospitals=4)


# -- four hospitals through the round protocol, one sending a huge update ------------------------------

TARGET = np.array([1.0, -2.0], np.float32)
OFFSET = {1: 0.03, 2: -0.02, 3: 0.01}  # each honest hospital's own optimum is TARGET + its offset
HUGE = 1e6


class FourHospitals:
    """Honest hospitals step halfway to their optimum; hospital 4 (if present) answers a huge update."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def send_and_receive(self, messages, timeout=None) -> list[Message]:
        return [self.answer(m) for m in messages]

    def answer(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        if msg.metadata.message_type == "train":
            w = decode(msg.content.array_records["global"]).arrays["w"]
            own = np.full(2, HUGE, np.float32) if node == 4 else (w + TARGET + OFFSET[node]) / 2
            report: TrainReport | EvaluationReport = TrainReport(num_examples=10 * node, hospital=f"h{node}")
            first = {"update": encode(ModelPayload(arrays={"w": own.astype(np.float32)}))}
        else:
            report, first = EvaluationReport(loss=0.1, accuracy=0.9, num_examples=10, auc=None, hospital=f"h{node}"), {}
        metrics, info = report.to_wire()
        return Message(
            RecordDict({**first, "metrics": MetricRecord(metrics), "info": ConfigRecord(info)}), reply_to=msg
        )


def run_study(strategy: RoundStrategy, nodes: list[int], tmp_path, monkeypatch):
    from fl_server import round_protocol
    from fl_server.artifact_store import ArtifactStore
    from fl_server.study import round_task
    from tests.test_round_protocol import SPEC

    monkeypatch.setattr(  # evaluation after the commit, in process (the overlap has its own tests)
        round_protocol, "send_and_receive_around", lambda g, msgs, work, timeout: (g.send_and_receive(msgs), work())
    )
    spec = {**SPEC, "chain": None, "config": {**SPEC["config"], "encryption": {"enabled": False}}}
    initial = {"w": np.zeros(2, np.float32)}
    store = ArtifactStore(tmp_path)
    final, outcomes = round_protocol.run_rounds(
        FourHospitals(nodes), strategy, ModelPayload(arrays=initial), round_task(spec), 4, 2, store
    )
    return final.arrays["w"], outcomes, store


@pytest.fixture
def task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0


@pytest.mark.parametrize(
    "choice",
    [MEDIAN, TRIMMED, StrategyChoice("krum", num_malicious=1, multi_krum_m=1)],
    ids=lambda c: c.name,
)
def test_one_huge_update_destroys_fedavg_and_not_the_robust_rules(choice, tmp_path, monkeypatch, task_identity):
    # arrange: the honest hospitals alone, with FedAvg, are the reference
    template = {"w": np.zeros(2, np.float32)}
    honest, _, _ = run_study(FedAvgStrategy(template=template), [1, 2, 3], tmp_path / "honest", monkeypatch)
    # act
    attacked, _, _ = run_study(FedAvgStrategy(template=template), [1, 2, 3, 4], tmp_path / "fedavg", monkeypatch)
    robust, outcomes, store = run_study(
        RobustStrategy(choice, template=template), [1, 2, 3, 4], tmp_path / "r", monkeypatch
    )
    # assert: FedAvg's model is the attacker's; the robust one within the honest offsets of the honest run
    assert np.abs(attacked - honest).max() > 1e4
    assert np.abs(robust - honest).max() < 0.05
    # the same records as FedAvg: every committed update, the sum of committed samples, the robust aggregate's hash
    manifest = store.read_round(4)
    assert outcomes[-1].participants == ["h1", "h2", "h3", "h4"] and outcomes[-1].total_examples == 100
    assert len(manifest["updates"]) == 4 and manifest["aggregate"]["total_weight"] == 100
    assert manifest["aggregate"]["hash"] == outcomes[-1].aggregate_hash == to_hex(model_hash({"w": robust}))


# -- as a researcher runs it ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_trimmed_mean_study_runs_records_every_commitment_and_passes_the_audit(tmp_path):
    import json

    from tests.test_simulation import run_study as run_researcher_command

    # act: 4 hospitals, beta 0.25 (one cut at each end), a real chain (eth_tester) and the audit
    proc = run_researcher_command(
        tmp_path,
        "strategy=fedtrimmedavg",
        "encryption=off",
        "privacy=off",
        "ledger=eth_tester",
        "num_rounds=2",
        "baselines=false",
    )
    # assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["strategy"]["name"] == "fedtrimmedavg" and results["config"]["strategy"]["beta"] == 0.25
    assert results["final"]["accuracy"] > 0.85
    assert [len(r["participants"]) for r in results["rounds"]] == [4, 4] and len(results["ledger"]["rounds"]) == 2
    manifest = json.loads((tmp_path / "artifacts" / "rounds" / "round_00002.json").read_text())
    assert manifest["aggregate"]["total_weight"] == sum(u["num_examples"] for u in manifest["updates"])
    assert results["audit"]["ok"] is True


@pytest.mark.slow
def test_the_researchers_command_refuses_a_plus_key_before_anything_runs(tmp_path):
    from tests.test_simulation import run_study as run_researcher_command

    proc = run_researcher_command(tmp_path / "run", "+num_round=3", "ledger=none", "encryption=off")
    assert proc.returncode != 0
    assert "'num_round' (did you mean 'num_rounds'?)" in proc.stdout + proc.stderr
    assert not (tmp_path / "run" / "study.json").exists()
