"""A researcher's run on bad data: one line, exit status 1, no empty output folder; --verbose: the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from experiments.failures import remove_if_empty, take_verbose_flag

REPO = Path(__file__).resolve().parents[1]
SCHEMA = 'target: {column: num, positive: "> 0"}\nnumeric: [age]\ncategorical: {cp: [1, 2, 3]}\n'


def run_study(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "schema.yaml").write_text(SCHEMA)
    (tmp_path / "a.csv").write_text("age,cp,num\n40,1,0\nforty,2,1\n50,9,x\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.run", *extra, "dataset=csv", f"dataset.schema={tmp_path / 'schema.yaml'}",
         f"dataset.hospitals=[{{id: a, path: {tmp_path / 'a.csv'}}}]", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_data_error_is_one_line_listing_every_bad_value_and_leaves_no_folder(tmp_path):
    # act
    done = run_study(tmp_path)
    # assert: status 1, one stderr line naming all three bad cells, no traceback, no run folder
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("data error (InvalidValuesError): ")
    assert "line 3 'forty'" in lines[0] and "line 4 'x'" in lines[0] and "line 4 '9'" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def test_verbose_shows_the_traceback(tmp_path):
    done = run_study(tmp_path, "--verbose")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "InvalidValuesError" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_folder_with_anything_but_hydras_own_files_is_kept(tmp_path):
    # arrange: Hydra's config copy and log in both; a results.json in one
    empty, used = tmp_path / "empty", tmp_path / "used"
    for d in (empty, used):
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text("x: 1\n")
        (d / "run.log").write_text("")
    (used / "results.json").write_text("{}")
    # act / assert
    assert remove_if_empty(empty) and not empty.exists()
    assert not remove_if_empty(used) and (used / "results.json").exists()


def test_the_verbose_flag_is_taken_out_of_hydras_arguments(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    argv = ["run.py", "--verbose", "seed=1"]
    assert take_verbose_flag(argv) and argv == ["run.py", "seed=1"] and os.environ["HYDRA_FULL_ERROR"] == "1"


def test_any_other_set_up_failure_keeps_its_message_and_leaves_no_folder(tmp_path):
    # arrange: a release quorum larger than the study's 4 hospitals, refused before anything is written
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    args = ["ledger=none", "encryption=off", "ledger.release_quorum=9", f"hydra.run.dir={tmp_path / 'out'}"]
    # act
    done = subprocess.run(
        [sys.executable, "-m", "experiments.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    # assert
    assert done.returncode != 0 and "release_quorum must be between 1 and the 4 hospitals, got 9" in done.stderr
    assert not (tmp_path / "out").exists()
