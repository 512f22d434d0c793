"""The aggregator's Flower ServerApp: read the study spec, build the strategy chain, run the rounds."""

from __future__ import annotations

import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedledger.study_spec import STUDY_ENV
from fl_server.study import run_study

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Simulation passes the spec path in $FEDLEDGER_STUDY; deployment in the run config `study-spec`."""
    spec_path = context.run_config.get("study-spec") or os.environ.get(STUDY_ENV)
    if not spec_path:
        raise SystemExit(f"no study spec: pass --run-config 'study-spec=\"<run dir>/study.json\"' or set {STUDY_ENV}")
    run_study(grid, Path(str(spec_path)))
