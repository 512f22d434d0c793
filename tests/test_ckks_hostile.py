"""Hostile input for the ciphertext validator, run in a subprocess so a segfault counts as a crash.

Must-reject cases (>= 1000): random bytes, random bytes behind a valid header,
truncations, bit flips in every structural byte (wrapper, SEAL headers, zstd
framing, ciphertext metadata, PRNG record), oversized blobs and updates,
ciphertexts under other parameters (ring, primes, scale), wrong counts, wrong
vector sizes, non-bytes, and zstd "bombs". Each must raise CiphertextError.

Not rejectable by parsing, and checked separately: ciphertexts under a foreign
secret key with the study's parameters (they parse, and decrypt to garbage
under the study key) and bit flips inside coefficients or the seed (CKKS is
malleable: a flip either pushes a coefficient over the prime and is rejected,
or yields another well-formed ciphertext). Authenticity of both comes from the
hospital's signed commitment over ciphertexts_hash, not from the parser.
Nor can parsing see values: a well-formed ciphertext built with SEAL directly,
beyond the sender's headroom or wrapping modulo q, parses and sums; the
hospitals hold the decrypted aggregate to public bounds instead
(tests/test_aggregate_bounds.py, docs/ENCRYPTION.md "Bounded influence").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fedledger import ckks

ROOT = Path(__file__).resolve().parents[1]
N_PARAMS = 5000  # two ciphertexts per update

WORKER = r"""
import json, random, struct, sys
import numpy as np
from fedledger import ckks
from fedledger.ckks.format import ZSTD_MAGIC, layout
d, start = sys.argv[1], int(sys.argv[2])
mat = json.load(open(d + "/materials.json"))
pub = ckks.load_aggregator_context(d + "/keys/aggregator_public.ctx")
sec = ckks.load_secret_context(d + "/keys/hospital_secret.ctx")
H = lambda k: [bytes.fromhex(x) for x in mat[k]]
valid, foreign, plain = H("valid"), H("foreign"), np.array(mat["plain"])
wrong = {k: H(k) for k in ("wrong_n", "wrong_primes", "wrong_scale")}
struct_ranges = mat["struct_ranges"]; payload_ranges = mat["payload_ranges"]
lay = layout(pub); MAXB = 1 << 20
cases = mat["cases"]

def bomb(rng):
    hdr_prefix = valid[0][:8]
    frame = struct.pack("<I", ZSTD_MAGIC) + bytes([0x00, 0x58])  # no FCS, window 1<<21
    blocks = b"".join(struct.pack("<I", (rng.randrange(1 << 20, 1 << 21) << 3) | (1 << 1))[:3] + b"\0" for _ in range(rng.randrange(2, 40)))
    blocks += struct.pack("<I", (100 << 3) | (1 << 1) | 1)[:3] + b"\0"
    body = frame + blocks
    seal = struct.pack("<HBBBBHQ", 0xA15E, 16, *lay.seal_version, 2, 0, 16 + len(body)) + body
    return ckks.wrap_seal_ciphertext(seal, 4096, lay.scale)

def make(i, kind):
    rng = random.Random(1000003 * i + 17)
    upd = list(valid); j = rng.randrange(2); b = bytearray(valid[j]); n_params = mat["n_params"]; count = 2; maxb = MAXB
    if kind == "random":
        upd[j] = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 40, 300, rng.randrange(70000)])))
    elif kind == "random_after_header":
        cut = rng.randrange(8, 140); upd[j] = bytes(b[:cut]) + bytes(rng.getrandbits(8) for _ in range(len(b) - cut))
    elif kind == "truncated":
        upd[j] = bytes(b[:rng.randrange(len(b))])
    elif kind in ("flip_struct", "flip_payload"):
        ranges = struct_ranges[j] if kind == "flip_struct" else payload_ranges[j]
        flips = set()
        while len(flips) < rng.choice([1, 1, 2, 3]):  # distinct flips: two equal ones would cancel
            lo, hi = rng.choice(ranges); flips.add((rng.randrange(lo, hi), rng.randrange(8)))
        for p, bit in flips:
            b[p] ^= 1 << bit
        upd[j] = bytes(b)
    elif kind == "oversized_blob":
        upd[j] = bytes(b) + bytes(rng.randrange(lay.max_blob_bytes - len(b) + 1, 3 * lay.max_blob_bytes))
    elif kind == "oversized_update":
        maxb = rng.randrange(1000, sum(map(len, valid)))
    elif kind in wrong:
        upd = wrong[kind]
    elif kind == "wrong_count":
        upd = rng.choice([[], [valid[0]], valid + [valid[1]], valid * 3])
    elif kind == "wrong_size":
        n_params = rng.choice([4096, 4095, 8192, 6000, 100])
    elif kind == "non_bytes":
        bad = rng.choice([None, 1, "abc", bytearray(b), memoryview(bytes(b)), [bytes(b)], np.frombuffer(bytes(b), np.uint8), 3.5])
        if rng.random() < 0.2: upd = bad if bad is not None else b"xx"
        else: upd[j] = bad
    elif kind == "bomb":
        upd[j] = bomb(rng)
    elif kind == "foreign":
        upd = foreign
    return upd, count, maxb, n_params

