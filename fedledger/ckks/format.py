"""The ciphertext byte format: TenSEAL's wrapper, SEAL's header, zstd framing, member layout.

Every blob is walked by this parser before SEAL sees a byte of it, so hostile
input is refused here (CiphertextError) and never reaches C++. The format is
public; see docs/ENCRYPTION.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import tenseal as ts
import tenseal.sealapi as sealapi

from fedledger.ckks.errors import CiphertextError, KeyHandlingError

SEAL_MAGIC = 0xA15E
COMPR_NONE, COMPR_ZLIB, COMPR_ZSTD = 0, 1, 2
ZSTD_MAGIC = 0xFD2FB528
ZSTD_BLOCK_MAX = 128 * 1024


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


def proto_fields(data: bytes) -> dict[int, list[Any]]:
    """Tiny protobuf reader (top level only) for context bytes; never used on untrusted ciphertexts."""
    out: dict[int, list[Any]] = {}
    pos, end = 0, len(data)
    val: int | bytes
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
class Layout:
    """What a fresh ciphertext of the study must look like, byte for byte."""

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


def layout(ctx: ts.Context) -> Layout:
    """The study's ciphertext layout, read once from the context and cached on it."""
    cached: Layout | None = getattr(ctx, "_fedledger_layout", None)
    if cached is not None:
        return cached
    sc = ctx.seal_context().data
    first = sc.first_context_data()
    parms = first.parms()
    pid = struct.pack("<4Q", *first.parms_id())
    hdr = sealapi.Serialization.SEALHeader()
    lay = Layout(
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


def _check_seal_header(buf: bytes, pos: int, end: int, lay: Layout, modes: tuple[int, ...], what: str) -> int:
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
    return pos + int(size)


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


def _check_members(m: bytes, lay: Layout, what: str) -> bool:
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


def _preparse(blob: Any, lay: Layout, index: int, max_blob: int) -> int:
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


def _post_check(vec: Any, lay: Layout, size: int, what: str) -> None:
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


def parse_vector(
    ctx: ts.Context, blob: bytes, lay: Layout, index: int, max_blob: int, expected_size: int | None = None
) -> Any:
    """Pre-parse, let SEAL parse, check again; return TenSEAL's C++ vector (no Python wrapper)."""
    size = _preparse(blob, lay, index, max_blob)
    if expected_size is not None and size != expected_size:
        raise CiphertextError(f"ciphertext {index}: holds {size} values, expected {expected_size}")
    try:
        vec = ts._ts_cpp.CKKSVector(ctx.data, blob)
    except Exception as e:  # SEAL/TenSEAL parse errors
        raise CiphertextError(f"ciphertext {index}: does not parse under the study context: {e}") from None
    _post_check(vec, lay, size, f"ciphertext {index}")
    return vec
