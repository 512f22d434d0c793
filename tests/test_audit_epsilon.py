"""Verifiable accounting (issue 18): the auditor recomputes each hospital's epsilon from the registered protocol.

A default-study protocol (target epsilon 3.0 over 3 rounds, 2 local epochs,
batch 32, PRV) is registered as the study's configHash on an eth_tester
chain; hospitals commit the epsilon their real DP-SGD accountant reported
(fl_client, Opacus), except a cheating one that reports 0.01 per round.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from rich.console import Console

from fedledger.commitment import RoundCommitment, epsilon_to_micro, sign_commitment
from fedledger.config import PrivacyConfig, TrainConfig
from fedledger.hashing import sha256, to_hex
from fedledger.protocol import protocol_hash
from fedledger.study_task import round_task
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model
from fl_client.training import train_local
from ledger import audit as A
from ledger.audit.report import print_report, render_html
from tests.audit_builders import deployed_ledger, register_consenting

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")

CONF = Path(__file__).resolve().parents[1] / "conf"
ROUNDS = 3
COUNTS = (113, 114, 113, 113)  # records per hospital (the default study's split of breast cancer is about this)


def default_config() -> dict:
    """The default study's model, training and privacy settings (conf/), 3 rounds, no encryption."""
    train = yaml.safe_load((CONF / "train" / "default.yaml").read_text())
    privacy = yaml.safe_load((CONF / "privacy" / "target_eps.yaml").read_text())
    return {
        "model": {"name": "logreg", "hidden": 0},
        "seed": 0,
        "train": train,
        "num_rounds": ROUNDS,
        "num_hospitals": len(COUNTS),
        "strategy": {"name": "fedavg"},
        "ledger": {"backend": "eth_tester"},
        "privacy": privacy,
        "encryption": {"enabled": False},
    }


def honest_epsilons(config: dict, n: int) -> list[float]:
    """What a hospital's own accountant reports after each round of real DP-SGD on ``n`` records."""
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    t = config["train"]
    privacy = HospitalPrivacy(PrivacyConfig(**config["privacy"]), n, t["batch_size"], ROUNDS, t["local_epochs"])
    model = build_model("logreg", 4)
    tcfg = TrainConfig(local_epochs=t["local_epochs"], batch_size=t["batch_size"], lr=t["lr"])
    return [float(train_local(model, X, y, tcfg, r, privacy).epsilon) for r in range(ROUNDS)]


def record_study(
    ledger, tmp: Path, reported: dict[int, list[float]], tag: bytes, counts: list[tuple[int, ...]] | None = None
) -> SimpleNamespace:
    """Register the protocol as configHash, record a round of the hospitals' commitments per entry of ``counts``
    (default: ``COUNTS`` for 3 rounds); store = study.json."""
    counts = counts or [COUNTS] * ROUNDS
    chain, client = ledger.chain, ledger.client
    accounts = chain.funded_accounts[2 : 2 + len(COUNTS)]
    study_id = sha256(b"epsilon-audit" + tag)
    spec = {
        "study_id": to_hex(study_id),
        "config": default_config(),
        "keys": {},
        "chain": {"backend": "eth_tester", "chain_id": client.chain_id, "contract": client.address},
    }
    init = sha256(b"initial model" + tag)
    start = register_consenting(
        chain, client, study_id, init, b"\x00" * 32, accounts, 10.0, config_hash=protocol_hash(round_task(spec))
    )
    prev = init
    for r, round_counts in enumerate(counts, start=1):
        cs = [
            RoundCommitment(study_id, r, prev, sha256(bytes([r, i])), n, epsilon_to_micro(reported[i][r - 1]), prev)
            for i, n in enumerate(round_counts)
        ]
        sigs = [sign_commitment(a, client.domain(), c) for a, c in zip(accounts, cs)]
        agg = sha256(b"aggregate" + bytes([r]) + tag)
        client.record_round(study_id, r, prev, agg, sum(round_counts), cs, sigs, sender=chain.aggregator)
        prev = agg
    store = tmp / tag.decode()
    store.mkdir()
    (store / "study.json").write_text(json.dumps(spec))
    view = A.read_chain_view(chain.w3, client.address, study_id, from_block=start)
    return SimpleNamespace(view=view, store=store, spec=spec, hospitals=[a.address for a in accounts])


def accounting(result: A.AuditResult) -> list[A.Finding]:
    return [f for f in result.findings if f.check == "accounting"]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    return deployed_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def honest_figures() -> dict[int, list[float]]:
    config = default_config()
    by_n = {n: honest_epsilons(config, n) for n in sorted(set(COUNTS))}
    return {i: by_n[n] for i, n in enumerate(COUNTS)}


@pytest.fixture(scope="module")
def honest(ledger, honest_figures, tmp_path_factory):
    return record_study(ledger, tmp_path_factory.mktemp("honest"), honest_figures, b"honest")


@pytest.fixture(scope="module")
def cheating(ledger, honest_figures, tmp_path_factory):
    reported = {**honest_figures, 3: [0.01, 0.02, 0.03]}  # hospital_3 hides its spend
    return record_study(ledger, tmp_path_factory.mktemp("cheat"), reported, b"cheat")


