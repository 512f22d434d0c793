"""Descriptive statistics entry point: `python -m experiments.stats <hydra overrides>` (docs/STATS.md).

Examples:
    python -m experiments.stats                                  # breast_cancer by diagnosis, 4 hospitals
    python -m experiments.stats +experiment=table1               # GBSG2: Table 1 and Kaplan-Meier
    python -m experiments.stats dataset=csv stats=csv            # the hospitals' CSV files (schema stats section)
    python -m experiments.stats +experiment=table1 stats.epsilon=2 stats.min_cell=10
    python -m experiments.stats stats=breast_cancer stats.show_exact=true   # name the settings to override a key
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
def main(cfg: DictConfig) -> None:
    from experiments.stats_study import run_stats_study

    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        results = run_stats_study(resolved, run_dir)
    except DataError as exc:
        stop_on_data_error(exc, run_dir)
    except BaseException:
        remove_if_empty(run_dir)
        raise
    print(Path(results["outputs"]["md"]).read_text(encoding="utf-8"))
    print(
        f"query {results['query_hash']} recorded in {results['record_tx']}; audit {'PASS' if results['audit']['ok'] else 'FAIL'}"
    )
    for line in results["alerts"]:
        print(f"ALERT {line}")
    print(f"outputs in {run_dir}")
    if not results["audit"]["ok"]:
        sys.exit(2)


if __name__ == "__main__":
    take_verbose_flag(sys.argv)
    main()
