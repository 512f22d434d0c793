"""A short DP + CKKS study with one hostile hospital, through the real round protocol and ClientApp handlers.

Four hospitals answer in process (each with its own Flower context); hospital
h4 is honest except in one round, where it replaces its update by a crafted
ciphertext. Its influence is bounded: the honest hospitals refuse that
round's aggregate, train the next round from their last accepted global
model (keep-previous), the final accuracy stays near the honest study's, and
the artifact store's manifests name the round for the audit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message, RecordDict
from rich.console import Console

from fedledger.round_task import Record, RoundTask
from fedledger.wire import ModelPayload, encode
from fl_client.client_app import evaluate_global, train
from fl_client.models import build_model, get_arrays
from ledger.audit.follow import refusal_alerts
from ledger.audit.refusals import store_refusals
from tests.test_aggregate_bounds import N_PARAMS, headroom, hostile_blob, keys, task_identity  # noqa: F401

ROUNDS, ATTACK_ROUND = 4, 2


class HospitalsGrid:
    """Four hospitals answering through the real ClientApp; ``tamper`` rewrites h4's train reply."""

    def __init__(self, secret: Path, tamper: Callable[[int, Message], Message] | None = None) -> None:
        from flwr.app import Context

        self.tamper = tamper
        self.contexts = {
            n: Context(
                run_id=1,
                node_id=n,
                node_config={
                    "hospital-id": f"h{n}",
                    "data-path": "builtin:breast_cancer",
                    "partition-index": n - 1,
                    "num-partitions": 4,
                    "seed": 0,
                    "secret-context": str(secret),
                    "noise-source": "seeded",
                },
                state=RecordDict(),
                run_config={},
            )
            for n in (1, 2, 3, 4)
        }

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, timeout=None):
        out = []
        for m in messages:
            node = m.metadata.dst_node_id
            if m.metadata.message_type == "train":
                reply = train(m, self.contexts[node])
                round_ = int(m.content.config_records[Record.CONFIG]["server-round"])
                if node == 4 and self.tamper is not None:
                    reply = self.tamper(round_, reply)
            else:
                reply = evaluate_global(m, self.contexts[node])
            out.append(reply)
        return out


def wrapping_update(sec) -> Callable[[int, Message], Message]:
    """h4's crafted ciphertext in ATTACK_ROUND: the headroom in every slot, added to itself until it wraps."""

    def tamper(server_round: int, reply: Message) -> Message:
        if server_round != ATTACK_ROUND:
            return reply
        blob = hostile_blob(sec, 0.9 * headroom(sec), times=3)
        content = reply.content
        content.array_records[Record.UPDATE] = encode(ModelPayload(ciphertexts=[blob]))
        return Message(content=content, reply_to=reply)  # type: ignore[arg-type]

    return tamper


def run_grid(grid, strategy, initial: dict, task: RoundTask, rounds: int, store):
    """run_rounds against the in-process grid (evaluation pushed and pulled in order, no Flower grid)."""
    from fl_server import round_protocol

    orig = round_protocol.send_and_receive_around
    round_protocol.send_and_receive_around = lambda g, msgs, work, timeout: (work(), g.send_and_receive(msgs))[::-1]
    try:
        return round_protocol.run_rounds(
            grid, strategy, ModelPayload(arrays=initial), task, num_rounds=rounds, min_hospitals=2, store=store
        )
    finally:
        round_protocol.send_and_receive_around = orig


def run_study(tmp_path: Path, keys_, tamper=None):
    from fl_server.artifact_store import ArtifactStore
    from fl_server.encrypted import EncryptedAggregation
    from fl_server.strategy import FedAvgStrategy

    paths, _, _ = keys_
    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    strategy = EncryptedAggregation(FedAvgStrategy(template=initial), paths.aggregator_context, N_PARAMS, 1 << 26)
    task = RoundTask(
        model="logreg",
        hidden=0,
        local_epochs=2,
        batch_size=32,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        num_rounds=ROUNDS,
        privacy={"enabled": True, "target_epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0},
        encrypted=True,
        context_fingerprint=strategy.fingerprint,
        on_bad_aggregate="keep-previous",
        prev_hash="0x" + "00" * 32,
        study_id="0x" + "22" * 32,
        server_round=0,
    )
    store = ArtifactStore(tmp_path)
    _, outcomes = run_grid(HospitalsGrid(paths.secret_context, tamper), strategy, initial, task, ROUNDS, store)
    return outcomes, store


@pytest.mark.slow
def test_one_crafted_ciphertext_neither_destroys_the_study_nor_goes_unnamed(tmp_path, keys):
    _, sec, _ = keys
    honest, _ = run_study(tmp_path / "honest", keys)
    attacked, _ = run_study(tmp_path / "attacked", keys, wrapping_update(sec))

    # the crafted update reached the aggregate (the aggregator cannot see values) ...
    assert [o.participants for o in attacked] == [["h1", "h2", "h3", "h4"]] * ROUNDS
    # ... every hospital refused to evaluate it, with the code
    codes = {r["hospital"]: r["reason"].split(":")[0] for r in attacked[ATTACK_ROUND - 1].evaluation_rejected}
    assert codes == {f"h{n}": "aggregate-wrapped" for n in (1, 2, 3, 4)}
    # ... and trained the next round from the last accepted global model, saying so in the manifest
    refusals = store_refusals(tmp_path / "attacked")
    assert {(r.round, r.aggregate_round, r.code) for r in refusals} == {
        (ATTACK_ROUND + 1, ATTACK_ROUND, "aggregate-wrapped")
    }
    assert sorted(r.hospital for r in refusals) == ["h1", "h2", "h3", "h4"]
    assert "round 3: hospital h1 refused round 2's aggregate" in refusals[0].notice()
    assert attacked[ATTACK_ROUND].refusals and attacked[ATTACK_ROUND].refusals[0]["aggregate_round"] == ATTACK_ROUND
    console = Console(record=True, width=300)
    assert refusal_alerts(tmp_path / "attacked", set(), console) == 4  # --follow: one ALERT per hospital
    assert "ALERT round 3 hospital h2 refused round 2's aggregate and trained from its last accepted model: " in (
        console.export_text()
    )
    # the study recovers: the final accuracy is near the honest study's
    final_honest, final_attacked = honest[-1].metrics["accuracy"], attacked[-1].metrics["accuracy"]
    print(f"final accuracy: honest {final_honest:.3f}, attacked {final_attacked:.3f}")
    assert final_attacked is not None and final_honest is not None
    assert final_attacked >= final_honest - 0.05 and np.isfinite(attacked[-1].metrics["loss"])
