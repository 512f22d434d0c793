"""Researcher entry point: `python -m experiments.run <hydra overrides>` (add `-m` to sweep).

Examples:
    python -m experiments.run                                   # the default study
    python -m experiments.run num_hospitals=4 num_rounds=10 model=mlp
    python -m experiments.run -m seed=1,2,3                     # writes a summary across runs
    python -m experiments.run -m +experiment=privacy_sweep      # accuracy against epsilon
    python -m experiments.run --verbose dataset=csv ...         # a data error with its traceback
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments.failures import remove_if_empty, stop_on_data_error, take_verbose_flag
from fedledger.config import register_schemas
from fl_client.data import DataError

register_schemas()


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from experiments.simulation import run_simulated_study

    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = run_simulated_study(resolved, run_dir)
    except DataError as exc:  # the user's input, named in the message: one line (--verbose: the traceback)
        stop_on_data_error(exc, run_dir)
    except BaseException:  # any other failure keeps its traceback, and leaves no empty run folder either
        remove_if_empty(run_dir)
        raise
    audit = results.get("audit")
    if audit is not None and not audit.get("ok", False):
        sys.exit(2)
    return float((results.get("final") or {}).get("accuracy") or 0.0)  # a sweeper maximises it (binary, multiclass)


if __name__ == "__main__":
    take_verbose_flag(sys.argv)
    main()
