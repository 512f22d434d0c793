"""Personalisation (fl_client/personalisation.py): fine-tuned metrics reported, and paid for in epsilon.

Four hospitals answer in process through the real ClientApp handlers and
round protocol (tests/test_bounded_influence_study.py's grid), with DP on.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fedledger.config import PrivacyConfig
from fedledger.dp.plan import committed_epsilons
from fedledger.round_task import RoundTask
from fl_client import personalisation
from fl_client.models import build_model, get_arrays
from tests.test_aggregate_bounds import task_identity  # noqa: F401
from tests.test_bounded_influence_study import HospitalsGrid, run_grid

ROUNDS = 2
DP = {"enabled": True, "noise_multiplier": 1.0, "delta": 1e-5, "max_grad_norm": 1.0}
TASK = RoundTask(
    model="logreg",
    hidden=0,
    local_epochs=1,
    batch_size=32,
    lr=1.0,
    momentum=0.0,
    weight_decay=0.0,
    num_rounds=ROUNDS,
    personalisation_epochs=2,
    privacy=DP,
    prev_hash="0x" + "00" * 32,
    study_id="0x" + "44" * 32,
    server_round=0,
)


def _run(tmp_path: Path, task: RoundTask):
    from fl_server.artifact_store import ArtifactStore
    from fl_server.strategy import FedAvgStrategy

    initial = get_arrays(build_model("logreg", 30, 0, seed=0))
    grid = HospitalsGrid(tmp_path / "no-key")
    _, outcomes = run_grid(grid, FedAvgStrategy(template=initial), initial, task, ROUNDS, ArtifactStore(tmp_path))
    return grid, outcomes


@pytest.mark.slow
def test_personal_metrics_are_reported_and_their_epsilon_is_committed_and_recomputable(tmp_path):
    grid, outcomes = _run(tmp_path / "personal", TASK)
    for o in outcomes:
        assert sorted(o.per_hospital) == ["h1", "h2", "h3", "h4"]
        for row in o.per_hospital.values():
            assert 0.0 <= row["personal"]["accuracy"] <= 1.0 and row["personal"]["loss"] > 0
    # each hospital's epsilon is the one the auditor recomputes for local + personalisation epochs a round
    _, plain = _run(tmp_path / "plain", replace(TASK, personalisation_epochs=0))
    for h in outcomes[-1].privacy:
        eps = outcomes[-1].privacy[h]["epsilon"]
        eps_plain = plain[-1].privacy[h]["epsilon"]
        n = _records(grid, h)
        expected = committed_epsilons(PrivacyConfig(**DP), 32, ROUNDS, 1 + 2, [n] * ROUNDS)[-1]
        assert eps == pytest.approx(expected, rel=1e-9)
        assert eps > eps_plain  # personalisation costs privacy
    assert all("personal" not in row for row in plain[-1].per_hospital.values())


def _records(grid: HospitalsGrid, hospital: str) -> int:
    from fl_client.hospital_runtime import hospital_data
    from fl_client.settings import from_context

    ctx = next(c for c in grid.contexts.values() if c.node_config["hospital-id"] == hospital)
    return int(hospital_data(from_context(dict(ctx.node_config))).n_train)


@pytest.mark.slow
def test_an_evaluation_fine_tunes_once_and_only_for_a_round_it_was_charged_for(tmp_path):
    grid, _ = _run(tmp_path, TASK)
    ctx = grid.contexts[1]
    from fl_client.hospital_runtime import hospital_data, privacy_for
    from fl_client.settings import from_context

    settings = from_context(dict(ctx.node_config))
    data = hospital_data(settings)
    model = build_model("logreg", 30, 0, seed=0)
    scratch = privacy_for(settings, TASK, data.n_train, ctx, None)
    from fl_client.tasks import task_for

    asked_again = replace(TASK, server_round=ROUNDS)
    assert personalisation.personal_metrics(settings, ctx, asked_again, model, data, scratch, task_for(), 0) is None
    never_trained = replace(TASK, server_round=ROUNDS + 1)
    assert personalisation.personal_metrics(settings, ctx, never_trained, model, data, scratch, task_for(), 0) is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_personalisation_epochs_must_be_a_whole_number(bad):
    from fedledger.config import check_personalisation_epochs

    with pytest.raises(ValueError, match="train.personalisation_epochs must be a whole number >= 0"):
        check_personalisation_epochs(bad)


def test_the_accountant_plans_for_training_and_personalisation_epochs():
    assert TASK.dp_epochs == 3 and replace(TASK, personalisation_epochs=0).dp_epochs == 1
