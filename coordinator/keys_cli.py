"""`fedledger keys init <dir> [--preset NAME]`: the study's CKKS key ceremony."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coordinator.credentials import move_public_ckks
from fedledger import ckks


def add_parser(subparsers) -> argparse.ArgumentParser:
    keys = subparsers.add_parser("keys", help="CKKS key ceremony for a study")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    init = sub.add_parser("init", help="create the hospitals' secret context and the aggregator's context")
    init.add_argument("directory", help="output directory (created with mode 0700)")
    init.add_argument(
        "--preset",
        default="ckks",
        choices=sorted(ckks.PRESETS),
        help="CKKS parameter preset (see docs/ENCRYPTION.md); default: ckks",
    )
    init.add_argument("--force", action="store_true", help="replace an existing study key (destroys it)")
    init.add_argument(
        "--public-dir",
        help="move the public files (aggregator context, fingerprint, parameters) here, e.g. STUDY_DIR/keys/ckks: "
        "the secret context stays in DIRECTORY, which never goes into a study directory handed to an auditor",
    )
    init.set_defaults(handler=handle)
    keys.set_defaults(handler=handle)
    return keys


def handle(args: argparse.Namespace) -> int:
    if getattr(args, "keys_command", None) != "init":
        print("usage: fedledger keys init <dir> [--preset NAME]", file=sys.stderr)
        return 2
    try:
        params = ckks.preset(args.preset)
        paths = ckks.create_keys(args.directory, params, overwrite=args.force)
    except (FileExistsError, ckks.SecurityError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    public = move_public_ckks(paths, Path(args.public_dir)) if args.public_dir else paths.aggregator_context
    print(
        f"preset              {params.preset}: N={params.poly_modulus_degree}, "
        f"primes={list(params.coeff_mod_bit_sizes)}, scale=2^{params.global_scale_bits}, slots={params.slots}"
    )
    print(f"hospital secret     {paths.secret_context}  (mode 0600; give to hospitals only, never to an auditor)")
    print(f"aggregator context  {public}  (no secret key)")
    print(f"fingerprint         {paths.fingerprint_hex}  ({public.with_name(paths.fingerprint.name)})")
    return 0
