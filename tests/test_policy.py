"""The hospital's own policy: each rule refuses a hostile task with its code, before anything is done with it."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
from flwr.app import Message
from rich.console import Console

from fedledger.hashing import model_hash, to_hex
from fedledger.round_task import RoundTask
from fl_client.client_app import evaluate_global, train
from fl_client.policy import AnswerPlan, HospitalPolicy, PolicyError, PolicyRefusal, check_task, load_policy
from fl_client.settings import HospitalSettings
from fl_server.progress import RoundTable
from fl_server.round_protocol import RoundOutcome
from fl_server.validation import parse_train_replies
from tests.test_client_app import context, initial, node_config, round_config, task, task_identity  # noqa: F401

STUDY = "0x" + "11" * 32
CONTRACT = "0x" + "cd" * 20
KEY = "0x" + "ab" * 32
DP = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp"}


def honest_task(**change: object) -> RoundTask:
    """A task that complies with :data:`STRICT`; ``change`` (RoundTask fields) makes it hostile."""
    wire = {"chain-id": 31337, "contract": CONTRACT, "context-fingerprint": KEY}
    sent = round_config("0x" + "00" * 32, dict(DP, delta=1e-5), encrypted=True, ledger=True, **wire)
    return replace(RoundTask.from_wire(dict(sent)), **change)  # type: ignore[arg-type]


STRICT = HospitalPolicy(
    require_dp=True,
    max_epsilon=3.0,
    max_delta=1e-5,
    min_noise_multiplier=0.8,
    max_grad_norm=1.0,
    require_encryption=True,
    key_fingerprint=KEY,
    require_chain=True,
    allowed_contract=CONTRACT,
    allowed_chain_id=31337,
    allowed_study_ids=(STUDY,),
    allowed_models=("logreg",),
    max_params=100,
    min_records=50,
)
PLAN = AnswerPlan(n_records=200, n_params=31)


HOSTILE = {
    "policy-dp-required": (dict(privacy={"enabled": False}), {}),
    "policy-noise-too-low": (dict(privacy=dict(DP, noise_multiplier=0.1)), {}),
    "policy-clip-too-high": (dict(privacy=dict(DP, max_grad_norm=10.0)), {}),
    "policy-epsilon-too-high": (dict(privacy=dict(DP, noise_multiplier=None, target_epsilon=8.0)), {}),
    "policy-delta-too-high": (dict(privacy=dict(DP, delta=1e-3)), {}),
    "policy-encryption-required": (dict(encrypted=False, context_fingerprint=""), {}),
    "policy-wrong-key": (dict(context_fingerprint="0x" + "99" * 32), {}),
    "policy-chain-required": (dict(ledger=False), {}),
    "policy-contract-not-allowed": (dict(contract="0x" + "ee" * 20), {}),
    "policy-study-not-allowed": (dict(study_id="0x" + "22" * 32), {}),
    "policy-model-not-allowed": (dict(model="mlp", hidden=32), {}),
    "policy-too-many-params": ({}, dict(n_params=10_000)),
    "policy-too-few-records": ({}, dict(n_records=10)),
}


@pytest.mark.parametrize("code", sorted(HOSTILE))
def test_a_task_that_breaks_a_rule_is_refused_with_its_code(code):
    # arrange
    change, plan_change = HOSTILE[code]
    hostile = honest_task(**change)
    # act
    with pytest.raises(PolicyRefusal) as refused:
        check_task(STRICT, hostile, replace(PLAN, **plan_change))
    # assert
    assert refused.value.code == code and refused.value.reason


@pytest.mark.parametrize(
    ("change", "plan_change", "code"),
    [
        (dict(chain_id=1), {}, "policy-contract-not-allowed"),
        (
            dict(privacy=dict(DP, noise_multiplier=None, target_epsilon=3.0)),
            dict(noise_multiplier=0.5),
            "policy-noise-too-low",
        ),
        (dict(privacy=dict(DP, delta=None)), dict(delta=1e-4), "policy-delta-too-high"),
        (dict(model="resnet"), {}, "policy-model-not-allowed"),
    ],
)
def test_figures_the_hospital_derives_or_a_second_identifier_are_checked_too(change, plan_change, code):
    with pytest.raises(PolicyRefusal) as refused:
        check_task(STRICT, honest_task(**change), replace(PLAN, **plan_change))
    assert refused.value.code == code


def test_a_task_that_complies_is_accepted():
    check_task(STRICT, honest_task(), PLAN)
    check_task(
        STRICT,
        honest_task(privacy=dict(DP, noise_multiplier=None, target_epsilon=3.0)),
        replace(PLAN, noise_multiplier=1.1),
    )


def test_without_a_policy_every_task_is_accepted_as_before():
    check_task(HospitalPolicy(), honest_task(privacy={"enabled": False}, encrypted=False, ledger=False), PLAN)


# -- reading the policy ---------------------------------------------------------------


def settings(**change: object) -> HospitalSettings:
    return replace(HospitalSettings("h0", 0, 1, 0, "{}", simulation=False), **change)  # type: ignore[arg-type]


def test_a_policy_file_holds_every_key(tmp_path):
    # arrange
    path = tmp_path / "policy.yaml"
    path.write_text(
        "require-dp: true\nmax-epsilon: 3\nmax-delta: 1.0e-5\nmin-noise-multiplier: 0.8\nmax-grad-norm: 1.0\n"
        f"require-encryption: true\nrequire-chain: true\nallowed-contract: '{CONTRACT}'\nallowed-chain-id: 31337\n"
        f"allowed-study-ids: ['{STUDY}']\nallowed-models: [logreg]\nmax-params: 100\nmin-records: 50\n"
    )
    own = settings(secret_context="secret.ctx", chain_rpc="http://127.0.0.1:8545")
    # act
    policy = load_policy({"policy-file": str(path)}, own, lambda: KEY)
    # assert
    assert policy == STRICT


def test_node_config_keys_and_a_json_file_combine(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"allowed-models": ["logreg", "MLP"], "min-records": 30}))
    policy = load_policy({"policy-file": str(path), "max-epsilon": 2.5, "require-dp": "false"}, settings())
    assert policy == HospitalPolicy(max_epsilon=2.5, allowed_models=("logreg", "mlp"), min_records=30)


def test_an_unknown_key_in_the_policy_file_fails_naming_it(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("max-epsilon: 3\nmax-epsilom: 1\n")
    with pytest.raises(PolicyError, match="max-epsilom"):
        load_policy({"policy-file": str(path)}, settings())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("require-dp", "maybe"),
        ("max-epsilon", -1),
        ("max-epsilon", "lots"),
        ("max-delta", 1.5),
        ("min-noise-multiplier", 0),
        ("max-grad-norm", True),
        ("allowed-contract", "0x1234"),
        ("allowed-chain-id", 1.5),
        ("allowed-study-ids", ["0x11"]),
        ("allowed-models", []),
        ("max-params", "many"),
        ("min-records", -5),
    ],
)
def test_a_bad_value_fails_naming_its_key(tmp_path, key, value):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(PolicyError, match=key):
        load_policy({"policy-file": str(path)}, settings())
    with pytest.raises(PolicyError, match=key):
        load_policy({key: value}, settings())


def test_a_key_in_both_places_or_a_requirement_the_hospital_cannot_meet_fails(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("min-records: 5\n")
    with pytest.raises(PolicyError, match="min-records"):
        load_policy({"policy-file": str(path), "min-records": 6}, settings())
    with pytest.raises(PolicyError, match="require-encryption"):
        load_policy({"require-encryption": True}, settings())
    with pytest.raises(PolicyError, match="require-chain"):
        load_policy({"require-chain": True}, settings())


def test_a_hospital_that_set_a_budget_requires_dp_and_one_without_a_policy_does_not():
    assert load_policy({}, settings(budget=3.0)).require_dp
    assert load_policy({}, settings()) == HospitalPolicy()
    assert load_policy({"min-noise-multiplier": 1.0}, settings()).require_dp
    required_chain = load_policy({"require-chain": True}, settings(chain_rpc="http://x", contract="0x" + "CD" * 20))
    assert required_chain.allowed_contract == CONTRACT


# -- the ClientApp: a hostile round config gets the refusal reply with its code ------------------


def refusal_of(reply: Message) -> dict:
    assert "update" not in reply.content.array_records and "metrics" not in reply.content.metric_records
    return dict(reply.content.config_records["refusal"])


def test_a_hospital_with_a_budget_refuses_a_round_without_dp_to_train_and_to_evaluate(initial, caplog):
    cfg = round_config(to_hex(model_hash(initial)))  # privacy off
    nc = context(node_config(**{"privacy-budget": 3.0}))
    with caplog.at_level(logging.WARNING, logger="fedledger.client"):
        refused = refusal_of(train(task(initial, cfg), nc))
    evaluation = refusal_of(evaluate_global(task(initial, cfg, "evaluate"), nc))
    assert refused["code"] == evaluation["code"] == "policy-dp-required" and refused["hospital"] == "h0"
    assert any("hospital h0 refuses round: policy-dp-required: " in r.getMessage() for r in caplog.records)


def test_a_hospital_that_requires_encryption_refuses_a_plaintext_round(tmp_path, initial):
    from fedledger.ckks import create_keys, preset

    keys = create_keys(tmp_path / "study", preset("ckks_n4096"))
    nc = node_config(**{"secret-context": str(keys.secret_context), "require-encryption": True})
    plaintext = round_config(to_hex(model_hash(initial)))
    reply = train(task(initial, plaintext), context(nc))
    assert refusal_of(reply)["code"] == "policy-encryption-required"


def test_a_target_epsilon_above_the_policy_and_a_round_that_would_pass_it_are_refused(initial):
    h0 = to_hex(model_hash(initial))
    nc = context(node_config(**{"max-epsilon": 1.0}))
    too_high = dict(DP, noise_multiplier=None, target_epsilon=3.0, delta=1e-5)
    fixed_low_noise = dict(DP, noise_multiplier=0.5)
    assert refusal_of(train(task(initial, round_config(h0, too_high)), nc))["code"] == "policy-epsilon-too-high"
    spend = refusal_of(train(task(initial, round_config(h0, fixed_low_noise)), nc))
    assert spend["code"] == "policy-epsilon-too-high" and "max-epsilon" in spend["reason"]


def test_a_model_the_policy_does_not_allow_is_refused_and_an_allowed_one_trains(initial):
    h0 = to_hex(model_hash(initial))
    nc = context(node_config(**{"allowed-models": "logreg", "privacy-budget": 50.0}))
    mlp = round_config(h0, DP, model="mlp", hidden=16)
    assert refusal_of(train(task(initial, mlp), nc))["code"] == "policy-model-not-allowed"
    assert refusal_of(evaluate_global(task(initial, mlp, "evaluate"), nc))["code"] == "policy-model-not-allowed"
    ok = train(task(initial, round_config(h0, DP)), nc)
    assert "update" in ok.content.array_records and ok.content.metric_records["metrics"]["epsilon"] > 0


def test_the_refusal_code_reaches_the_servers_rejected_entry_and_the_round_table(initial):
    # arrange
    reply = train(
        task(initial, round_config(to_hex(model_hash(initial)))), context(node_config(**{"privacy-budget": 3.0}))
    )
    console = Console(record=True, width=200)
    # act
    outcome = parse_train_replies([reply])
    rejected = [r.as_dict() for r in outcome.rejected]
    RoundTable(1, console)(RoundOutcome(1, "0x", "0x", [], rejected, 0, {}, {}, None, 0.0, 0.0))
    # assert
    assert not outcome.accepted and rejected[0]["kind"] == "refusal" and rejected[0]["hospital"] == "h0"
    assert str(rejected[0]["reason"]).startswith("policy-dp-required: ")
    assert "h0 (policy-dp-required)" in console.export_text()
