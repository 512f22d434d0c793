"""`fedledger keys init <dir> [--preset NAME]`: the study's CKKS key ceremony."""

from __future__ import annotations

import argparse
import sys

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
    print(
        f"preset              {params.preset}: N={params.poly_modulus_degree}, "
        f"primes={list(params.coeff_mod_bit_sizes)}, scale=2^{params.global_scale_bits}, slots={params.slots}"
    )
    print(f"hospital secret     {paths.secret_context}  (mode 0600; give to hospitals only)")
    print(f"aggregator context  {paths.aggregator_context}  (no secret key)")
    print(f"fingerprint         {paths.fingerprint_hex}  ({paths.fingerprint})")
    return 0
