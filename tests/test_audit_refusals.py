"""Hospitals' refusals reach the record: the round manifest keeps them, the audit lists the policy and protocol
ones as notices (never failures), and ``--follow`` raises an ALERT for each (issue 13).

The studies are hand-built as in tests/test_audit.py; a refusal is written into a
round manifest as the aggregator writes it (fl_server.round_protocol.write_manifest).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from fedledger.wire import ModelPayload
from fl_server.artifact_store import ArtifactStore
from fl_server.round_protocol import refusal_entry, write_manifest
from fl_server.validation import Rejection
from ledger.audit.follow import follow, refusal_alerts
from ledger.audit.report import print_report, write_html
from tests.audit_builders import deployed_ledger
from tests.test_audit import BuiltStudy, build_study

REFUSED = Rejection(5, "hospital_1", "refusal", "policy-model-not-allowed: model 'mlp' is not in ['logreg']")
SPENT = Rejection(6, "hospital_0", "refusal", "budget-exceeded: epsilon 1.2 would pass the budget 1.0")
CRASHED = Rejection(7, "hospital_2", "error", "node error 1: it crashed")


def _manifest(store: ArtifactStore, *rejected: Rejection) -> dict:
    aggregate = ModelPayload(arrays={"w": np.zeros(3, np.float32)})
    return write_manifest(store, "0x" + "11" * 32, 1, "0x" + "22" * 32, aggregate, [], rejected=rejected)


def test_manifest_keeps_the_hospitals_refusals_with_their_codes(tmp_path):
    store = ArtifactStore(tmp_path)

    manifest = _manifest(store, REFUSED, SPENT, CRASHED)

    on_disk = json.loads((tmp_path / "artifacts/rounds/round_00001.json").read_text())
    assert (
        on_disk["refusals"]
        == manifest["refusals"]
        == [
            {"hospital": "hospital_1", "node_id": 5, "code": "policy-model-not-allowed", "reason": REFUSED.reason[26:]},
            {"hospital": "hospital_0", "node_id": 6, "code": "budget-exceeded", "reason": SPENT.reason[17:]},
        ]
    )  # a crashed node is not a refusal


def test_manifest_without_refusals_has_no_refusals_key(tmp_path):
    manifest = _manifest(ArtifactStore(tmp_path), CRASHED)

    assert "refusals" not in manifest


def _add_refusals(run: Path, r: int, *rejected: Rejection) -> None:
    """Write round ``r``'s refusals into its manifest, as the aggregator would have."""
    store = ArtifactStore(run)
    manifest = store.read_round(r)
    manifest["refusals"] = [refusal_entry(x) for x in rejected]
    store.write_round(manifest)


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> tuple[BuiltStudy, Path]:
    ledger = deployed_ledger(tmp_path_factory)
    study = build_study(ledger.chain, ledger.client, ledger.root, seed=5, n_hospitals=2, n_rounds=2)
    run = tmp_path_factory.mktemp("refused") / "run"
    shutil.copytree(study.run_dir, run)
    _add_refusals(run, 2, REFUSED, SPENT)
    return study, run


def test_audit_lists_policy_refusals_as_notices_not_failures(refused, tmp_path):
    study, run = refused

    result = study.audit(store=run)

    assert result.ok, [(f.check, f.round, f.message) for f in result.failures]
    j = result.to_json()
    assert j["refusals"] == [
        {
            "round": 2,
            "hospital": "hospital_1",
            "node_id": 5,
            "code": "policy-model-not-allowed",
            "reason": REFUSED.reason[26:],
        }
    ]  # the budget refusal is the accountant's, not a policy or protocol one
    notice = "round 2: hospital hospital_1 refused the task (policy-model-not-allowed)"
    assert [n for n in j["notices"] if "refused" in n] == [f"{notice}: {REFUSED.reason[26:]}"]
    console = Console(record=True, width=200)
    print_report(result, console)
    assert notice in console.export_text()
    write_html(result, tmp_path / "a.html", alert_share=0.8)
    assert "policy-model-not-allowed" in (tmp_path / "a.html").read_text()


def test_audit_of_a_store_without_refusals_has_none(refused):
    study, _ = refused

    assert study.audit().to_json()["refusals"] == []


def test_follow_alerts_once_naming_round_hospital_and_code(refused):
    study, run = refused
    console = Console(record=True, width=200)

    rc = follow(
        study.chain.w3,
        study.client.address,
        study.study_id,
        console,
        alert_share=100.0,
        poll_interval=0.01,
        max_polls=2,
        from_block=study.start_block,
        store=run,
    )

    out = console.export_text()
    assert rc == 1
    alerts = [line for line in out.splitlines() if "ALERT" in line]
    assert alerts == [f"ALERT round 2 hospital hospital_1 refused the task: {REFUSED.reason}"]


def test_follow_reads_new_manifests_as_they_appear(tmp_path):
    store = ArtifactStore(tmp_path)
    console = Console(record=True, width=200)
    seen: set = set()
    assert refusal_alerts(tmp_path, seen, console) == 0

    _manifest(store, REFUSED)

    assert refusal_alerts(tmp_path, seen, console) == 1
    assert refusal_alerts(tmp_path, seen, console) == 0  # the same refusal alerts once
    assert "ALERT round 1 hospital hospital_1 refused the task: policy-model-not-allowed" in console.export_text()


def test_budget_alert_names_the_hospital_and_the_round_it_crossed(refused):
    from ledger.audit.follow import _budget_alerts

    study, run = refused
    result = study.audit(store=run)  # labels learned from the store, as --follow with a store does
    console = Console(record=True, width=400)

    alerts = _budget_alerts(result, 1e-9, set(), console, planned=None)

    lines = [line for line in console.export_text().splitlines() if "ALERT" in line]
    assert alerts == len(lines) == 2
    assert all("crossed 0% of its budget" in line and "in round 1 " in line for line in lines)
    assert any("hospital hospital_0 (0x" in line for line in lines)


def test_a_spend_within_the_registered_target_is_a_notice_not_an_alert(refused):
    from ledger.audit.follow import _budget_alerts

    study, run = refused
    result = study.audit(store=run)
    spent = max(max(e.values()) for e in result.epsilon.values())
    console = Console(record=True, width=400)

    assert _budget_alerts(result, 1e-9, set(), console, planned=spent) == 0
    out = console.export_text()
    assert "ALERT" not in out and out.count("notice") == 2 and f"target epsilon {spent:g}, as planned" in out
    assert _budget_alerts(result, 1e-9, set(), Console(record=True), planned=spent / 2) == 2  # beyond the plan
