"""Audit time: a synthetic study of 1,000 rounds x 10 hospitals on a local anvil.

    python -m benchmarks.bench_audit [--rounds 1000] [--hospitals 10] [--resum-rounds 20]

Part 1 (chain checks only): one study with ``--rounds`` rounds recorded on
anvil through ledger.client (real signed commitments, random update and
aggregate hashes that chain correctly); time to read it back from the chain
and run every chain check, with the default signature path and with
``--reference-signatures``.

Part 2 (artifact store + CKKS re-sum): a second study of ``--resum-rounds``
rounds with real CKKS updates (default preset, N=8192, one ciphertext per
update), manifests and blobs; the audit time per round is extrapolated to
``--rounds`` rounds (said so in the output).

Writes benchmarks/results/audit.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from fedledger.commitment import RoundCommitment, epsilon_to_micro, sign_commitment
from fedledger.hashing import sha256, to_hex

RESULTS = Path(__file__).resolve().parent / "results" / "audit.json"


def _register(client, chain, n_hospitals: int, tag: bytes, context_hash: bytes, init_hash: bytes):
    accounts = chain.funded_accounts[2 : 2 + n_hospitals]
    sid = sha256(b"bench-audit" + tag)
    start = chain.w3.eth.block_number + 1
    expiry = chain.w3.eth.get_block("latest")["timestamp"] + 30 * 86400
    client.register_study(
        sid,
        sha256(b"cfg"),
        init_hash,
        context_hash,
        "bench",
        chain.aggregator.address,
        expiry,
        [a.address for a in accounts],
        [epsilon_to_micro(1000.0)] * n_hospitals,
        1,
        sender=chain.admin,
    )
    for a in accounts:
        client.consent(sid, a, 10**6)
    return sid, accounts, start


def record_chain_only_study(chain, client, n_rounds: int, n_hospitals: int) -> tuple[bytes, int, float]:
    rng = np.random.default_rng(0)
    init = sha256(b"init")
    sid, accounts, start = _register(client, chain, n_hospitals, b"chain", b"\x00" * 32, init)
    dom = client.domain()
    prev = init
    t0 = time.perf_counter()
    for r in range(1, n_rounds + 1):
        cs, sigs = [], []
        for i, a in enumerate(accounts):
            c = RoundCommitment(sid, r, prev, rng.bytes(32), int(rng.integers(10, 100)), 1000 * r + i, prev)
            cs.append(c)
            sigs.append(sign_commitment(a, dom, c))
        agg = rng.bytes(32)
        client.record_round(sid, r, prev, agg, sum(c.sample_count for c in cs), cs, sigs, sender=chain.aggregator)
        prev = agg
        if r % 100 == 0:
            print(f"  recorded {r}/{n_rounds} rounds ({time.perf_counter() - t0:.0f}s)", flush=True)
    return sid, start, time.perf_counter() - t0


def record_encrypted_study(chain, client, root: Path, n_rounds: int, n_hospitals: int, n_params: int):
    from fedledger import ckks
    from fedledger.hashing import ciphertexts_hash
    from fedledger.wire import ModelPayload
    from fl_server.artifact_store import ArtifactStore
    from fl_server.round_protocol import write_manifest

    rng = np.random.default_rng(1)
    keys = ckks.create_keys(root / "keys" / "ckks", ckks.preset("ckks"))
    sec = ckks.load_secret_context(keys.secret_context)
    pub = ckks.load_aggregator_context(keys.aggregator_context)
    store = ArtifactStore(root)
    init = sha256(b"init-enc")
    sid, accounts, start = _register(client, chain, n_hospitals, b"enc", keys.fingerprint_hex, init)
    dom = client.domain()
    prev = init
    for r in range(1, n_rounds + 1):
        replies, blobs_all = [], []
        for i, a in enumerate(accounts):
            n_k = int(rng.integers(10, 100))
            blobs = ckks.encrypt_update(sec, rng.normal(size=n_params) * 0.1, n_k)
            c = RoundCommitment(sid, r, prev, ciphertexts_hash(blobs), n_k, 1000 * r + i, prev)
            sig = sign_commitment(a, dom, c)
            replies.append(
                SimpleNamespace(
                    hospital=f"hospital_{i}",
                    node_id=i,
                    num_examples=n_k,
                    payload=ModelPayload(ciphertexts=blobs),
                    c=c,
                    sig=sig,
                    commitment={"address": a.address, "signature": to_hex(sig)},
                )
            )
            blobs_all.append(blobs)
        total = sum(x.num_examples for x in replies)
        agg = ModelPayload(ciphertexts=ckks.sum_ciphertexts(pub, blobs_all), total_weight=float(total))
        write_manifest(store, to_hex(sid), r, to_hex(prev), agg, replies)
        client.record_round(
            sid,
            r,
            prev,
            agg.digest(),
            sum(x.num_examples for x in replies),
            [x.c for x in replies],
            [x.sig for x in replies],
            sender=chain.aggregator,
        )
        prev = agg.digest()
    keys.secret_context.unlink()
    blob_bytes = len(blobs_all[0][0])
    return sid, start, keys.aggregator_context.read_bytes(), blob_bytes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--hospitals", type=int, default=10)
    ap.add_argument("--resum-rounds", type=int, default=20)
    ap.add_argument("--params", type=int, default=31, help="model size of the re-sum study (31: logreg, 30 features)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from ledger import audit as A
    from ledger.chains import start_chain
    from ledger.client import LedgerClient

    try:
        import coincurve  # noqa: F401

        ecc = "coincurve"
    except ImportError:
        ecc = "eth_keys native (pure Python)"
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        tmp = Path(tmp)
        chain = start_chain("anvil", tmp / "run")
        try:
            client = LedgerClient.deploy(chain.w3, chain.admin)
            print(f"recording {args.rounds} rounds x {args.hospitals} hospitals on anvil ...", flush=True)
            sid, start, t_record = record_chain_only_study(chain, client, args.rounds, args.hospitals)

            t0 = time.perf_counter()
            view = A.read_chain_view(chain.w3, client.address, sid, from_block=start)
            t_read = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = A.audit(view)
            t_check = time.perf_counter() - t0
            assert res.ok, res.failures[:3]
            t0 = time.perf_counter()
            res_ref = A.audit(view, reference_signatures=True)
            t_check_ref = time.perf_counter() - t0
            assert res_ref.ok

            print(f"recording {args.resum_rounds} encrypted rounds with artifacts ...", flush=True)
            enc_sid, enc_start, ctx_bytes, blob_bytes = record_encrypted_study(
                chain, client, tmp / "enc", args.resum_rounds, args.hospitals, args.params
            )
            t0 = time.perf_counter()
            enc_view = A.read_chain_view(chain.w3, client.address, enc_sid, from_block=enc_start)
            time.perf_counter() - t0
            t0 = time.perf_counter()
            enc_chain = A.audit(enc_view)
            time.perf_counter() - t0
            enc_res = A.audit(enc_view, tmp / "enc", ctx_bytes)
            assert enc_chain.ok and enc_res.ok, enc_res.failures[:3]
            ctx = A.load_public_context(ctx_bytes)
            t0 = time.perf_counter()
            art = A.check_artifacts(enc_view, tmp / "enc", ctx) + A.check_checkpoints(enc_view, tmp / "enc")
            t_art = time.perf_counter() - t0
            assert all(f.ok for f in art)
        finally:
            chain.stop()

    per_round_artifacts = t_art / args.resum_rounds
    chain_total = t_read + t_check
    result = {
        "rounds": args.rounds,
        "hospitals": args.hospitals,
        "commitments": args.rounds * args.hospitals,
        "signature_backend": ecc,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "record_s": round(t_record, 2),
        "chain_read_s": round(t_read, 2),
        "chain_checks_s": round(t_check, 2),
        "chain_total_s": round(chain_total, 2),
        "chain_checks_reference_signatures_s": round(t_check_ref, 2),
        "resum_rounds_measured": args.resum_rounds,
        "resum_params": args.params,
        "ciphertext_bytes": blob_bytes,
        "artifact_checks_per_round_s": round(per_round_artifacts, 4),
        "artifact_checks_measured_s": round(t_art, 3),
        "full_audit_extrapolated_s": round(chain_total + per_round_artifacts * args.rounds, 1),
        "extrapolated": True,
        "target_chain_only_s": 10.0,
        "meets_target": chain_total <= 10.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    n = args.rounds
    print()
    print(f"| audit of {n} rounds x {args.hospitals} hospitals ({n * args.hospitals} commitments) | seconds |")
    print("|---|---:|")
    print(f"| read the chain (events, calldata, block times) | {t_read:.2f} |")
    print(f"| chain checks, default signature path ({ecc}) | {t_check:.2f} |")
    print(f"| **chain-only audit total** (target <= 10 s) | **{chain_total:.2f}** |")
    print(f"| chain checks with --reference-signatures | {t_check_ref:.2f} |")
    print(
        f"| artifact checks + CKKS re-sum per round (measured on {args.resum_rounds} rounds, "
        f"N=8192, {blob_bytes // 1024} KiB ciphertexts) | {per_round_artifacts:.3f} |"
    )
    print(f"| full audit with re-sum, extrapolated to {n} rounds | {result['full_audit_extrapolated_s']:.1f} |")
    print(f"\n(recording the synthetic study took {t_record:.0f}s; results in {args.out})")
    return result


if __name__ == "__main__":
    main()
