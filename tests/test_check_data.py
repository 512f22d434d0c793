"""`fedledger check-data`: a hospital checks its CSV against the schema without a study."""

from __future__ import annotations

import shutil
from pathlib import Path

from coordinator.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "csv_study"


def test_a_good_file_passes_with_its_counts(capsys):
    rc = main(["check-data", str(EXAMPLE / "cleveland.csv"), "--schema", str(EXAMPLE / "schema.yaml")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "OK" in out and "200 usable rows (160 train, 40 test)" in out and "20 model inputs" in out


def test_a_broken_file_fails_with_one_line_naming_line_and_column(tmp_path, capsys):
    # arrange: a copy with one non-numeric age
    lines = (EXAMPLE / "cleveland.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("age")] = "sixty"
    (tmp_path / "bad.csv").write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    # act
    rc = main(["check-data", str(tmp_path / "bad.csv"), "--schema", str(EXAMPLE / "schema.yaml")])
    err = capsys.readouterr().err
    # assert
    assert rc == 1
    assert err.startswith("FAIL") and "line 2" in err and "'age'" in err and "'sixty'" in err


def test_the_hospital_directory_names_the_file_and_schema(tmp_path, capsys):
    shutil.copy(EXAMPLE / "hungary.csv", tmp_path / "data.csv")
    shutil.copy(EXAMPLE / "schema.yaml", tmp_path / "schema.yaml")
    (tmp_path / "node_config.toml").write_text(
        'hospital-id = "hungary"\ndata-path = "data.csv"\nschema-path = "schema.yaml"\n'
    )
    assert main(["check-data", "--hospital-dir", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_without_a_file_it_says_what_it_needs(capsys):
    assert main(["check-data"]) == 2
    assert "give the CSV and --schema, or --hospital-dir" in capsys.readouterr().err
