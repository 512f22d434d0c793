"""Statistics queries on the chain: recordQuery with signed epsilon charges, the auditor's check of the
records (and a tamper test), and the regulator's --follow alerts (differencing, repeats, outsiders, budget)."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from rich.console import Console

from fedledger.query_charge import EpsilonCharge, charge_digest, sign_charge, sign_request
from fedledger.stats.query import CohortFilter, NumericVar, StatsQuery
from ledger.audit.auditor import audit
from ledger.audit.events import read_chain_view
from ledger.audit.follow import follow
from ledger.audit.queries import check_queries
from ledger.audit.query_alerts import differencing_alerts
from ledger.reverts import LedgerRevert

AGE = NumericVar("age", 20, 80, (20, 40, 60, 80))
OUTSIDER = Account.from_key(b"\x42" * 32)


def age_query(lo: float = 20, hi: float = 80, eps: float = 0.5) -> StatsQuery:
    return StatsQuery(numeric=(AGE,), cohort=(CohortFilter("age", lo, hi),), epsilon=eps)


def record(study, q: StatsQuery, requester, totals: list[int], purpose: str = "table 1"):  # type: ignore[no-untyped-def]
    dom = study.client.domain()
    charges = [EpsilonCharge(study.study_id, q.hash(), round(q.epsilon * 1e6), t) for t in totals]
    sigs = [sign_charge(h, dom, c) for h, c in zip(study.hospitals, charges)]
    asked = sign_request(requester, dom, study.study_id, q.hash(), purpose)
    return study.agg_client.record_query(
        study.study_id, q.hash(), purpose, q.canonical_json().decode(), charges, sigs, asked
    )


def test_query_record_audits_and_a_tampered_one_fails(make_study) -> None:  # type: ignore[no-untyped-def]
    study = make_study(n=2)
    q = age_query()
    c = EpsilonCharge(study.study_id, q.hash(), 500_000, 500_000)
    assert study.client.onchain_query_charge_digest(c) == charge_digest(study.client.domain(), c)
    record(study, q, study.aggregator, [500_000, 500_000])

    view = read_chain_view(study.chain.w3, study.client.address, study.study_id)
    (qv,) = view.queries
    assert qv.spec == q.canonical_json().decode() and [cv.hospital for cv in qv.charges] == [
        h.address for h in study.hospitals
    ]
    assert [f.ok for f in check_queries(view)] == [True] and qv.requester == study.aggregator.address
    assert audit(view).ok

    # tamper: a charge rewritten after the fact no longer carries its hospital's signature
    forged = dataclasses.replace(qv.charges[0].charge, epsilon_micro=1, total_epsilon_micro=1)
    qv.charges[0] = dataclasses.replace(qv.charges[0], charge=forged)
    # tamper: a spec rewritten to look harmless no longer hashes to the recorded hash
    qv.spec = age_query(20, 80, eps=0.1).canonical_json().decode()
    # tamper: a purpose rewritten no longer carries the requester's signature
    qv.purpose = "quality assurance"
    messages = [f.message for f in check_queries(view) if not f.ok]
    assert any("charge signature recovers to" in m for m in messages)
    assert any("hashes to" in m for m in messages)
    assert any("requester's signature over the query and purpose recovers to" in m for m in messages)
    assert not audit(view).ok


def test_contract_refuses_a_bad_spec_an_overspend_another_sender_and_an_unsigned_request(make_study) -> None:  # type: ignore[no-untyped-def]
    study = make_study(n=2, budget_micro=1_000_000)
    q = age_query()
    dom = study.client.domain()
    spec = q.canonical_json().decode()
    ok = [EpsilonCharge(study.study_id, q.hash(), 500_000, 500_000)] * 2
    sigs = [sign_charge(h, dom, c) for h, c in zip(study.hospitals, ok)]
    asked = sign_request(OUTSIDER, dom, study.study_id, q.hash(), "x")

    def refused(*args, client=None) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(LedgerRevert) as e:
            (client or study.agg_client).record_query(study.study_id, q.hash(), *args)
        return str(e.value.error)

    assert refused("x", "{}", ok, sigs, asked) == "QueryHashMismatch"
    assert refused("x", spec, ok, sigs, asked, client=study.client) == "NotAggregator"  # the admin
    assert refused("x", spec, ok, sigs, b"\x00" * 65) == "InvalidRequesterSignature"
    over = [EpsilonCharge(study.study_id, q.hash(), 500_000, 1_500_000)] * 2
    assert refused("x", spec, over, [sign_charge(h, dom, c) for h, c in zip(study.hospitals, over)], asked) == (
        "EpsilonOverBudget"
    )
    # a request signed by one account and recorded as another's purpose recovers to someone else
    study.agg_client.record_query(study.study_id, q.hash(), "y", spec, ok, sigs, asked)
    (qv,) = read_chain_view(study.chain.w3, study.client.address, study.study_id).queries
    assert qv.requester != OUTSIDER.address


def test_follow_raises_the_differencing_alert(make_study) -> None:  # type: ignore[no-untyped-def]
    study = make_study(n=2, budget_micro=3_000_000)
    me = study.aggregator
    # arrange: an honest query, then a cohort and the same cohort less one year of age (a differencing pair)
    record(study, StatsQuery(numeric=(AGE,), epsilon=0.5), me, [500_000, 500_000])
    record(study, age_query(60, 80), me, [1_000_000, 1_000_000])
    record(study, age_query(61, 80), me, [1_500_000, 1_500_000], purpose="rare disease follow-up")
    console = Console(record=True, width=300)

    rc = follow(study.chain.w3, study.client.address, study.study_id, console, poll_interval=0.01, max_polls=1)

    alerts = [line for line in console.export_text().splitlines() if "ALERT" in line]
    assert rc == 1
    assert len(alerts) == 1 and "differencing pattern" in alerts[0] and "age [60, 80] vs [61, 80]" in alerts[0]


def test_follow_alerts_on_repeats_outsiders_and_a_near_budget(make_study) -> None:  # type: ignore[no-untyped-def]
    study = make_study(n=2, budget_micro=2_000_000)
    for i in range(3):  # the same narrow cohort, three times, by a requester outside the study
        record(study, age_query(70, 72), OUTSIDER, [500_000 * (i + 1)] * 2)
    console = Console(record=True, width=300)

    follow(study.chain.w3, study.client.address, study.study_id, console, poll_interval=0.01, max_polls=1)

    text = console.export_text()
    assert "asked for the same cohort (age [70, 72]) 3 times" in text and OUTSIDER.address in text
    assert text.count("does not belong to the study") == 3
    assert "of its budget 2.000 (75%)" not in text and "(75%)" not in text  # 1.5 of 2 is under 80%
    quiet = Console(record=True, width=300)
    follow(
        study.chain.w3,
        study.client.address,
        study.study_id,
        quiet,
        poll_interval=0.01,
        max_polls=1,
        members=(OUTSIDER.address,),
        alert_share=0.7,
    )
    out = quiet.export_text()
    assert "does not belong" not in out and "(75%)" in out


def test_differencing_needs_a_narrow_slice() -> None:
    from ledger.audit.queries import QueryView

    def qv(q: StatsQuery) -> QueryView:
        return QueryView(q.hash(), OUTSIDER.address, "p", q.canonical_json().decode(), 1, 0, "0x")

    assert differencing_alerts([qv(age_query(40, 80)), qv(age_query(60, 80))]) == []  # half the range: no
    assert len(differencing_alerts([qv(age_query(40, 80)), qv(age_query(42, 80))])) == 1


def test_query_charge_vector_is_pinned() -> None:
    """docs/HASHES.md section 9."""
    from eth_utils.crypto import keccak

    from fedledger.commitment import Domain
    from fedledger.query_charge import QUERY_CHARGE_TYPEHASH

    dom = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    charge = EpsilonCharge(b"\x11" * 32, b"\x22" * 32, 500_000, 1_500_000)
    assert (
        keccak(text="QueryCharge(bytes32 studyId,bytes32 queryHash,uint64 epsilonMicro,uint64 totalEpsilonMicro)")
        == QUERY_CHARGE_TYPEHASH
    )
    assert QUERY_CHARGE_TYPEHASH.hex() == "67541beb36ce171ec8b2243e2f31961d7329619ee6ba6c528b9667eebdb5bbcf"
    assert charge_digest(dom, charge).hex() == "ff0994c7309aead229dc7c4143303db24ee13f52141ed6ecac64a8991aa337c4"
    assert sign_charge(Account.from_key(b"\x01" * 32), dom, charge).hex() == (
        "638498df0e15ac49f38ad9b413afdec0fbbe44362bf6f8e88236d7c4019f40bc"
        "6f165262a62cf01b5dde03b31a9e7dfa44fb2ea4f24103d977e77fef366106ff1b"
    )


def test_query_request_vector_is_pinned_and_the_contract_recovers_it(make_study) -> None:  # type: ignore[no-untyped-def]
    """docs/HASHES.md section 9: the requester's QueryRequest."""
    from eth_utils.crypto import keccak

    from fedledger.commitment import Domain
    from fedledger.query_charge import QUERY_REQUEST_TYPEHASH, recover_requester

    dom = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    key = Account.from_key(b"\x01" * 32)
    sig = sign_request(key, dom, b"\x11" * 32, b"\x22" * 32, "table 1")
    assert keccak(text="QueryRequest(bytes32 studyId,bytes32 queryHash,string purpose)") == QUERY_REQUEST_TYPEHASH
    assert sig.hex() == (
        "10fdd4663863d8d38874cff996fdb0a0aff46210c21d85d8c31a576f0e291514"
        "3a82b730dc2b73a317b66d56cf87137e26afeb3649da2765d0a256c42949d8d21c"
    )
    assert recover_requester(dom, b"\x11" * 32, b"\x22" * 32, "table 1", sig) == key.address
    # the contract recovers the same requester under its own domain
    study = make_study(n=1)
    mine = study.client.domain()
    onchain = study.client.contract.functions.requestSigner(
        study.study_id, b"\x22" * 32, "why", sign_request(OUTSIDER, mine, study.study_id, b"\x22" * 32, "why")
    ).call()
    assert onchain == OUTSIDER.address