for i in range(start, len(cases)):
    kind = cases[i]
    upd, count, maxb, n_params = make(i, kind)
    try:
        ckks.validate_ciphertexts(pub, upd, count, maxb, n_params=n_params)
        res = "accepted"
        if kind == "foreign":
            err = float(np.abs(ckks.decrypt_update(sec, upd, mat["n_params"]) - plain).max())
            res = "accepted_garbage" if err > 1e3 else "accepted_decrypts"
    except ckks.CiphertextError as e:
        res = "rejected"
    except Exception as e:
        res = "other_error:" + type(e).__name__ + ":" + str(e)[:100]
    print(json.dumps([i, kind, res]), flush=True)
"""

MUST_REJECT = {
    "random": 200,
    "random_after_header": 100,
    "truncated": 200,
    "flip_struct": 300,
    "oversized_blob": 30,
    "oversized_update": 20,
    "wrong_n": 30,
    "wrong_primes": 30,
    "wrong_scale": 30,
    "wrong_count": 30,
    "wrong_size": 30,
    "non_bytes": 40,
    "bomb": 20,
}
OTHER = {"flip_payload": 60, "foreign": 10}


def _ranges(blob: bytes) -> tuple[list[list[int]], list[list[int]]]:
    """Structural vs payload byte ranges of a seeded hospital blob (raw zstd block layout)."""
    seal = blob.index(b"\x5e\xa1")
    members = seal + 16 + 7 + 3  # SEAL header, zstd frame header (magic, FHD, 2-byte FCS), raw block header
    assert blob[seal + 16 + 4] == 0x60, "expected a single-segment zstd frame with a 2-byte content size"
    coeffs = members + 73 + 24
    prng = blob.rindex(b"\x5e\xa1")
    seed = prng + 17
    struct_r = [[0, coeffs], [prng, seed], [len(blob) - 9, len(blob)]]
    payload_r = [[coeffs, prng], [seed, seed + 64]]
    return struct_r, payload_r


def _encrypt_with(params, x, tmp, name):
    paths = ckks.create_keys(tmp / name, params)
    return ckks.encrypt_update(ckks.load_secret_context(paths.secret_context), x, 3.0)


def test_hostile_ciphertexts_never_crash_and_are_rejected(tmp_path):
    base = ckks.PRESETS["ckks"]
    paths = ckks.create_keys(tmp_path / "keys", base)
    sec = ckks.load_secret_context(paths.secret_context)
    x = np.random.default_rng(0).uniform(-10, 10, N_PARAMS)
    valid = ckks.encrypt_update(sec, x, 3.0)
    x_small = x[:4000]
    mat = {
        "n_params": N_PARAMS,
        "plain": (3.0 * x).tolist(),
        "valid": [b.hex() for b in valid],
        "foreign": [b.hex() for b in _encrypt_with(base, x, tmp_path, "foreign")],
        "wrong_n": [b.hex() for b in _encrypt_with(ckks.CKKSParams(4096, (60, 40), 36), x[:4096], tmp_path, "n")],
        "wrong_primes": [b.hex() for b in _encrypt_with(ckks.CKKSParams(8192, (50, 40), 36), x, tmp_path, "p")],
        "wrong_scale": [b.hex() for b in _encrypt_with(ckks.CKKSParams(8192, (60, 40), 30), x, tmp_path, "s")],
    }
    del x_small
    sr, pr = zip(*(_ranges(b) for b in valid))
    mat["struct_ranges"], mat["payload_ranges"] = list(sr), list(pr)
    cases = [k for k, n in {**MUST_REJECT, **OTHER}.items() for _ in range(n)]
    mat["cases"] = cases
    (tmp_path / "materials.json").write_text(json.dumps(mat))

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    results: dict[int, tuple[str, str]] = {}
    crashes: list[tuple[int, str, int]] = []
    start = 0
    while start < len(cases):
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(tmp_path), str(start)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        for line in proc.stdout.splitlines():
            i, kind, res = json.loads(line)
            results[i] = (kind, res)
        done = max(results) + 1 if results else start
        if proc.returncode != 0:
            crashes.append((done, cases[done] if done < len(cases) else "?", proc.returncode))
            assert len(crashes) < 20, (crashes, proc.stderr[-2000:])
            start = done + 1
        else:
            start = len(cases)
    assert not crashes, crashes
    assert len(results) == len(cases)
    bad = [(i, k, r) for i, (k, r) in results.items() if k in MUST_REJECT and r != "rejected"]
    assert not bad, bad[:20]
    assert sum(1 for k, _ in results.values() if k in MUST_REJECT) >= 1000
    assert all(r == "accepted_garbage" for k, r in results.values() if k == "foreign")
    assert all(r in ("rejected", "accepted") for k, r in results.values() if k == "flip_payload")
