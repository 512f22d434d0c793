"""The study's key ceremony: the hospitals' secret context, the aggregator's keyless one, its fingerprint.

Hospitals share one CKKS secret key per study; the aggregator gets a context
without it (parameters, scale and the public key only) and loading refuses
one that carries a private section. See docs/ENCRYPTION.md.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tenseal as ts

from fedledger.ckks.errors import KeyHandlingError, SecurityError
from fedledger.ckks.format import proto_fields
from fedledger.ckks.params import PRESETS, CKKSParams, check_security
from fedledger.files import write_secret
from fedledger.hashing import as_bytes, sha256, to_hex


@dataclass(frozen=True)
class KeyPaths:
    """Where create_keys put the study's key files."""

    directory: Path
    secret_context: Path
    aggregator_context: Path
    fingerprint: Path
    params: Path
    fingerprint_hex: str = field(default="")


SECRET_NAME = "hospital_secret.ctx"
AGGREGATOR_NAME = "aggregator_public.ctx"
FINGERPRINT_NAME = "aggregator_public.sha256"
PARAMS_NAME = "params.json"


def new_secret_context(params: CKKSParams) -> ts.Context:
    """A fresh context with a new secret key: the study's key, made once in the ceremony."""
    params.check()
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        n_threads=1,
    )
    ctx.global_scale = params.scale
    return ctx


def serialize_secret_context(ctx: ts.Context) -> bytes:
    """Secret and public key + parameters: no relinearisation or Galois keys."""
    data: bytes = ctx.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    return data


def serialize_aggregator_context(ctx: ts.Context) -> bytes:
    """Parameters, scale and the public key. make_context_public() drops the secret key.

    The public key is kept so that the fingerprint binds the study's key pair
    (without it every study with the same parameters would share one
    fingerprint); it lets its holder encrypt, which grants nothing: a forged
    update still needs a hospital's signature on its commitment.
    """
    pub = ctx.copy()
    if pub.is_private():
        pub.make_context_public(generate_galois_keys=False, generate_relin_keys=False)
    data: bytes = pub.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    if proto_fields(data).get(3):
        raise KeyHandlingError("refusing to write an aggregator context that carries private fields")
    return data


def context_fingerprint(public_ctx_bytes: bytes) -> bytes:
    """SHA-256 of the serialized aggregator context (bytes32)."""
    return sha256(bytes(public_ctx_bytes))


def create_keys(
    out_dir: str | os.PathLike[str], params: CKKSParams | None = None, *, overwrite: bool = False
) -> KeyPaths:
    """Key ceremony: secret context for hospitals (0600), aggregator context without secret key, fingerprint.

    The directory is created (or tightened) to 0700. Refuses to overwrite an
    existing secret context unless ``overwrite=True``.
    """
    params = (params or PRESETS["ckks"]).check()
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    secret, public = d / SECRET_NAME, d / AGGREGATOR_NAME
    if secret.exists() and not overwrite:
        raise FileExistsError(f"{secret} exists; refusing to replace a study key (pass overwrite=True)")
    ctx = new_secret_context(params)
    secret_bytes = serialize_secret_context(ctx)
    public_bytes = serialize_aggregator_context(ctx)
    write_secret(secret, secret_bytes)
    public.write_bytes(public_bytes)
    os.chmod(public, 0o644)
    fp_hex = to_hex(context_fingerprint(public_bytes))
    (d / FINGERPRINT_NAME).write_text(fp_hex + "\n")
    meta = asdict(params) | {
        "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
        "slots": params.slots,
        "aggregator_context_sha256": fp_hex,
        "encryption": "ckks-symmetric-seeded",
    }
    (d / PARAMS_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    return KeyPaths(d, secret, public, d / FINGERPRINT_NAME, d / PARAMS_NAME, fp_hex)


def context_params(ctx: ts.Context) -> CKKSParams:
    """Read the parameters a loaded context actually uses (and check them)."""
    sc = ctx.seal_context().data
    parms = sc.key_context_data().parms()
    bits = tuple(m.bit_count() for m in parms.coeff_modulus())
    scale = ctx.global_scale
    scale_bits = int(round(math.log2(scale))) if scale and scale > 0 else 0
    p = CKKSParams(parms.poly_modulus_degree(), bits, scale_bits, preset="loaded")
    check_security(p.poly_modulus_degree, p.coeff_mod_bit_sizes)
    if scale_bits == 0 or 2.0**scale_bits != scale:
        raise SecurityError(f"context global scale {scale!r} is not a power of two")
    return p


def load_secret_context(path: str | os.PathLike[str]) -> ts.Context:
    """A hospital's context: must hold the secret key; parameters re-checked."""
    data = Path(path).read_bytes()
    ctx = ts.context_from(data, n_threads=1)
    if not ctx.is_private():
        raise KeyHandlingError(f"{path} holds no secret key; hospitals need the study's secret context")
    context_params(ctx)
    return ctx


def load_aggregator_context(path: str | os.PathLike[str], *, fingerprint: bytes | str | None = None) -> ts.Context:
    """The aggregator's context. REFUSES one that holds a secret key (or any private field)."""
    data = Path(path).read_bytes()
    return aggregator_context_from_bytes(data, fingerprint=fingerprint, origin=str(path))


def aggregator_context_from_bytes(
    data: bytes, *, fingerprint: bytes | str | None = None, origin: str = "<bytes>"
) -> ts.Context:
    """As load_aggregator_context, for context bytes that arrived over the wire or from a store."""
    if proto_fields(data).get(3):
        raise KeyHandlingError(
            f"{origin} carries a private section (secret key); the aggregator must never "
            "hold the study's secret key. Give it the aggregator context, not the hospitals'."
        )
    ctx = ts.context_from(data, n_threads=1)
    if ctx.is_private() or ctx.has_secret_key():
        raise KeyHandlingError(f"{origin} holds a secret key; refusing to load it as the aggregator context")
    if fingerprint is not None:
        want = as_bytes(fingerprint)
        if context_fingerprint(data) != want:
            raise KeyHandlingError(
                f"{origin}: context fingerprint {to_hex(context_fingerprint(data))} does not "
                f"match the expected {to_hex(want)}"
            )
    context_params(ctx)
    return ctx