def test_honest_commitments_pass_the_recomputation(honest, honest_figures):
    # act
    result = A.audit(copy.deepcopy(honest.view), honest.store)
    # assert: one passing finding a round, and every recomputed figure is the one the hospital reported
    found = accounting(result)
    assert [(f.round, f.status) for f in found] == [(1, "pass"), (2, "pass"), (3, "pass")]
    recomputed = result.meta["epsilon_accounting"]["recomputed"]
    assert result.meta["epsilon_accounting"]["status"] == "checked"
    for i, addr in enumerate(honest.hospitals):
        assert [recomputed[addr][str(r)] for r in (1, 2, 3)] == pytest.approx(honest_figures[i], abs=1e-12)
    assert 2.9 < honest_figures[0][-1] <= 3.0  # the study's target epsilon, reached in its last round


def test_under_reported_epsilon_fails_naming_round_and_hospital(cheating):
    # act
    result = A.audit(copy.deepcopy(cheating.view), cheating.store)
    # assert
    failed = [(f.round, f.hospital) for f in accounting(result) if not f.ok]
    assert failed == [(r, cheating.hospitals[3]) for r in (1, 2, 3)]
    assert not result.ok
    last = next(f for f in accounting(result) if not f.ok and f.round == 3)
    assert "committed epsilon 0.030000" in last.message and "under-reported" in last.message
    assert result.meta["epsilon_accounting"]["recomputed"][cheating.hospitals[3]]["3"] > 2.9


def test_reports_name_the_check(cheating):
    result = A.audit(copy.deepcopy(cheating.view), cheating.store)
    console = Console(record=True, width=200)

    print_report(result, console)
    html = render_html(result)

    text = console.export_text()
    assert "accounting" in text and "epsilon recomputed/committed:" in text
    assert "Epsilon recomputed from the registered protocol" in html
    assert result.to_json()["checks"]["accounting"] == {"pass": 0, "fail": 3, "skip": 0}


def test_a_chain_only_audit_says_the_check_was_skipped(cheating):
    result = A.audit(copy.deepcopy(cheating.view))

    console = Console(record=True, width=300)
    print_report(result, console)

    (skip,) = accounting(result)
    assert skip.skipped and "chain-only audit" in skip.message
    assert "notice epsilon accounting not checked: chain-only audit" in console.export_text()
    assert result.to_json()["epsilon_accounting"]["status"] == "skipped"


def test_a_spec_that_does_not_hash_to_the_config_hash_is_not_trusted(cheating, tmp_path):
    # arrange: the coordinator's study.json claims more noise than was registered (so epsilon would be lower)
    spec = copy.deepcopy(cheating.spec)
    spec["config"]["privacy"]["target_epsilon"] = 0.05
    (tmp_path / "study.json").write_text(json.dumps(spec))
    # act
    result = A.audit(copy.deepcopy(cheating.view), tmp_path)
    # assert: not used, and said so
    (skip,) = accounting(result)
    assert skip.skipped and "not to the chain's configHash" in skip.message
    assert result.meta["epsilon_accounting"]["status"] == "skipped"


def test_a_count_that_puts_delta_at_one_over_n_fails_naming_round_and_hospital(ledger, honest_figures, tmp_path):
    # arrange: from round 2 hospital_2 claims 200,000 records (the registered delta 1e-5 is then >= 1/n;
    # its epsilon would have been far lower too)
    first = honest_figures[2][0]
    reported = {**honest_figures, 2: [first, first + 0.01, first + 0.02]}  # the contract refuses a decrease
    inflated = [COUNTS, (113, 114, 200_000, 113)]
    study = record_study(ledger, tmp_path, reported, b"inflated", counts=inflated)
    # act
    result = A.audit(copy.deepcopy(study.view), study.store)
    # assert: named once, where it started; the others pass
    failed = [f for f in accounting(result) if not f.ok]
    assert [(f.round, f.hospital) for f in failed] == [(2, study.hospitals[2])]
    assert "200000 samples" in failed[0].message and "not below 1/n" in failed[0].message


def test_the_html_report_shows_delta_accountant_noise_dates_and_expiry(honest):
    # act
    result = A.audit(copy.deepcopy(honest.view), honest.store)
    j = result.to_json()
    html = render_html(result)
    # assert: each hospital's accountant settings, as the registered protocol gives them at its count
    plans = j["epsilon_accounting"]["plans"]
    assert set(plans) == set(honest.hospitals)
    plan = plans[honest.hospitals[0]]
    assert plan["accountant"] == "prv" and plan["delta"] == 1e-5 and plan["noise_multiplier"] > 0.5
    assert "<th>delta</th><th>accountant</th><th>noise multiplier</th>" in html
    assert f"<td>1e-05</td><td>prv</td><td>{plan['noise_multiplier']:.4g}</td>" in html
    # and the study's dates: registration, expiry, each round's block time
    assert j["registered_at"] > 0 and j["expiry"] > j["registered_at"]
    assert "<td>registered</td><td>20" in html and "<td>expiry</td><td>20" in html and " UTC</td>" in html
    assert "<th>recorded</th>" in html


def test_a_chain_only_html_report_says_the_accountant_settings_are_not_known(honest):
    html = render_html(A.audit(copy.deepcopy(honest.view)))

    assert "not known (chain only)" in html
