"""One privacy account per hospital and study: statistics queries and training spend the same budget.

Product path: a hospital with a state dir answers queries (fl_client.stats.site.answer_query, real
charges saved to hospital_runtime.privacy_state_file) and is then asked to train through the
ClientApp's train handler, which reads the same file.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_account import Account
from flwr.app import Context, RecordDict

from fedledger.ckks import create_keys, load_secret_context, preset
from fedledger.commitment import Domain
from fedledger.hashing import model_hash, to_hex
from fedledger.round_task import RoundTask
from fedledger.stats.query import NumericVar, StatsQuery
from fl_client import hospital_runtime as rt
from fl_client.accounting import PrivacyAccount
from fl_client.client_app import train
from fl_client.models import build_model, get_arrays
from fl_client.settings import from_context
from fl_client.stats.data import builtin_hospitals
from fl_client.stats.site import QueryRefused, answer_query
from tests.test_client_app import context, node_config, round_config, task

PRIVACY = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "accountant": "rdp", "delta": 1e-5}
STUDY_A, STUDY_B = "0x" + "11" * 32, "0x" + "22" * 32
QUERY = StatsQuery(numeric=(NumericVar("age", 20, 80, (20.0, 40.0, 60.0, 80.0)),), epsilon=1.0, min_cell=5)
DOMAIN = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


@pytest.fixture(autouse=True)
def task_identity():  # type: ignore[no-untyped-def]
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    yield


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_secret_context(create_keys(tmp_path_factory.mktemp("keys"), preset("ckks")).secret_context)


@pytest.fixture(scope="module")
def initial() -> dict:
    return get_arrays(build_model("logreg", 30, 0, seed=0))


def hospital_account(nc: dict, study: str) -> tuple[PrivacyAccount, RoundTask]:
    """The account exactly as the hospital's training builds it for the study's round task."""
    settings = from_context(nc)
    rtask = RoundTask.from_wire(round_config("0x" + "00" * 32, PRIVACY, **{"study-id": study}))
    ctx = Context(run_id=1, node_id=3, node_config=nc, state=RecordDict(), run_config={})
    account = rt.privacy_for(settings, rtask, rt.hospital_data(settings).n_train, ctx, settings.budget)
    assert account is not None
    return account, rtask


def ask(nc: dict, study: str, secret, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """The hospital answers one query for ``study``, charging its account file."""
    account, _ = hospital_account(nc, study)
    _, rows = builtin_hospitals("gbsg2", 2, 0, "cens")[0]
    answer_query(
        "h0",
        rows,
        QUERY,
        secret_context=secret,
        account=account,
        signer=Account.from_key(b"\x01" * 32),
        domain=DOMAIN,
        study_id=bytes.fromhex(study[2:]),
        per_site_allowed=False,
        rng=np.random.default_rng(seed),
        state_file=rt.privacy_state_file(from_context(nc)),
    )


def one_round_epsilon() -> float:
    account, _ = hospital_account(node_config(), STUDY_A)
    return account.projected_epsilon(account.steps_per_round())


def test_a_hospital_that_spent_its_budget_on_queries_refuses_to_train(tmp_path, secret, initial) -> None:
    # arrange: a budget that one round of training fits, with 1.5 epsilon to spare
    budget = one_round_epsilon() + 1.5
    spent = node_config(**{"state-dir": str(tmp_path / "spent"), "privacy-budget": budget})
    fresh = node_config(**{"state-dir": str(tmp_path / "fresh"), "privacy-budget": budget})
    h0 = to_hex(model_hash(initial))
    # act: answer epsilon-1 queries until the hospital refuses one (budget spent), then train
    answered, refusal = 0, None
    while refusal is None and answered < 20:
        try:
            ask(spent, STUDY_A, secret, seed=answered)
            answered += 1
        except QueryRefused as exc:
            refusal = str(exc)
    reply = train(task(initial, round_config(h0, PRIVACY, **{"study-id": STUDY_A})), context(spent))
    control = train(task(initial, round_config(h0, PRIVACY, **{"study-id": STUDY_A})), context(fresh))
    # assert
    assert refusal is not None and "Refusing to answer" in refusal
    assert answered == int(budget)  # epsilon 1 each: floor(budget) queries fit
    code, reason = reply.content.config_records["refusal"]["code"], reply.content.config_records["refusal"]["reason"]
    assert code == "budget-exceeded"
    assert f"{answered} statistics queries included" in reason
    assert "update" in control.content.array_records  # the same budget without the queries trains


def test_the_query_charges_are_in_the_file_training_resumes(tmp_path, secret) -> None:
    nc = node_config(**{"state-dir": str(tmp_path / "state")})
    ask(nc, STUDY_A, secret)
    ask(nc, STUDY_A, secret, seed=1)
    account, _ = hospital_account(nc, STUDY_A)
    assert account.load_state(rt.privacy_state_file(from_context(nc)))
    assert [q.epsilon for q in account.queries] == [1.0, 1.0]
    assert account.total_epsilon() == pytest.approx(2.0)  # no training yet: the two Laplace queries
    assert account.study_id == STUDY_A


def test_another_studys_account_file_is_refused_by_queries_and_training(tmp_path, secret, initial) -> None:
    nc = node_config(**{"state-dir": str(tmp_path / "state")})
    ask(nc, STUDY_A, secret)
    with pytest.raises(QueryRefused, match="belongs to study 0x1111.*not to this account's study 0x2222"):
        ask(nc, STUDY_B, secret)
    h0 = to_hex(model_hash(initial))
    reply = train(task(initial, round_config(h0, PRIVACY, **{"study-id": STUDY_B})), context(nc))
    refusal = reply.content.config_records["refusal"]
    assert refusal["code"] == "privacy-state-mismatch" and "belongs to study" in refusal["reason"]


def test_account_state_of_another_study_is_refused_and_unbound_state_loads() -> None:
    a = PrivacyAccount(PRIVACY, n_records=100, batch_size=10, planned_rounds=2)
    a.study_id = STUDY_A
    b = PrivacyAccount(PRIVACY, n_records=100, batch_size=10, planned_rounds=2)
    b.study_id = STUDY_B
    legacy = {k: v for k, v in a.state_dict().items() if k != "study_id"}
    with pytest.raises(ValueError, match="belongs to study"):
        b.load_state_dict(a.state_dict())
    b.load_state_dict(legacy)  # a state saved before accounts were bound to a study still loads
    assert a.state_dict()["study_id"] == STUDY_A and b.study_id == STUDY_B
