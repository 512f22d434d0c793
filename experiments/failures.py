"""How a researcher's run ends on bad input: one line, no empty output folder.

A data error (a bad CSV value, a missing file, a conflicting setting) is the
user's to fix, not a bug: its message names the file, line and value, and a
traceback only buries it. ``--verbose`` or ``HYDRA_FULL_ERROR=1`` brings the
traceback back.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

VERBOSE_FLAG = "--verbose"
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"  # Hydra's own switch for full tracebacks
HYDRA_OWN = (".hydra",)  # what Hydra writes into every run folder, besides its <job>.log


def take_verbose_flag(argv: list[str]) -> bool:
    """Remove ``--verbose`` from ``argv`` (Hydra would refuse it) and turn on full tracebacks."""
    if VERBOSE_FLAG not in argv:
        return False
    argv[:] = [a for a in argv if a != VERBOSE_FLAG]
    os.environ[FULL_ERROR_ENV] = "1"
    return True


def holds_nothing(run_dir: Path) -> bool:
    """True when the folder has only what Hydra itself put there (its config copy and log)."""
    if not run_dir.is_dir():
        return False
    return all(p.name in HYDRA_OWN or (p.is_file() and p.suffix == ".log") for p in run_dir.iterdir())


def remove_if_empty(run_dir: Path) -> bool:
    """Delete a run folder that holds nothing of the run; a folder with any result stays."""
    if not holds_nothing(run_dir):
        return False
    shutil.rmtree(run_dir)
    return True


def stop_on_data_error(exc: Exception, run_dir: Path) -> NoReturn:
    """One line on stderr and exit status 1, or the full traceback when asked for."""
    removed = remove_if_empty(run_dir)
    if os.environ.get(FULL_ERROR_ENV) == "1":
        raise exc
    where = "" if removed else f" (run folder kept: {run_dir})"
    print(f"data error ({type(exc).__name__}): {exc}{where}", file=sys.stderr)
    raise SystemExit(1)
