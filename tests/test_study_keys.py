"""No development keys outside tests (issue 19, item 4).

A study set up by the coordinator gives its roles to fresh keys kept beside the run
directory, never to the public mnemonic's accounts; a deployment refuses the mnemonic.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coordinator.credentials import secrets_dir
from coordinator.provision import compose_config, refuse_dev_keys
from coordinator.study_setup import prepare_study
from ledger.accounts import DEV_MNEMONIC, DevKeyError, dev_accounts, load_eth_account, refuse_dev_addresses
from ledger.audit.secret_scan import check_secrets
from ledger.chains import ChainError, load_aggregator_account
from ledger.client import LedgerClient
from ledger.reverts import LedgerRevert

DEFAULT_ADMIN_ROLE = b"\x00" * 32


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A freshly set-up study on an in-process chain, as the simulation launcher prepares it."""
    cfg = compose_config(["ledger=eth_tester", "num_hospitals=2", "privacy=off", "encryption=ckks_n4096"])
    prepared = prepare_study(cfg, tmp_path_factory.mktemp("study") / "run")
    yield prepared
    prepared.close()


def _client(prepared, account) -> LedgerClient:
    return LedgerClient.at(prepared.chain.w3, prepared.spec["chain"]["contract"], account)


@pytest.mark.parametrize("index", [0, 1])
def test_mnemonic_account_cannot_add_a_sybil_hospital(study, index):
    # Arrange: the accounts that used to be the admin (0) and the aggregator (1)
    attacker = dev_accounts(2)[index]
    sybil = dev_accounts(5)[4].address

    # Act / Assert
    with pytest.raises(LedgerRevert) as refused:
        _client(study, attacker).add_hospitals(study.spec["study_id"], [sybil], [10**6])
    assert refused.value.error in ("NotStudyAdmin", "AccessControlUnauthorizedAccount")


def test_the_study_admin_key_can_add_a_hospital_and_holds_the_contract(study, tmp_path):
    # Arrange: the study admin's own key, from beside the run dir
    admin = load_eth_account(secrets_dir(Path(study.spec["run_dir"])) / "keys" / "admin_eth_key")
    newcomer = dev_accounts(6)[5].address
    client = _client(study, admin)

    # Act
    client.add_hospitals(study.spec["study_id"], [newcomer], [10**6])

    # Assert: the same call the mnemonic's accounts could not make; the dev account holds no role
    contract = client.contract
    assert contract.functions.hasRole(DEFAULT_ADMIN_ROLE, admin.address).call()
    assert not contract.functions.hasRole(DEFAULT_ADMIN_ROLE, dev_accounts(1)[0].address).call()
    assert study.spec["chain"]["admin"] == admin.address


def test_study_keys_are_fresh_owner_only_and_outside_the_run_dir(study):
    run_dir = Path(study.spec["run_dir"])
    keys = secrets_dir(run_dir) / "keys"
    chain = study.spec["chain"]

    aggregator = load_eth_account(chain["aggregator_key"])

    assert Path(chain["aggregator_key"]).parent == keys and aggregator.address == chain["aggregator"]
    refuse_dev_addresses({"admin": chain["admin"], "aggregator": chain["aggregator"]})  # not the mnemonic's
    for h in study.spec["hospitals"]:
        assert Path(h["eth_key"]).is_relative_to(keys) and Path(h["secret_context"]).is_relative_to(keys)
    assert stat.S_IMODE(os.stat(keys.parent).st_mode) == 0o700
    assert (run_dir / "keys" / "ckks" / "aggregator_public.ctx").is_file()  # the public context stays
    assert [f.ok for f in check_secrets(run_dir)] == [True]


def test_refuse_dev_addresses_names_every_role_and_index():
    accounts = dev_accounts(3)

    with pytest.raises(DevKeyError) as refused:
        refuse_dev_addresses({"aggregator": accounts[1].address, "hospital h0": accounts[2].address})

    assert "aggregator" in str(refused.value) and "account 1" in str(refused.value)
    assert "hospital h0" in str(refused.value) and "account 2" in str(refused.value)
    assert DEV_MNEMONIC in str(refused.value)


def test_provision_refuses_a_spec_whose_hospital_is_a_mnemonic_account(study):
    spec = {**study.spec, "hospitals": [{"id": "h0", "address": dev_accounts(8)[7].address}]}

    with pytest.raises(DevKeyError, match="hospital h0"):
        refuse_dev_keys(spec)


def test_operator_key_from_the_mnemonic_is_refused(monkeypatch):
    monkeypatch.setenv("FL_TEST_AGG_KEY", dev_accounts(1)[0].key.hex())

    with pytest.raises(ChainError, match="account 0 of the public development mnemonic"):
        load_aggregator_account("FL_TEST_AGG_KEY")


def test_deployment_set_up_with_a_mnemonic_admin_key_is_refused(tmp_path, monkeypatch, capsys):
    # Arrange: an operator who gives the public mnemonic's account 0 as the study's key (backend rpc)
    from coordinator.cli import main

    monkeypatch.setenv("FEDLEDGER_AGGREGATOR_KEY", dev_accounts(1)[0].key.hex())
    study = tmp_path / "study"

    # Act
    rc = main(
        ["provision", str(study), "privacy=off", "encryption=off"]
        + ["--builtin", "2", "--ledger", "rpc", "--rpc-url", "http://127.0.0.1:9"]
    )

    # Assert: refused before any chain is reached, with the reason
    assert rc == 1
    err = capsys.readouterr().err
    assert "account 0 of the public development mnemonic" in err
    assert not (study / "study.json").exists()


def test_keys_init_with_a_public_dir_keeps_the_secret_context_apart(tmp_path):
    from coordinator.cli import main

    rc = main(
        [
            "keys",
            "init",
            str(tmp_path / "secret"),
            "--preset",
            "ckks_n4096",
            "--public-dir",
            str(tmp_path / "s/keys/ckks"),
        ]
    )

    assert rc == 0
    assert {p.name for p in (tmp_path / "secret").iterdir()} == {"hospital_secret.ctx"}
    assert (tmp_path / "s/keys/ckks/aggregator_public.ctx").is_file()
    assert [f.ok for f in check_secrets(tmp_path / "s")] == [True]
