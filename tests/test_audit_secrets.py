"""The evidence holds no secrets (issue 19, item 5), and a run dir's audit says what a local chain proves.

The auditor refuses (``secrets`` FAIL naming the file) a store holding a key; an
honest store, with its public context and fingerprint, passes. An audit of a
run dir whose chain the coordinator ran says, in every report, that it proves
integrity only against the hospitals' signatures.
"""

from __future__ import annotations

import json
import shutil

import pytest
from eth_account import Account
from rich.console import Console

from fedledger import ckks
from ledger.audit.report import print_report, render_html
from ledger.audit.run_dir import audit_run_dir
from ledger.audit.secret_scan import check_secrets, secret_kind
from tests.audit_builders import deployed_ledger
from tests.test_audit import BuiltStudy, build_study

ONLY_SIGNATURES = "proves integrity only against the hospitals' signatures, not against an independent chain"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> ckks.KeyPaths:
    return ckks.create_keys(tmp_path_factory.mktemp("ckks"), ckks.preset("ckks_n4096"))


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> BuiltStudy:
    ledger = deployed_ledger(tmp_path_factory)
    return build_study(ledger.chain, ledger.client, ledger.root, seed=19, n_hospitals=2, n_rounds=1, release=False)


def test_secret_kind_tells_keys_from_public_files(keys, tmp_path):
    # Arrange: one file of each kind
    acct = Account.create()
    hex_key = tmp_path / "eth_key"
    hex_key.write_text(acct.key.hex())
    keystore = tmp_path / "wallet.json"
    keystore.write_text(json.dumps(Account.encrypt(acct.key, "pw", iterations=2)))
    pem = tmp_path / "server.key"
    pem.write_text("-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n")
    manifest = tmp_path / "round_00001.json"
    manifest.write_text(json.dumps({"aggregate_hash": "0x" + "ab" * 32}))
    source = tmp_path / "scan.py"  # code that mentions a key's marker (a Flower app copy holds the project's source)
    source.write_text('MARK = b"-----BEGIN PRIVATE KEY-----"\n')

    # Act / Assert
    assert secret_kind(keys.secret_context) == "a TenSEAL context with the secret key"
    assert secret_kind(hex_key) == "an Ethereum private key (hex)"
    assert secret_kind(keystore) == "an Ethereum keystore (encrypted private key)"
    assert secret_kind(pem) == "a PEM/OpenSSH private key"
    for public in (keys.aggregator_context, keys.fingerprint, keys.params, manifest, source):
        assert secret_kind(public) is None, public


def test_honest_store_passes_the_secrets_check(honest):
    findings = check_secrets(honest.run_dir)

    assert [f.ok for f in findings] == [True]
    assert [f for f in honest.audit().failures if f.check == "secrets"] == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("keys/ckks/hospital_secret.ctx", "a TenSEAL context with the secret key"),
        ("keys/hospital_0/eth_key", "an Ethereum private key (hex)"),
        ("keys/aggregator.json", "an Ethereum keystore"),
    ],
)
def test_audit_fails_a_store_holding_a_secret_key_and_names_the_file(honest, keys, tmp_path, name, kind):
    # Arrange: a copy of the honest store with one key left in it
    run = tmp_path / "run"
    shutil.copytree(honest.run_dir, run)
    leaked = run / name
    leaked.parent.mkdir(parents=True, exist_ok=True)
    acct = Account.create()
    if name.endswith(".ctx"):
        shutil.copy(keys.secret_context, leaked)
    elif name.endswith(".json"):
        leaked.write_text(json.dumps(Account.encrypt(acct.key, "pw", iterations=2)))
    else:
        leaked.write_text(acct.key.hex())

    # Act
    result = honest.audit(store=run)

    # Assert: the audit fails on that file alone, and says why
    failures = result.failures
    assert not result.ok
    assert [(f.check, f.round, f.hospital) for f in failures] == [("secrets", None, None)]
    assert failures[0].message.startswith(f"{name} is {kind}")
    assert "must hold no key" in failures[0].message


def test_run_dir_audit_of_a_coordinator_chain_says_what_it_proves(honest, tmp_path):
    # Arrange: the honest study's run dir (its chain: an in-process eth_tester the coordinator ran)
    console = Console(record=True, width=200)

    # Act
    verdict = audit_run_dir(
        honest.run_dir, console, json_path=tmp_path / "a.json", html_path=tmp_path / "a.html", w3=honest.chain.w3
    )

    # Assert: terminal, JSON and HTML each say it
    assert verdict["ok"], verdict["failures"]
    assert ONLY_SIGNATURES in verdict["notices"][0]
    assert verdict["evidence_scope"]["not_against"] == "an independent chain"
    assert verdict["evidence_scope"]["integrity_against"] == ["the hospitals' signatures"]
    assert ONLY_SIGNATURES in " ".join(console.export_text().split())
    assert ONLY_SIGNATURES.replace("'", "&#x27;") in (tmp_path / "a.html").read_text()


def test_chain_only_audit_carries_no_local_chain_notice(honest):
    result = honest.audit()
    console = Console(record=True, width=200)

    print_report(result, console)

    assert ONLY_SIGNATURES not in console.export_text() and "evidence_scope" not in result.to_json()
    assert ONLY_SIGNATURES not in render_html(result)
