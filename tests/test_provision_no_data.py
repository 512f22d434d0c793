"""Issue 17 (hospital IT): study set-up reads no hospital data; placeholders; hospitals' own keys; consent.

Fast tests provision with ``--ledger none`` (no chain); the ones with a chain are marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from coordinator.cli import main as cli
from coordinator.hospital_args import DATA_PLACEHOLDER, parse_addresses, parse_hospitals
from coordinator.provision import resolve_node_config
from fl_client.data import study_layout
from fl_client.settings import SettingsError, from_node_config
from tests.deploy_helpers import deployment  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "examples" / "csv_study" / "schema.yaml"
PLAIN = ["privacy=off", "encryption=off", "num_rounds=1"]
OWN = "0x" + "ab" * 20  # a hospital's own key's address (its key is never handed over)


def _schema(tmp_path: Path) -> Path:
    p = tmp_path / "schema.yaml"
    p.write_text(
        "target: {column: y, positive: '== 1'}\nnumeric: [age, bp]\ncategorical: {sex: [f, m], cp: [1, 2, 3]}\n"
    )
    return p


def _provision_no_ledger(tmp_path: Path, hospitals: str, *extra: str) -> Path:
    """`fedledger provision` of a CSV study without a chain; the hospitals' files exist nowhere."""
    study = tmp_path / "study"
    argv = ["provision", str(study), *PLAIN, "--hospitals", hospitals, "--schema", str(_schema(tmp_path))]
    assert cli([*argv, "--ledger", "none", *extra]) == 0
    return study


def test_study_layout_comes_from_the_schema_alone(tmp_path):
    """2 numeric + 2 + 3 one-hot columns = 7 model inputs, with no hospital file anywhere."""
    cfg = {
        "name": "csv",
        "schema": str(_schema(tmp_path)),
        "hospitals": [{"id": "a", "path": str(tmp_path / "absent_a.csv")}, {"id": "b", "path": "/nowhere/b.csv"}],
    }
    layout = study_layout(cfg, 2)
    assert layout.hospital_ids == ("a", "b")
    assert layout.feature_names == ("age", "bp", "sex=f", "sex=m", "cp=1", "cp=2", "cp=3")
    assert layout.n_features == 7


def test_provision_without_any_hospital_file(tmp_path):
    """The coordinator has none of the CSVs: provisioning still succeeds; each hospital's data-path is its own."""
    study = _provision_no_ledger(tmp_path, "a=/srv/hospital_a/a.csv,b", "--superlink", "agg.example.org:9093")
    spec = json.loads((study / "study.json").read_text())
    assert spec["n_features"] == 7
    assert [(h["id"], h["n_train"]) for h in spec["hospitals"]] == [("a", None), ("b", None)]  # no rows read
    bundles = Path(f"{study}.secrets") / "hospitals"
    a = tomllib.loads((bundles / "a" / "node_config.toml").read_text())
    b = tomllib.loads((bundles / "b" / "node_config.toml").read_text())
    assert a["data-path"] == "/srv/hospital_a/a.csv"
    assert b["data-path"] == DATA_PLACEHOLDER
    assert a["superlink"] == "agg.example.org:9093" and a["study-id"] == spec["study_id"]
    assert "FILL-ME" in (bundles / "b" / "README.md").read_text()


def test_placeholder_data_path_is_refused_naming_key_and_file(tmp_path):
    study = _provision_no_ledger(tmp_path, "a,b")
    hdir = Path(f"{study}.secrets") / "hospitals" / "a"
    with pytest.raises(SettingsError, match=r"node_config.toml.*data-path = '/data/FILL-ME.csv'.*Edit"):
        resolve_node_config(hdir)  # what deploy/run_hospital.sh runs before starting the SuperNode
    with pytest.raises(SettingsError, match="data-path"):
        from_node_config({"hospital-id": "a", "data-path": DATA_PLACEHOLDER})  # the node itself, too
    # filled in, it starts
    text = (hdir / "node_config.toml").read_text().replace(DATA_PLACEHOLDER, "/data/a.csv")
    (hdir / "node_config.toml").write_text(text)
    assert resolve_node_config(hdir)["data-path"] == "/data/a.csv"


