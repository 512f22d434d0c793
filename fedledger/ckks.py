"""CKKS encryption of model updates: parameters, key ceremony, packing, validation, sum.

One place for the client (encrypt/decrypt), the server (validate/sum) and the
auditor (re-sum). The byte format is public; see docs/ENCRYPTION.md.

Design in one paragraph: hospitals share one CKKS secret key per study and
encrypt ``weight * update`` with SEAL's *symmetric, seeded* encryption (the
second polynomial is replaced by a 64-byte PRNG seed, halving the bytes). The
aggregator holds a context without any key (no secret key, no public key, no
relinearisation or Galois keys) and can only parse and add ciphertexts. The
modulus chain has one data prime (plus the special prime SEAL needs to build a
context with key switching), because summing needs no rescaling.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from fedledger.hashing import sha256, to_hex

CKKSVector = ts.CKKSVector

# HomomorphicEncryption.org standard, 128-bit classical security, ternary secret:
# the largest total coefficient-modulus bit count allowed for each ring degree.
HE_STANDARD_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}

SEAL_MAGIC = 0xA15E
COMPR_NONE, COMPR_ZLIB, COMPR_ZSTD = 0, 1, 2
ZSTD_MAGIC = 0xFD2FB528
ZSTD_BLOCK_MAX = 128 * 1024


class CiphertextError(ValueError):
    """A ciphertext (or a list of them) is malformed, oversized or not for this study."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SecurityError(ValueError):
    """Parameters outside the 128-bit HomomorphicEncryption.org bound."""


class KeyHandlingError(ValueError):
    """A context holds (or lacks) a key it must not (or must) hold."""


# --------------------------------------------------------------------------- parameters


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

    def __post_init__(self):
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def total_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    @property
    def data_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def n_data_primes(self) -> int:
        return len(self.coeff_mod_bit_sizes) - 1

    @property
    def scale(self) -> float:
        return float(2**self.global_scale_bits)

    @property
    def max_abs_sum(self) -> float:
        """Largest |sum of weight*value| a slot can hold (one bit of margin kept)."""
        return float(2 ** (self.data_bits - self.global_scale_bits - 2))

    def check(self) -> "CKKSParams":
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
    get = (lambda k, d=None: cfg.get(k, d)) if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
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


