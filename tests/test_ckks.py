"""CKKS core: precision, key handling, round trips, security bound, determinism."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from fedledger import ckks
from fedledger.ckks.format import proto_fields
from fedledger.hashing import ciphertexts_hash

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    paths = ckks.create_keys(tmp_path_factory.mktemp("ckks") / "keys", ckks.PRESETS["ckks"])
    return paths, ckks.load_secret_context(paths.secret_context), ckks.load_aggregator_context(paths.aggregator_context)


def _fedavg_roundtrip(keys, hospitals, n_params, seed=0, weights=None):
    _, sec, pub = keys
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-10, 10, n_params) for _ in range(hospitals)]
    ws = rng.integers(1, 501, hospitals).astype(float) if weights is None else np.asarray(weights, float)
    k = ckks.n_ciphertexts(n_params, ckks.PRESETS["ckks"])
    updates = [ckks.encrypt_update(sec, x, w) for x, w in zip(xs, ws)]
    for u in updates:
        ckks.validate_ciphertexts(pub, u, k, 1 << 30, n_params=n_params)
    agg = ckks.sum_ciphertexts(pub, updates)
    got = ckks.decrypt_update(sec, agg, n_params, total_weight=ws.sum())
    want = sum(w * x for w, x in zip(ws, xs)) / ws.sum()
    return np.abs(got - want).max(), updates, agg


@pytest.mark.parametrize(
    "hospitals,n_params", [(2, 10), (10, 10), (50, 10), (2, 10_000), (10, 10_000), (50, 10_000), (2, 1_000_000)]
)
def test_encrypted_fedavg_matches_plaintext(keys, hospitals, n_params):
    err, updates, _ = _fedavg_roundtrip(keys, hospitals, n_params)
    assert err < 1e-6
    if n_params >= 10_000:  # size target: <= 6x float32 at 128-bit security
        assert sum(map(len, updates[0])) <= 6 * 4 * n_params


def test_unit_weights_worst_case_precision(keys):
    err, _, _ = _fedavg_roundtrip(keys, 2, 100_000, seed=3, weights=[1, 1])
    assert err < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("hospitals", [10, 50])
def test_encrypted_fedavg_1m_many_hospitals(keys, hospitals):
    err, _, _ = _fedavg_roundtrip(keys, hospitals, 1_000_000)
    assert err < 1e-6


def test_sum_vectors_equals_sum_ciphertexts(keys):
    _, _, pub = keys
    _, updates, agg = _fedavg_roundtrip(keys, 3, 5000, seed=1)
    vecs = [ckks.validate_ciphertexts(pub, u, 2, 1 << 30) for u in updates]
    assert ckks.sum_vectors(vecs) == agg


def test_aggregator_context_cannot_decrypt_and_has_no_secret(keys):
    paths, sec, pub = keys
    assert sec.is_private() and not pub.is_private() and not pub.has_secret_key()
    _, _, agg = _fedavg_roundtrip(keys, 2, 100)
    with pytest.raises(ckks.KeyHandlingError):
        ckks.decrypt_update(pub, agg, 100)
    with pytest.raises(Exception):
        ts.ckks_vector_from(pub, agg[0]).decrypt()
    pub_bytes = paths.aggregator_context.read_bytes()
    sec_fields = proto_fields(paths.secret_context.read_bytes())
    sk_bytes = proto_fields(sec_fields[3][0])[1][0]  # TenSEALPrivateProto.secret_key (SEAL bytes)
    assert len(sk_bytes) > 1000
    assert 3 not in proto_fields(pub_bytes)
    assert sk_bytes not in pub_bytes
    for off in range(40, len(sk_bytes) - 32, max(1, len(sk_bytes) // 50)):
        assert sk_bytes[off : off + 32] not in pub_bytes


def test_aggregator_loader_refuses_secret_context(keys):
    paths, _, _ = keys
    with pytest.raises(ckks.KeyHandlingError, match="secret key"):
        ckks.load_aggregator_context(paths.secret_context)
    with pytest.raises(ckks.KeyHandlingError):
        ckks.load_secret_context(paths.aggregator_context)


def test_fingerprint_and_files(keys):
    paths, _, _ = keys
    pub_bytes = paths.aggregator_context.read_bytes()
    fp = ckks.context_fingerprint(pub_bytes)
    assert len(fp) == 32 and paths.fingerprint.read_text().strip() == "0x" + fp.hex() == paths.fingerprint_hex
    ckks.load_aggregator_context(paths.aggregator_context, fingerprint=fp)
    with pytest.raises(ckks.KeyHandlingError, match="fingerprint"):
        ckks.load_aggregator_context(paths.aggregator_context, fingerprint=b"\0" * 32)
    assert stat.S_IMODE(os.stat(paths.secret_context).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.directory).st_mode) == 0o700
    meta = json.loads(paths.params.read_text())
    assert meta["poly_modulus_degree"] == 8192 and meta["aggregator_context_sha256"] == paths.fingerprint_hex
    with pytest.raises(FileExistsError):
        ckks.create_keys(paths.directory, ckks.PRESETS["ckks"])


def test_round_trips(keys):
    paths, sec, pub = keys
    sec_bytes, pub_bytes = paths.secret_context.read_bytes(), paths.aggregator_context.read_bytes()
    assert ckks.serialize_secret_context(ts.context_from(sec_bytes)) == sec_bytes
    assert (
        ts.context_from(pub_bytes).serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
        )
        == pub_bytes
    )
    assert ckks.serialize_aggregator_context(sec) == pub_bytes  # hospitals can recompute the fingerprint
    x = np.linspace(-10, 10, 5000)
    blobs = ckks.encrypt_update(sec, x, 7.0)
    expanded = [ts.ckks_vector_from(pub, b).serialize() for b in blobs]  # seed expanded: full ciphertext
    assert np.abs(ckks.decrypt_update(sec, expanded, 5000) - 7 * x).max() < 1e-6
    agg = ckks.sum_ciphertexts(pub, [blobs, blobs])
    assert [ts.ckks_vector_from(pub, b).serialize() for b in agg] == agg
    assert ckks.context_params(pub) == ckks.context_params(sec)


def test_security_bound_refused():
    with pytest.raises(ckks.SecurityError, match="218"):
        ckks.CKKSParams(8192, (60, 60, 60, 60), 40).check()
    with pytest.raises(ckks.SecurityError, match="109"):
        ckks.check_security(4096, [60, 50])
    with pytest.raises(ckks.SecurityError, match="2048"):
        ckks.CKKSParams(2048, (30, 20), 25).check()
    ckks.check_security(32768, [60] * 14 + [41])
    with pytest.raises(ckks.SecurityError):
        ckks.create_keys("/nonexistent/never", ckks.CKKSParams(16384, (60,) * 8, 40))
    for p in ckks.PRESETS.values():
        p.check()


def test_presets_match_yaml():
    yaml = pytest.importorskip("yaml")
    conf = ROOT / "conf" / "encryption"
    assert yaml.safe_load((conf / "off.yaml").read_text())["enabled"] is False
    with pytest.raises(ValueError):
        ckks.params_from_config(yaml.safe_load((conf / "off.yaml").read_text()))
    for name, p in ckks.PRESETS.items():
        assert ckks.params_from_config(yaml.safe_load((conf / f"{name}.yaml").read_text())) == p


def test_overflow_and_bad_inputs_refused(keys):
    _, sec, _ = keys
    with pytest.raises(ValueError, match="overflow"):
        ckks.encrypt_update(sec, np.full(10, 1e5), 500)
    with pytest.raises(ValueError):
        ckks.encrypt_update(sec, np.array([np.nan]), 1)
    with pytest.raises(ValueError):
        ckks.encrypt_update(sec, np.ones(3), 0)
    assert ckks.n_ciphertexts(4096, ckks.PRESETS["ckks"]) == 1
    assert ckks.n_ciphertexts(4097, ckks.PRESETS["ckks"]) == 2
    assert ckks.n_ciphertexts(1_000_000, ckks.PRESETS["ckks"]) == 245


_RESUM = r"""
import sys
from fedledger import ckks
from fedledger.hashing import ciphertexts_hash
pub = ckks.load_aggregator_context(sys.argv[1])
d = sys.argv[2]; h, k = int(sys.argv[3]), int(sys.argv[4])
blobs = [[open(f"{d}/{i}_{j}.bin", "rb").read() for j in range(k)] for i in range(h)]
print(ciphertexts_hash(ckks.sum_ciphertexts(pub, blobs)).hex())
"""


def test_resum_is_byte_identical_in_another_process(keys, tmp_path):
    paths, _, pub = keys
    _, updates, agg = _fedavg_roundtrip(keys, 3, 9000, seed=5)
    for i, u in enumerate(updates):
        for j, b in enumerate(u):
            (tmp_path / f"{i}_{j}.bin").write_bytes(b)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", _RESUM, str(paths.aggregator_context), str(tmp_path), "3", str(len(updates[0]))],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == ciphertexts_hash(agg).hex()
    assert ciphertexts_hash(ckks.sum_ciphertexts(pub, updates[::-1])) == ciphertexts_hash(agg)  # order-free


def test_cli_keys_init(tmp_path):
    from coordinator import cli

    assert cli.main(["keys", "init", str(tmp_path / "k"), "--preset", "ckks_n4096"]) == 0
    ctx = ckks.load_aggregator_context(tmp_path / "k" / ckks.AGGREGATOR_NAME)
    assert ckks.context_params(ctx).poly_modulus_degree == 4096
    assert cli.main(["keys", "init", str(tmp_path / "k")]) == 1  # refuses to replace a key