def test_hospitals_argument_parsing():
    hs = parse_hospitals(f"a@{OWN}=/d/a.csv, b=b.csv ,c@{OWN.upper().replace('0X', '0x')}")
    assert [(h.id, h.path) for h in hs] == [("a", "/d/a.csv"), ("b", "b.csv"), ("c", None)]
    assert hs[0].address == hs[2].address and hs[0].address.lower() == OWN and hs[1].address is None
    assert parse_addresses(f"hospital_0={OWN}") == {"hospital_0": hs[0].address}
    with pytest.raises(ValueError, match="not an Ethereum address"):
        parse_hospitals("a@0x1234=a.csv")
    with pytest.raises(ValueError, match="more than once"):
        parse_hospitals("a=x.csv,a=y.csv")
    with pytest.raises(ValueError, match="not id=0xADDRESS"):
        parse_addresses(OWN)


def test_check_data_names_the_placeholder(tmp_path, capsys):
    study = _provision_no_ledger(tmp_path, "a")
    capsys.readouterr()
    hdir = Path(f"{study}.secrets") / "hospitals" / "a"
    assert cli(["check-data", "--hospital-dir", str(hdir)]) == 2
    err = capsys.readouterr().err
    assert "data-path is still the placeholder '/data/FILL-ME.csv'" in err and "node_config.toml" in err


# -- with a chain: the hospital's own key, its own consent ------------------------------------------


def _own_key(path: Path):
    from eth_account import Account

    account = Account.create()
    path.write_text(account.key.hex())
    return account


@pytest.mark.slow
def test_own_key_hospital_gets_no_key_and_consents_itself(tmp_path, capsys, deployment):
    """Hospital `cleveland` brings its own key: the coordinator holds only its address; the hospital
    consents with that key and its own training row count, read on the chain the study runs on."""
    from urllib.parse import urlparse

    from fl_client.consent import ConsentError, consent
    from fl_client.data.csv_loader import load_csv_hospital
    from fl_client.data.csv_schema import load_schema
    from ledger.client import LedgerClient
    from ledger.rpc import http_w3

    csv_dir = REPO / "examples" / "csv_study"
    own = _own_key(tmp_path / "my_hospital_key")  # stays on the hospital's side, never given to provision
    study = tmp_path / "study"
    rc = cli(
        [
            "provision",
            str(study),
            *PLAIN,
            "--hospitals",
            f"cleveland@{own.address}={csv_dir / 'cleveland.csv'},hungary={csv_dir / 'hungary.csv'}",
            "--schema",
            str(SCHEMA),
            "--ledger",
            "anvil",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert f"its own key {own.address}" in out.out
    spec = json.loads((study / "study.json").read_text())
    cleveland = next(h for h in spec["hospitals"] if h["id"] == "cleveland")
    assert cleveland["address"] == own.address and cleveland["eth_key"] is None
    secrets = Path(f"{study}.secrets")
    assert not (secrets / "keys" / "cleveland").exists()
    bundle = secrets / "hospitals" / "cleveland"
    assert not (bundle / "eth_key").exists()
    own_hex = own.key.hex().removeprefix("0x")
    assert not any(
        own_hex in p.read_text(errors="ignore") for p in [*study.rglob("*"), *secrets.rglob("*")] if p.is_file()
    )
    nc = tomllib.loads((bundle / "node_config.toml").read_text())
    assert nc["eth-address"] == own.address and "FILL-ME" in nc["eth-key"]
    assert nc["chain-rpc"] == spec["chain"]["rpc_url"] and nc["study-id"] == spec["study_id"]

    deployment.chain(study, urlparse(spec["chain"]["rpc_url"]).port)
    client = LedgerClient.at(http_w3(spec["chain"]["rpc_url"]), spec["chain"]["contract"])
    assert client.read_hospital(spec["study_id"], own.address).status == "registered"  # nobody consented for it

    with pytest.raises(SettingsError, match="eth-key"):
        consent(bundle)  # the placeholder is still there
    hungary_key = str(secrets / "hospitals" / "hungary" / "eth_key")
    with pytest.raises(ConsentError, match=f"registered {own.address}"):
        consent(bundle, eth_key=hungary_key)  # another key than the one whose address it gave

    assert cli(["consent", "--hospital-dir", str(bundle), "--eth-key", str(tmp_path / "my_hospital_key")]) == 0
    n_train = load_csv_hospital(load_schema(SCHEMA), csv_dir / "cleveland.csv", "cleveland", seed=0).n_train
    assert f"consented: {own.address}, cohort size {n_train}" in capsys.readouterr().out
    info = client.read_hospital(spec["study_id"], own.address)
    assert (info.status, info.max_samples) == ("consented", n_train)
    again = consent(bundle, eth_key=str(tmp_path / "my_hospital_key"))
    assert (again.status, again.max_samples) == ("already-consented", n_train)  # nothing sent twice
    # the other hospital consents with the key its bundle holds
    assert consent(secrets / "hospitals" / "hungary").status == "consented"
