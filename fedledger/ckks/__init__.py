"""CKKS encryption of model updates: one package for the hospitals, the aggregator and the auditor.

Design in one paragraph: hospitals share one CKKS secret key per study and
encrypt ``weight * update`` with SEAL's *symmetric, seeded* encryption (the
second polynomial is replaced by a 64-byte PRNG seed, halving the bytes). The
aggregator holds a context without any key (no secret key, no public key, no
relinearisation or Galois keys) and can only parse and add ciphertexts. The
modulus chain has one data prime (plus the special prime SEAL needs to build a
context with key switching), because summing needs no rescaling.

Modules: ``params`` (parameters, presets, the 128-bit check, chunking),
``keys`` (key ceremony, context files, fingerprint), ``format`` (the public
byte format and its parser), ``aggregate`` (validate and sum), ``encrypt``
(the hospital's encrypt and decrypt), ``release`` (decryptions for
release, rounded to a grid against key recovery). The byte format is public; see
docs/ENCRYPTION.md.
"""

from __future__ import annotations

from fedledger.ckks.aggregate import sum_ciphertexts, sum_vectors, validate_ciphertexts
from fedledger.ckks.bounds import WRAP_MARGIN, WrapCheck, check_wrap, wrap_point
from fedledger.ckks.encrypt import decrypt_aggregate, decrypt_update, encrypt_update
from fedledger.ckks.errors import CiphertextError, KeyHandlingError, SecurityError
from fedledger.ckks.format import wrap_seal_ciphertext
from fedledger.ckks.keys import (
    AGGREGATOR_NAME,
    KeyPaths,
    aggregator_context_from_bytes,
    context_fingerprint,
    context_params,
    create_keys,
    load_aggregator_context,
    load_secret_context,
    serialize_aggregator_context,
    serialize_secret_context,
)
from fedledger.ckks.params import (
    PRESETS,
    CKKSParams,
    check_security,
    chunk_sizes,
    n_ciphertexts,
    params_from_config,
    preset,
)
from fedledger.ckks.release import RELEASE_GRID_BITS, decrypt_for_release, round_for_release

__all__ = [
    "AGGREGATOR_NAME",
    "PRESETS",
    "RELEASE_GRID_BITS",
    "WRAP_MARGIN",
    "CKKSParams",
    "CiphertextError",
    "KeyHandlingError",
    "KeyPaths",
    "SecurityError",
    "WrapCheck",
    "aggregator_context_from_bytes",
    "check_security",
    "check_wrap",
    "chunk_sizes",
    "context_fingerprint",
    "context_params",
    "create_keys",
    "decrypt_aggregate",
    "decrypt_for_release",
    "decrypt_update",
    "encrypt_update",
    "load_aggregator_context",
    "load_secret_context",
    "n_ciphertexts",
    "params_from_config",
    "preset",
    "round_for_release",
    "serialize_aggregator_context",
    "serialize_secret_context",
    "sum_ciphertexts",
    "sum_vectors",
    "validate_ciphertexts",
    "wrap_point",
    "wrap_seal_ciphertext",
]
