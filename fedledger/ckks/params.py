"""CKKS parameters of a study: presets, the 128-bit security check, and how an update is chunked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tenseal as ts

from fedledger.ckks.errors import SecurityError
from fedledger.ckks.format import Layout, layout

# HomomorphicEncryption.org standard, 128-bit classical security, ternary secret:
# the largest total coefficient-modulus bit count allowed for each ring degree.
HE_STANDARD_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameters of a study.

    ``coeff_mod_bit_sizes`` lists the data primes then the special prime (last);
    ciphertexts live under the data primes only. One data prime suffices for
    summing. ``global_scale_bits`` is log2 of the encoding scale.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40)
    global_scale_bits: int = 36
    max_update_bytes: int = 256 * 1024 * 1024
    enabled: bool = True
    preset: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def data_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def scale(self) -> float:
        return float(2**self.global_scale_bits)

    def check(self) -> CKKSParams:
        """Refuse anything not provably within 128-bit security or unusable; return self."""
        check_security(self.poly_modulus_degree, self.coeff_mod_bit_sizes)
        if len(self.coeff_mod_bit_sizes) < 2:
            raise SecurityError(
                "coeff_mod_bit_sizes needs at least one data prime and the special prime, "
                f"got {list(self.coeff_mod_bit_sizes)}"
            )
        for b in self.coeff_mod_bit_sizes:
            if not 20 <= b <= 60:
                raise SecurityError(f"each prime must have 20..60 bits (SEAL limit), got {b}")
        if not 20 <= self.global_scale_bits <= self.data_bits - 10:
            raise SecurityError(
                f"global_scale_bits={self.global_scale_bits} leaves no headroom under the "
                f"{self.data_bits}-bit data modulus; use 20..{self.data_bits - 10}"
            )
        if self.max_update_bytes <= 0:
            raise SecurityError("max_update_bytes must be positive")
        return self


def check_security(poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int]) -> None:
    """Raise SecurityError unless the total modulus is within the 128-bit bound for the ring degree."""
    n = int(poly_modulus_degree)
    total = sum(int(b) for b in coeff_mod_bit_sizes)
    if n not in HE_STANDARD_128:
        raise SecurityError(
            f"poly_modulus_degree {n} is not one of {sorted(HE_STANDARD_128)}; "
            "no 128-bit parameter set is defined for it here"
        )
    bound = HE_STANDARD_128[n]
    if total > bound:
        raise SecurityError(
            f"coefficient modulus of {total} bits ({list(coeff_mod_bit_sizes)}) exceeds the "
            f"128-bit security bound of {bound} bits for poly_modulus_degree {n} "
            "(HomomorphicEncryption.org standard)"
        )


# Presets: the same values as conf/encryption/*.yaml (a test keeps them equal).
PRESETS: dict[str, CKKSParams] = {
    "ckks": CKKSParams(8192, (60, 40), 36, 256 * 1024 * 1024, True, "ckks"),
    "ckks_wide": CKKSParams(8192, (60, 40), 30, 256 * 1024 * 1024, True, "ckks_wide"),
    "ckks_n4096": CKKSParams(4096, (60, 40), 36, 256 * 1024 * 1024, True, "ckks_n4096"),
    "ckks_n16384": CKKSParams(16384, (60, 40), 36, 256 * 1024 * 1024, True, "ckks_n16384"),
}


def preset(name: str) -> CKKSParams:
    if name not in PRESETS:
        raise KeyError(f"unknown CKKS preset {name!r}; known: {sorted(PRESETS)} (or 'off')")
    return PRESETS[name].check()


def params_from_config(cfg: Mapping[str, Any] | Any) -> CKKSParams:
    """Build checked parameters from a Hydra ``encryption`` node (dict or DictConfig)."""
    get: Callable[..., Any] = (
        (lambda k, d=None: cfg.get(k, d)) if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
    )
    if not get("enabled", True):
        raise ValueError("encryption is disabled in this config (preset 'off'); no CKKS parameters")
    if get("symmetric", True) is False:
        raise ValueError("only symmetric (seeded) CKKS encryption is supported; set symmetric: true")
    bits = get("coeff_mod_bit_sizes") or PRESETS["ckks"].coeff_mod_bit_sizes
    return CKKSParams(
        poly_modulus_degree=int(get("poly_modulus_degree", 8192)),
        coeff_mod_bit_sizes=tuple(int(b) for b in bits),
        global_scale_bits=int(get("global_scale_bits", 36)),
        max_update_bytes=int(get("max_update_bytes", 256 * 1024 * 1024)),
        enabled=True,
        preset=str(get("preset", "custom") or "custom"),
    ).check()


def n_ciphertexts(n_params: int, params: CKKSParams | ts.Context) -> int:
    """How many ciphertexts an update of n_params values packs into (slots = N/2 each)."""
    slots = params.slots if isinstance(params, CKKSParams) else layout(params).slots
    if n_params <= 0:
        raise ValueError("n_params must be positive")
    return -(-int(n_params) // slots)


class UpdateTooLargeError(ValueError):
    """A model whose encrypted update would not fit the study's ``encryption.max_update_bytes``."""


def update_size_bound(n_params: int, params: CKKSParams) -> tuple[int, int]:
    """(ciphertexts, most bytes) of one hospital's encrypted update of ``n_params`` values.

    The byte figure is the per-ciphertext limit the aggregator holds each blob
    to (``Layout.max_blob_bytes``) times the count: an update within it is never
    refused for its size.
    """
    count = n_ciphertexts(n_params, params)
    lay = Layout(params.poly_modulus_degree, len(params.coeff_mod_bit_sizes) - 1, params.scale, bytes(32), (0, 0))
    return count, count * lay.max_blob_bytes


def check_update_size(n_params: int, params: CKKSParams) -> int:
    """Refuse, with the numbers, a model too large for the study's CKKS preset; return its ciphertext count."""
    count, size = update_size_bound(n_params, params)
    if size > params.max_update_bytes:
        raise UpdateTooLargeError(
            f"the model has {n_params} parameters: {count} ciphertexts of {params.slots} slots under CKKS preset "
            f"{params.preset!r} (poly_modulus_degree {params.poly_modulus_degree}), up to {size} bytes per update, "
            f"over encryption.max_update_bytes={params.max_update_bytes}; use a smaller model or raise "
            "encryption.max_update_bytes (every preset costs about the same bytes per parameter)"
        )
    return count


def chunk_sizes(n_params: int, slots: int) -> list[int]:
    k = -(-int(n_params) // slots)
    return [slots] * (k - 1) + [int(n_params) - slots * (k - 1)]