def n_ciphertexts(n_params: int, params: "CKKSParams | ts.Context") -> int:
    """How many ciphertexts an update of n_params values packs into (slots = N/2 each)."""
    slots = params.slots if isinstance(params, CKKSParams) else _layout(params).slots
    if n_params <= 0:
        raise ValueError("n_params must be positive")
    return -(-int(n_params) // slots)


def chunk_sizes(n_params: int, slots: int) -> list[int]:
    k = -(-int(n_params) // slots)
    return [slots] * (k - 1) + [int(n_params) - slots * (k - 1)]


# --------------------------------------------------------------------------- contexts and keys


@dataclass(frozen=True)
class KeyPaths:
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
    return ctx.serialize(save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False)


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
    data = pub.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False)
    if _proto_fields(data).get(3):
        raise KeyHandlingError("refusing to write an aggregator context that carries private fields")
    return data


def context_fingerprint(public_ctx_bytes: bytes) -> bytes:
    """SHA-256 of the serialized aggregator context (bytes32)."""
    return sha256(bytes(public_ctx_bytes))


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_keys(out_dir: str | os.PathLike, params: CKKSParams | None = None, *, overwrite: bool = False) -> KeyPaths:
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
    _write_private(secret, secret_bytes, overwrite=True)
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


def load_secret_context(path: str | os.PathLike) -> ts.Context:
    """A hospital's context: must hold the secret key; parameters re-checked."""
    data = Path(path).read_bytes()
    ctx = ts.context_from(data, n_threads=1)
    if not ctx.is_private():
        raise KeyHandlingError(f"{path} holds no secret key; hospitals need the study's secret context")
    context_params(ctx)
    return ctx


def load_aggregator_context(path: str | os.PathLike, *, fingerprint: bytes | str | None = None) -> ts.Context:
    """The aggregator's context. REFUSES one that holds a secret key (or any private field)."""
    data = Path(path).read_bytes()
    return aggregator_context_from_bytes(data, fingerprint=fingerprint, origin=str(path))


def aggregator_context_from_bytes(
    data: bytes, *, fingerprint: bytes | str | None = None, origin: str = "<bytes>"
) -> ts.Context:
    if _proto_fields(data).get(3):
        raise KeyHandlingError(
            f"{origin} carries a private section (secret key); the aggregator must never "
            "hold the study's secret key. Give it the aggregator context, not the hospitals'."
        )
    ctx = ts.context_from(data, n_threads=1)
    if ctx.is_private() or ctx.has_secret_key():
        raise KeyHandlingError(f"{origin} holds a secret key; refusing to load it as the aggregator context")
    if fingerprint is not None:
        want = fingerprint if isinstance(fingerprint, bytes) else bytes.fromhex(fingerprint.removeprefix("0x"))
        if context_fingerprint(data) != want:
            raise KeyHandlingError(
                f"{origin}: context fingerprint {to_hex(context_fingerprint(data))} does not "
                f"match the expected {to_hex(want)}"
            )
    context_params(ctx)
    return ctx


# --------------------------------------------------------------------------- byte formats


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= end or pos - start >= 10:
            raise CiphertextError("truncated or overlong varint in the protobuf wrapper")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if pos - start > 1 and b == 0:
                raise CiphertextError("non-minimal varint in the protobuf wrapper")
            return result, pos


def _proto_fields(data: bytes) -> dict[int, list[Any]]:
    """Tiny protobuf reader (top level only) for context bytes; never used on untrusted ciphertexts."""
    out: dict[int, list[Any]] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            key, pos = _read_varint(data, pos, end)
            num, wt = key >> 3, key & 7
            if wt == 0:
                val, pos = _read_varint(data, pos, end)
            elif wt == 1:
                val, pos = data[pos : pos + 8], pos + 8
            elif wt == 2:
                ln, pos = _read_varint(data, pos, end)
                val, pos = data[pos : pos + ln], pos + ln
            elif wt == 5:
                val, pos = data[pos : pos + 4], pos + 4
            else:
                raise CiphertextError("bad wire type")
            out.setdefault(num, []).append(val)
    except CiphertextError as e:
        raise KeyHandlingError(f"context bytes are not a TenSEAL context: {e}") from None
    return out


def wrap_seal_ciphertext(seal_bytes: bytes, size: int, scale: float) -> bytes:
    """TenSEAL CKKSVectorProto with one ciphertext: {1: packed [size], 2: seal_bytes, 3: double scale}."""
    sz = _varint(size)
    return (
        b"\x0a"
        + _varint(len(sz))
        + sz
        + b"\x12"
        + _varint(len(seal_bytes))
        + seal_bytes
        + b"\x19"
        + struct.pack("<d", scale)
    )


@dataclass(frozen=True)
class _Layout:
    n: int
    n_primes: int  # data primes in a fresh ciphertext
    scale: float
    parms_id: bytes  # 32 bytes, little-endian u64 x4
    seal_version: tuple[int, int]

    @property
    def slots(self) -> int:
        return self.n // 2

    @property
    def poly_bytes(self) -> int:
        return self.n * self.n_primes * 8

    @property
    def max_members(self) -> int:
        # metadata (73) + DynArray header (24) + 2 polynomials + PRNG info (81), rounded up
        return 73 + 24 + 2 * self.poly_bytes + 81 + 64

    @property
    def max_blob_bytes(self) -> int:
        # wrapper + SEAL header + zstd framing of incompressible data + members
        return 64 + 16 + 32 + 3 * (self.max_members // ZSTD_BLOCK_MAX + 2) + self.max_members


def _layout(ctx: ts.Context) -> _Layout:
    cached = getattr(ctx, "_fedledger_layout", None)
    if cached is not None:
        return cached
    sc = ctx.seal_context().data
    first = sc.first_context_data()
    parms = first.parms()
    pid = struct.pack("<4Q", *first.parms_id())
    hdr = sealapi.Serialization.SEALHeader()
    lay = _Layout(
        parms.poly_modulus_degree(),
        len(parms.coeff_modulus()),
        float(ctx.global_scale),
        pid,
        (hdr.version_major, hdr.version_minor),
    )
    if not lay.scale or lay.scale <= 0:
        raise CiphertextError("the context has no global scale set")
    try:
        ctx._fedledger_layout = lay
    except AttributeError:
        pass
    return lay


def _check_seal_header(buf: bytes, pos: int, end: int, lay: _Layout, modes: tuple[int, ...], what: str) -> int:
    """Check a 16-byte SEALHeader at pos; return the declared object end."""
    if end - pos < 16:
        raise CiphertextError(f"{what}: truncated SEAL header")
    magic, hsize, vmaj, vmin, compr, reserved, size = struct.unpack_from("<HBBBBHQ", buf, pos)
    if magic != SEAL_MAGIC:
        raise CiphertextError(f"{what}: bad SEAL magic 0x{magic:04X} (want 0xA15E)")
    if hsize != 16:
        raise CiphertextError(f"{what}: SEAL header size {hsize} (want 16)")
    if (vmaj, vmin) != lay.seal_version:
        raise CiphertextError(
            f"{what}: SEAL version {vmaj}.{vmin} (this study uses {lay.seal_version[0]}.{lay.seal_version[1]})"
        )
    if compr not in modes:
        raise CiphertextError(f"{what}: compression mode {compr} not accepted (allowed {list(modes)}: 0=none, 2=zstd)")
    if reserved != 0:
        raise CiphertextError(f"{what}: reserved SEAL header bytes are not zero")
    if size != end - pos:
        raise CiphertextError(f"{what}: SEAL header declares {size} bytes but {end - pos} are present")
    return pos + size


def _zstd_frame(buf: bytes, pos: int, end: int, bound: int, what: str) -> bytes | None:
    """Walk a single zstd frame without decompressing it.

    Rejects dictionaries, skippable or trailing frames, and any frame whose
    decompressed size could exceed ``bound``. Returns the concatenated content
    when every block is raw (so the caller can check SEAL's member layout),
    else None.
    """
    if end - pos < 6 or struct.unpack_from("<I", buf, pos)[0] != ZSTD_MAGIC:
        raise CiphertextError(f"{what}: payload is not a zstd frame")
    pos += 4
    fhd = buf[pos]
    pos += 1
    fcs_flag, single, reserved_bit, checksum, dict_flag = (
        fhd >> 6,
        (fhd >> 5) & 1,
        (fhd >> 3) & 1,
        (fhd >> 2) & 1,
        fhd & 3,
    )
    if reserved_bit or dict_flag or (fhd >> 4) & 1:  # the "unused" bit too: SEAL never sets it
        raise CiphertextError(f"{what}: zstd frame uses a dictionary or reserved bits")
    window = None
    if not single:
        wd = buf[pos]
        pos += 1
        exp, mant = wd >> 3, wd & 7
        base = 1 << (10 + exp)
        window = base + (base // 8) * mant
    fcs_len = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[fcs_flag]
    if end - pos < fcs_len:
        raise CiphertextError(f"{what}: truncated zstd frame header")
    fcs = None
    if fcs_len:
        fcs = int.from_bytes(buf[pos : pos + fcs_len], "little") + (256 if fcs_len == 2 else 0)
        pos += fcs_len
        if fcs > bound:
            raise CiphertextError(f"{what}: zstd content size {fcs} exceeds the {bound}-byte bound")
    if window is not None and window > 8 * bound + (1 << 20):
        raise CiphertextError(f"{what}: zstd window of {window} bytes is implausible")
    total = 0
    raw_parts: list[bytes] | None = []
    block_max = ZSTD_BLOCK_MAX if window is None else min(ZSTD_BLOCK_MAX, window)
    while True:
        if end - pos < 3:
            raise CiphertextError(f"{what}: truncated zstd block header")
        bh = int.from_bytes(buf[pos : pos + 3], "little")
        pos += 3
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3:
            raise CiphertextError(f"{what}: reserved zstd block type")
        if btype == 0:  # raw
            if end - pos < bsize:
                raise CiphertextError(f"{what}: zstd raw block runs past the end")
            if raw_parts is not None:
                raw_parts.append(buf[pos : pos + bsize])
            pos += bsize
            total += bsize
        elif btype == 1:  # RLE: one byte repeated bsize times
            pos += 1
            total += bsize
            raw_parts = None
        else:  # compressed: regenerates at most block_max bytes
            if end - pos < bsize:
                raise CiphertextError(f"{what}: zstd compressed block runs past the end")
            pos += bsize
            total += block_max
            raw_parts = None
        if total > bound and (fcs is None or btype != 2):
            raise CiphertextError(f"{what}: zstd data may decompress past the {bound}-byte bound")
        if pos > end:
            raise CiphertextError(f"{what}: zstd frame runs past the end")
        if last:
            break
    if checksum:
        pos += 4
    if pos != end:
        raise CiphertextError(
            f"{what}: {end - pos} stray bytes after the zstd frame"
            if pos < end
            else f"{what}: zstd checksum runs past the end"
        )
    if raw_parts is None:
        return None
    content = b"".join(raw_parts)
    if fcs is not None and fcs != len(content):
        raise CiphertextError(f"{what}: zstd content size {fcs} does not match the {len(content)} bytes present")
    return content


def _check_members(m: bytes, lay: _Layout, what: str) -> bool:
    """Check SEAL Ciphertext::save_members layout exactly; return True when seeded."""
    if len(m) < 73 + 24:
        raise CiphertextError(f"{what}: ciphertext members truncated")
    if m[:32] != lay.parms_id:
        raise CiphertextError(
            f"{what}: parms_id does not match this study's parameters (different ring degree, primes or modulus level)"
        )
    ntt, size, n, nprimes, scale, corr = struct.unpack_from("<BQQQdQ", m, 32)
    if ntt != 1:
        raise CiphertextError(f"{what}: is_ntt_form byte is {ntt} (CKKS ciphertexts are stored in NTT form: 1)")
    if size != 2:
        raise CiphertextError(f"{what}: ciphertext has {size} polynomials (want 2)")
    if n != lay.n or nprimes != lay.n_primes:
        raise CiphertextError(f"{what}: ring degree {n} with {nprimes} primes (study: {lay.n}, {lay.n_primes})")
    if scale != lay.scale:
        raise CiphertextError(f"{what}: scale {scale!r} (study: {lay.scale!r})")
    if corr != 1:
        raise CiphertextError(f"{what}: correction factor {corr} (want 1)")
    pos = 73
    declared = struct.unpack_from("<Q", m, pos + 8)[0]
    if declared > len(m) - pos:
        raise CiphertextError(f"{what}: coefficient array declares {declared} bytes, only {len(m) - pos} present")
    dyn_end = _check_seal_header(m, pos, pos + declared, lay, (COMPR_NONE,), what + " (coefficient array)")
    count = struct.unpack_from("<Q", m, pos + 16)[0]
    poly = lay.n * lay.n_primes
    if count not in (poly, 2 * poly) or dyn_end - pos != 24 + 8 * count:
        raise CiphertextError(f"{what}: coefficient array of {count} words (want {poly} seeded or {2 * poly})")
    seeded = count == poly
    if not seeded:
        if dyn_end != len(m):
            raise CiphertextError(f"{what}: {len(m) - dyn_end} stray bytes after the coefficients")
        return False
    info_end = _check_seal_header(m, dyn_end, len(m), lay, (COMPR_NONE,), what + " (PRNG seed)")
    if info_end - dyn_end != 16 + 1 + 64 or m[dyn_end + 16] not in (1, 2):
        raise CiphertextError(f"{what}: malformed PRNG seed record")
    return True


def _preparse(blob: Any, lay: _Layout, index: int, max_blob: int) -> int:
    """Structural checks before SEAL sees the bytes. Returns the declared vector size."""
    what = f"ciphertext {index}"
    if not isinstance(blob, bytes):
        raise CiphertextError(f"{what} is {type(blob).__name__}, not bytes")
    if len(blob) > max_blob:
        raise CiphertextError(f"{what} is {len(blob)} bytes, over the {max_blob}-byte limit for one ciphertext")
    end = len(blob)
    if end < 40 or blob[0] != 0x0A:
        raise CiphertextError(f"{what}: not a TenSEAL CKKS vector (wrapper field 1 missing)")
    ln, pos = _read_varint(blob, 1, end)
    size, p2 = _read_varint(blob, pos, end)
    if p2 - pos != ln:
        raise CiphertextError(f"{what}: wrapper must carry exactly one vector size")
    pos = p2
    if not 1 <= size <= lay.slots:
        raise CiphertextError(f"{what}: vector size {size} outside 1..{lay.slots}")
    if pos >= end or blob[pos] != 0x12:
        raise CiphertextError(f"{what}: wrapper field 2 (SEAL ciphertext) missing")
    ln, pos = _read_varint(blob, pos + 1, end)
    seal_start, seal_end = pos, pos + ln
    if seal_end + 9 != end or blob[seal_end] != 0x19:
        raise CiphertextError(f"{what}: wrapper must end with exactly one scale field after one ciphertext")
    scale = struct.unpack_from("<d", blob, seal_end + 1)[0]
    if scale != lay.scale:
        raise CiphertextError(f"{what}: scale {scale!r} differs from the study's {lay.scale!r}")
    _check_seal_header(blob, seal_start, seal_end, lay, (COMPR_NONE, COMPR_ZSTD), what)
    body = seal_start + 16
    if blob[seal_start + 5] == COMPR_ZSTD:
        members = _zstd_frame(blob, body, seal_end, lay.max_members, what)
    else:
        members = blob[body:seal_end]
    if members is not None:
        _check_members(members, lay, what)
    return size


def _attr(obj: Any, name: str) -> Any:
    v = getattr(obj, name)
    return v() if callable(v) else v


def _post_check(vec: Any, lay: _Layout, size: int, what: str) -> None:
    cts = vec.ciphertext()
    if len(cts) != 1:
        raise CiphertextError(f"{what}: holds {len(cts)} ciphertexts (want 1)")
    ct = cts[0]
    if (
        struct.pack("<4Q", *ct.parms_id()) != lay.parms_id
        or ct.size() != 2
        or not ct.is_ntt_form()
        or ct.poly_modulus_degree() != lay.n
        or ct.coeff_modulus_size() != lay.n_primes
        or _attr(ct, "scale") != lay.scale
    ):
        raise CiphertextError(f"{what}: parsed ciphertext does not match this study's parameters")
    if vec.size() != size:
        raise CiphertextError(f"{what}: parsed size {vec.size()} differs from declared {size}")


def _parse(ctx: ts.Context, blob: bytes, lay: _Layout, index: int, max_blob: int, expected_size: int | None = None):
    size = _preparse(blob, lay, index, max_blob)
    if expected_size is not None and size != expected_size:
        raise CiphertextError(f"ciphertext {index}: holds {size} values, expected {expected_size}")
    try:
        vec = ts._ts_cpp.CKKSVector(ctx.data, blob)
    except Exception as e:  # SEAL/TenSEAL parse errors
        raise CiphertextError(f"ciphertext {index}: does not parse under the study context: {e}") from None
    _post_check(vec, lay, size, f"ciphertext {index}")
    return vec


# --------------------------------------------------------------------------- validate and sum


def validate_ciphertexts(
    ctx: ts.Context, blobs: Sequence[bytes], expected_count: int, max_bytes: int, *, n_params: int | None = None
) -> list[CKKSVector]:
    """Validate one hospital's update before aggregating; return the parsed vectors.

    Order of checks: container type, count, element types, total size against
    ``max_bytes`` (before parsing anything), then per ciphertext the wrapper,
    SEAL header, zstd framing and member layout (our own parser), then SEAL's
    parse under ``ctx`` and a final parameter check. ``n_params`` pins the exact
    vector sizes (otherwise: all full but the last). Nothing is unpickled.
    A ciphertext under a different secret key with the same parameters cannot be
    told apart here (it decrypts to noise); authenticity comes from the signed
    commitment over ``ciphertexts_hash``.
    """
    lay = _layout(ctx)
    if isinstance(blobs, (bytes, bytearray, str)) or not isinstance(blobs, Sequence):
        raise CiphertextError(f"an update must be a list of bytes, got {type(blobs).__name__}")
    if len(blobs) != expected_count:
        raise CiphertextError(f"update has {len(blobs)} ciphertexts, expected {expected_count}")
    for i, b in enumerate(blobs):
        if not isinstance(b, bytes):
            raise CiphertextError(f"ciphertext {i} is {type(b).__name__}, not bytes")
    total = sum(len(b) for b in blobs)
    if total > max_bytes:
        raise CiphertextError(f"update is {total} bytes, over the {max_bytes}-byte limit")
    sizes: list[int | None]
    if n_params is not None:
        sizes = list(chunk_sizes(n_params, lay.slots))
        if len(sizes) != expected_count:
            raise CiphertextError(
                f"{n_params} parameters need {len(sizes)} ciphertexts, expected_count is {expected_count}"
            )
    else:
        sizes = [lay.slots] * (expected_count - 1) + [None]
    out = []
    for i, b in enumerate(blobs):
        vec = _parse(ctx, b, lay, i, lay.max_blob_bytes, sizes[i])
        out.append(_wrap(vec))
    return out


def _wrap(vec) -> CKKSVector:
    return ts.CKKSVector._wrap(vec)


def sum_vectors(vectors_per_hospital: Sequence[Sequence[CKKSVector]]) -> list[bytes]:
    """Sum already-validated vectors (from validate_ciphertexts) and serialize the aggregate."""
    if not vectors_per_hospital:
        raise CiphertextError("nothing to sum")
    k = len(vectors_per_hospital[0])
    if any(len(v) != k for v in vectors_per_hospital):
        raise CiphertextError("hospitals sent different numbers of ciphertexts")
    out = []
    for i in range(k):
        first = vectors_per_hospital[0][i].data
        if len(vectors_per_hospital) == 1:
            out.append(first.serialize())
            continue
        # TenSEAL's CKKSVector.copy() crashes on deserialized vectors; add() returns a fresh object.
        acc = first.add(vectors_per_hospital[1][i].data)
        for h in vectors_per_hospital[2:]:
            acc.add_(h[i].data)
        out.append(acc.serialize())
    return out


def sum_ciphertexts(ctx: ts.Context, blobs_per_hospital: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Add the hospitals' ciphertexts slot-wise; return the serialized aggregate, one blob per position.

    Streams position by position (one accumulator in memory). Every blob gets
    the structural pre-parse, so hostile bytes never reach SEAL. Deterministic:
    the auditor's re-sum of the same blobs is byte-identical.
    """
    lay = _layout(ctx)
    if not blobs_per_hospital:
        raise CiphertextError("nothing to sum")
    k = len(blobs_per_hospital[0])
    if k == 0 or any(len(h) != k for h in blobs_per_hospital):
        raise CiphertextError("hospitals sent different (or zero) numbers of ciphertexts")
    out = []
    for i in range(k):
        acc = None
        size0 = None
        for _h, blobs in enumerate(blobs_per_hospital):
            vec = _parse(ctx, blobs[i], lay, i, lay.max_blob_bytes, size0)
            size0 = vec.size()
            if acc is None:
                acc = vec
            else:
                acc.add_(vec)
        out.append(acc.serialize())
    return out


# --------------------------------------------------------------------------- hospital side


class _SeededEncryptor:
    """SEAL symmetric encryption with the seed kept (TenSEAL's own path drops it)."""

    def __init__(self, ctx: ts.Context):
        if not ctx.is_private():
            raise KeyHandlingError("encrypting needs the study's secret context")
        sc = ctx.seal_context().data
        self.encoder = sealapi.CKKSEncoder(sc)
        self.encryptor = sealapi.Encryptor(sc, ctx.secret_key().data)
        self.scale = float(ctx.global_scale)
        self._tmpdir = None
        try:
            self.fd = os.memfd_create("fedledger-ct")
            self.path = f"/proc/self/fd/{self.fd}"
        except (AttributeError, OSError):
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fedledger-ct-")
            self.path = os.path.join(self._tmpdir.name, "ct")
            self.fd = None

    def encrypt(self, chunk: np.ndarray) -> bytes:
        pt = sealapi.Plaintext()
        self.encoder.encode(chunk.tolist(), self.scale, pt)
        self.encryptor.encrypt_symmetric(pt).save(self.path)
        if self.fd is not None:
            return os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        with open(self.path, "rb") as f:
            return f.read()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


def encrypt_update(ctx: ts.Context, flat: np.ndarray, weight: float) -> list[bytes]:
    """Encrypt ``weight * flat`` (flat float vector, caller's fixed order) into as few ciphertexts as possible."""
    x = np.asarray(flat, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("empty update")
    w = float(weight)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    y = x * w
    if not np.all(np.isfinite(y)):
        raise ValueError("update contains NaN or infinite values")
    lay = _layout(ctx)
    data_bits = sum(m.bit_count() for m in ctx.seal_context().data.first_context_data().parms().coeff_modulus())
    limit = 2.0 ** (data_bits - 2) / lay.scale
    peak = float(np.abs(y).max())
    if peak >= limit:
        raise ValueError(
            f"weighted update magnitude {peak:.3g} would overflow the {data_bits}-bit modulus at "
            f"scale 2^{int(math.log2(lay.scale))} (limit {limit:.3g}); use a wider preset"
        )
    enc = _SeededEncryptor(ctx)
    try:
        out = []
        for i, size in enumerate(chunk_sizes(x.size, lay.slots)):
            chunk = y[i * lay.slots : i * lay.slots + size]
            out.append(wrap_seal_ciphertext(enc.encrypt(chunk), size, lay.scale))
        return out
    finally:
        enc.close()


def decrypt_update(
    ctx: ts.Context, blobs: Sequence[bytes], n_params: int, total_weight: float | None = None
) -> np.ndarray:
    """Decrypt an aggregate (or one update) to a flat float64 vector; divide by total_weight if given."""
    if not ctx.is_private():
        raise KeyHandlingError("decrypting needs the study's secret context")
    lay = _layout(ctx)
    sizes = chunk_sizes(n_params, lay.slots)
    if isinstance(blobs, (bytes, bytearray)) or len(blobs) != len(sizes):
        raise CiphertextError(
            f"{n_params} parameters need {len(sizes)} ciphertexts, got "
            f"{len(blobs) if not isinstance(blobs, (bytes, bytearray)) else 'bytes'}"
        )
    out = np.empty(n_params, dtype=np.float64)
    pos = 0
    for i, (b, size) in enumerate(zip(blobs, sizes)):
        vec = _parse(ctx, b, lay, i, lay.max_blob_bytes, size)
        out[pos : pos + size] = vec.decrypt()
        pos += size
    if total_weight is not None:
        if not total_weight > 0:
            raise ValueError("total_weight must be positive")
        out /= float(total_weight)
    return out
