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


def test_provision_without_any_hospital_file(tmp_path, capsys):
    """The coordinator has none of the CSVs: provisioning still succeeds; each hospital's data-path is its own."""
    study = tmp_path / "study"
    rc = cli(
        [
            "provision",
            str(study),
            *PLAIN,
            "--hospitals",
            "a=/srv/hospital_a/a.csv,b",
            "--schema",
            str(_schema(tmp_path)),
            "--ledger",
            "none",
            "--superlink",
            "agg.example.org:9093",
        ]
    )
    assert rc == 0, capsys.readouterr().err
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
    study = tmp_path / "study"
    assert (
        cli(
            [
                "provision",
                str(study),
                *PLAIN,
                "--hospitals",
                "a,b",
                "--schema",
                str(_schema(tmp_path)),
                "--ledger",
                "none",
            ]
        )
        == 0
    )
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
