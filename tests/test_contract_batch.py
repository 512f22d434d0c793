"""Large consortia register hospitals in batches (addHospitals), since one block cannot hold 1,000."""

from __future__ import annotations

import pytest
from eth_account import Account

from ledger.chains import start_chain
from ledger.client import LedgerClient
from ledger.reverts import LedgerRevert


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    chain = start_chain("eth_tester", tmp_path_factory.mktemp("chain"))
    client = LedgerClient.deploy(chain.w3, chain.admin)
    yield chain, client
    chain.stop()


def test_add_hospitals_in_batches_then_each_consents(ledger):
    # arrange
    chain, client = ledger
    study = "0x" + "ab" * 32
    accounts = [Account.create() for _ in range(5)]
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 10**6
    client.register_study(
        study,
        b"\x01" * 32,
        b"\x02" * 32,
        b"\x00" * 32,
        "t",
        chain.aggregator.address,
        expiry,
        [accounts[0].address],
        [10**6],
        1,
    )
    # act
    client.add_hospitals(study, [a.address for a in accounts[1:]], [2 * 10**6] * 4)
    chain.fund(accounts[3].address)
    client.consent(study, accounts[3], 100)
    # assert
    assert client.read_study(study).hospitals == tuple(a.address for a in accounts)
    assert client.read_hospital(study, accounts[3].address).status == "consented"
    assert client.read_hospital(study, accounts[4].address).budget_micro == 2 * 10**6


def test_add_hospitals_refuses_unknown_study_duplicates_and_strangers(ledger):
    chain, client = ledger
    a = Account.create()
    with pytest.raises(LedgerRevert) as unknown:
        client.add_hospitals("0x" + "cd" * 32, [a.address], [1])
    assert unknown.value.error == "UnknownStudy"
    study = "0x" + "ef" * 32
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 10**6
    client.register_study(
        study, b"\x01" * 32, b"\x02" * 32, b"\x00" * 32, "t", chain.aggregator.address, expiry, [a.address], [1], 1
    )
    with pytest.raises(LedgerRevert) as twice:
        client.add_hospitals(study, [a.address], [1])
    assert twice.value.error == "HospitalRegisteredTwice"
    stranger = chain.funded_accounts[3]
    with pytest.raises(LedgerRevert):
        client.add_hospitals(study, [Account.create().address], [1], sender=stranger)
