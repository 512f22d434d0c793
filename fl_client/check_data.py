"""`fedledger check-data`: a hospital checks its own CSV against the study schema, before any study runs.

The same loader the node uses reads the file, so a file that passes here is
one the node accepts; nothing leaves the machine. Give the schema and the
file, or the directory `fedledger provision` gave the hospital (its
node_config.toml names both).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from fl_client.data.csv_loader import load_csv_hospital
from fl_client.data.csv_schema import load_schema
from fl_client.data.errors import DataError
from fl_client.data.hospital import HospitalData


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("check-data", help="check a hospital's CSV against the study schema (no study needed)")
    p.add_argument("csv", nargs="?", help="the hospital's CSV file (default: data-path of --hospital-dir)")
    p.add_argument("--schema", help="the study's schema.yaml (default: schema-path of --hospital-dir)")
    p.add_argument("--hospital-dir", help="the directory `fedledger provision` gave this hospital")
    p.add_argument("--id", default="this-hospital", help="a name for messages (default: the node config's)")
    p.set_defaults(handler=handle)
    return p


def _from_hospital_dir(args: argparse.Namespace) -> tuple[str | None, str | None, str]:
    if not args.hospital_dir:
        return args.csv, args.schema, args.id
    base = Path(args.hospital_dir)
    nc = tomllib.loads((base / "node_config.toml").read_text())

    def rel(key: str) -> str | None:
        v = nc.get(key)
        return None if v is None else str(v if Path(str(v)).is_absolute() else base / str(v))

    return args.csv or rel("data-path"), args.schema or rel("schema-path"), str(nc.get("hospital-id", args.id))


def handle(args: argparse.Namespace) -> int:
    try:
        csv, schema_path, hospital_id = _from_hospital_dir(args)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"error: cannot read {args.hospital_dir}/node_config.toml: {exc}", file=sys.stderr)
        return 2
    if not csv or not schema_path:
        print("error: give the CSV and --schema, or --hospital-dir", file=sys.stderr)
        return 2
    if csv.startswith("builtin:"):
        print(f"{csv} is a built-in data set: nothing to check")
        return 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_csv_hospital(load_schema(schema_path), csv, hospital_id, seed=0)
        except DataError as exc:
            print(f"FAIL {csv}: {exc}", file=sys.stderr)
            return 1
    n_train, n_test = len(data.y_train), len(data.y_test)
    print(f"OK   {csv} matches {schema_path}")
    print(f"     {n_train + n_test} usable rows ({n_train} train, {n_test} test), {_target_summary(data)}")
    print(f"     {len(data.feature_names)} model inputs: {', '.join(data.feature_names)}")
    for w in caught:
        print(f"note {w.message}")
    return 0


def _target_summary(data: HospitalData) -> str:
    """What the rows hold of the target: positives (binary), rows per class (multiclass), the range (regression)."""
    y = np.concatenate([data.y_train, data.y_test])
    if data.task == "multiclass":
        counts = np.bincount(y.astype(np.int64), minlength=data.num_outputs)
        return "rows per class " + ", ".join(f"{c}: {int(k)}" for c, k in zip(data.class_labels, counts))
    if data.task == "regression":
        mean, std = data.target_scale
        return f"target {float(y.min()) * std + mean:g} to {float(y.max()) * std + mean:g} (mean {mean:.4g})"
    return f"{int(np.sum(y))} positive"
