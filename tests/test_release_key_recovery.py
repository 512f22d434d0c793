"""Key recovery from a released decryption (Li and Micciancio, 2021), tried both ways.

The attacker holds what the artifact store keeps: the round's aggregate
ciphertext (c0, c1) and the released decryption. Re-encoding the released
values gives the decrypted polynomial m in SEAL's NTT form (the encoder does
the NTT), and ``s = (m - c0) / c1`` slot by slot modulo the data prime. The
ciphertext's polynomials are read through SEAL's own decryptor under two
crafted keys (s = 0 gives c0, s = 1 gives c0 + c1), since SEAL's bytes are
zstd-compressed. Success means the recovered s equals the secret key read
from the secret context.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sealapi

from fedledger import ckks
from fedledger.ckks.format import layout, parse_vector
from fedledger.hashing import model_hash
from fedledger.model_io import flatten, unflatten

HOSPITALS, N_PARAMS = 3, 1500


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    paths = ckks.create_keys(tmp_path_factory.mktemp("ckks") / "keys", ckks.PRESETS["ckks_n4096"])
    sec = ckks.load_secret_context(paths.secret_context)
    pub = ckks.load_aggregator_context(paths.aggregator_context)
    rng = np.random.default_rng(13)
    xs = [rng.normal(0, 0.3, N_PARAMS).astype(np.float32) for _ in range(HOSPITALS)]
    ws = [120.0, 75.0, 310.0]
    agg = ckks.sum_ciphertexts(pub, [ckks.encrypt_update(sec, x, w) for x, w in zip(xs, ws)])
    return sec, agg, sum(ws)


def _seal_header(lay, body: bytes) -> bytes:
    return struct.pack("<HBBBBHQ", 0xA15E, 16, *lay.seal_version, 0, 0, 16 + len(body)) + body


def _crafted_key(sec, value: int, tmp_path) -> sealapi.SecretKey:
    """A SecretKey whose NTT form is ``value`` in every slot (0: the zero key, 1: the constant 1)."""
    lay, sc = layout(sec), sec.seal_context().data
    count = lay.n * len(sc.key_context_data().parms().coeff_modulus())
    dyn = _seal_header(lay, struct.pack("<Q", count) + np.full(count, value, np.uint64).tobytes())
    members = struct.pack("<4Q", *sc.key_parms_id()) + struct.pack("<Qd", count, 1.0) + dyn
    path = tmp_path / f"key{value}.bin"
    path.write_bytes(_seal_header(lay, members))
    key = sealapi.SecretKey()
    key.load(sc, str(path))
    return key


def _decrypt_ntt(sec, ct, key) -> sealapi.Plaintext:
    pt = sealapi.Plaintext()
    sealapi.Decryptor(sec.seal_context().data, key).decrypt(ct, pt)
    return pt


def _coeffs(pt: sealapi.Plaintext, n: int) -> np.ndarray:
    return np.array([pt[i] for i in range(n)], dtype=object)


def _aggregate(sec, agg):
    """The aggregate's SEAL ciphertext, parsed by the product's own format checks."""
    lay = layout(sec)
    return parse_vector(sec, agg[0], lay, 0, lay.max_blob_bytes, N_PARAMS).ciphertext()[0]


def _modulus(sec) -> int:
    return int(sec.seal_context().data.first_context_data().parms().coeff_modulus()[0].value())


def recover_key(sec, agg, slots: list[complex], tmp_path) -> np.ndarray:
    """The attack: s = (encode(slots) - c0) * c1^-1 in SEAL's NTT domain, modulo the data prime."""
    lay, q = layout(sec), _modulus(sec)
    ct = _aggregate(sec, agg)
    c0 = _coeffs(_decrypt_ntt(sec, ct, _crafted_key(sec, 0, tmp_path)), lay.n)
    c1 = (_coeffs(_decrypt_ntt(sec, ct, _crafted_key(sec, 1, tmp_path)), lay.n) - c0) % q
    m = sealapi.Plaintext()
    sealapi.CKKSEncoder(sec.seal_context().data).encode(slots, lay.scale, m)
    mc = _coeffs(m, lay.n)
    return np.array([(int(mc[j]) - int(c0[j])) * pow(int(c1[j]), -1, q) % q for j in range(lay.n)], dtype=object)


def _secret(sec) -> np.ndarray:
    return _coeffs(sec.secret_key().data.data(), layout(sec).n)


def _raw_complex_slots(sec, agg) -> list[complex]:
    """What a raw release would be: every slot, real and imaginary, in float64 (the sum, undivided)."""
    ct = _aggregate(sec, agg)
    pt = _decrypt_ntt(sec, ct, sec.secret_key().data)
    return list(sealapi.CKKSEncoder(sec.seal_context().data).decode_complex(pt))


def test_attack_recovers_the_key_from_a_raw_float64_decryption(study, tmp_path):
    sec, agg, _ = study
    s = recover_key(sec, agg, _raw_complex_slots(sec, agg), tmp_path)
    assert (s == _secret(sec)).all()


def test_attack_fails_on_the_released_values(study, tmp_path):
    sec, agg, total = study
    secret = _secret(sec)
    released = ckks.decrypt_for_release(sec, agg, N_PARAMS, total_weight=total)
    assert np.array_equal(released, ckks.round_for_release(released))
    # What the store releases: real parts of the parameters' slots, averaged and rounded.
    slots = [complex(v * total) for v in released] + [0j] * (layout(sec).slots - N_PARAMS)
    assert (recover_key(sec, agg, slots, tmp_path) == secret).sum() < 5
    # Even if every slot, imaginary parts included, were released on the grid: the rounding alone defeats it.
    raw = np.array(_raw_complex_slots(sec, agg)) / total
    rounded = ckks.round_for_release(raw.real) + 1j * ckks.round_for_release(raw.imag)
    assert (recover_key(sec, agg, list(rounded * total), tmp_path) == secret).sum() < 5


def test_released_checkpoint_is_on_the_grid_and_keeps_its_accuracy(study):
    """A small logistic model: rounding to the grid changes no prediction; the float32 checkpoint is exact."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2000, 20))
    w_true = rng.normal(size=20)
    y = (x @ w_true > 0).astype(int)
    template = {"weight": rng.normal(0, 0.5, (1, 20)).astype(np.float32), "bias": np.zeros(1, np.float32)}
    w = template["weight"].astype(np.float64).ravel()
    for _ in range(200):  # plain gradient descent on the logistic loss
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * x.T @ (p - y) / len(y)
    trained = {"weight": w.reshape(1, 20).astype(np.float32), "bias": np.zeros(1, np.float32)}
    released = unflatten(ckks.round_for_release(flatten(trained)), template)
    flat = flatten(released).astype(np.float64)
    assert np.array_equal(flat * 2**ckks.RELEASE_GRID_BITS, np.round(flat * 2**ckks.RELEASE_GRID_BITS))
    assert model_hash(released) != model_hash(trained)  # the release hash is of the rounded values
    assert np.array_equal(ckks.round_for_release(flat), flat)  # anyone can check a checkpoint is on the grid

    def accuracy(arrays):
        return float(((x @ arrays["weight"].ravel() + arrays["bias"][0] > 0).astype(int) == y).mean())

    assert accuracy(trained) > 0.95
    assert accuracy(released) == accuracy(trained)


def test_release_refuses_a_scale_too_coarse_for_the_grid():
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 4096, coeff_mod_bit_sizes=[60, 40])
    ctx.global_scale = 2.0**24
    with pytest.raises(ckks.SecurityError, match="too coarse to release"):
        ckks.decrypt_for_release(ctx, [b""], 10)
