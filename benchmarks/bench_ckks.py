"""CKKS cost vs plaintext FedAvg: `python -m benchmarks.bench_ckks [--params 10000,100000,1000000] [--hospitals 10]`.

Writes benchmarks/results/ckks.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fedledger import ckks


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run(sizes: list[int], hospitals: int, preset: str) -> list[dict]:
    params = ckks.preset(preset)
    with tempfile.TemporaryDirectory() as d:
        paths = ckks.create_keys(Path(d) / "keys", params)
        sec = ckks.load_secret_context(paths.secret_context)
        pub = ckks.load_aggregator_context(paths.aggregator_context)
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        xs = [rng.uniform(-10, 10, n) for _ in range(hospitals)]
        ws = rng.integers(1, 501, hospitals).astype(float)
        k = ckks.n_ciphertexts(n, params)
        updates, t_enc = _timed(lambda: [ckks.encrypt_update(sec, x, w) for x, w in zip(xs, ws)])
        vecs, t_val = _timed(
            lambda updates=updates: [
                ckks.validate_ciphertexts(pub, u, k, params.max_update_bytes, n_params=n) for u in updates
            ]
        )
        agg_v, t_sumv = _timed(lambda vecs=vecs: ckks.sum_vectors(vecs))
        del vecs
        agg, t_stream = _timed(lambda updates=updates: ckks.sum_ciphertexts(pub, updates))
        assert agg == agg_v
        avg, t_dec = _timed(lambda agg=agg: ckks.decrypt_update(sec, agg, n, total_weight=ws.sum()))
        f32 = [x.astype(np.float32) for x in xs]
        _ref, t_plain = _timed(lambda: np.sum([w * x for w, x in zip(ws, f32)], axis=0, dtype=np.float64) / ws.sum())
        exact = sum(w * x for w, x in zip(ws, xs)) / ws.sum()
        nbytes = sum(map(len, updates[0]))
        rows.append(
            {
                "n_params": n,
                "hospitals": hospitals,
                "preset": preset,
                "ciphertexts_per_hospital": k,
                "bytes_per_hospital": nbytes,
                "float32_bytes": 4 * n,
                "expansion": nbytes / (4 * n),
                "aggregate_bytes": sum(map(len, agg)),
                "encrypt_s_per_hospital": t_enc / hospitals,
                "decrypt_s": t_dec,
                "validate_deserialize_s": t_val,
                "sum_after_validate_s": t_sumv,
                "aggregator_deserialize_plus_sum_s": t_stream,
                "plaintext_fedavg_s": t_plain,
                "max_abs_error": float(np.abs(avg - exact).max()),
            }
        )
        del updates, agg
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| params | ct/hosp | bytes/hosp | x float32 | encrypt/hosp s | decrypt s | validate (deser) s | "
        "deser+sum s | sum only s | numpy FedAvg s | max abs err |"
    )
    lines = [head, "|" + "|".join(["---"] * 11) + "|"]
    for r in rows:
        lines.append(
            f"| {r['n_params']:,} | {r['ciphertexts_per_hospital']} | {r['bytes_per_hospital']:,} | "
            f"{r['expansion']:.2f} | {r['encrypt_s_per_hospital']:.3f} | {r['decrypt_s']:.3f} | "
            f"{r['validate_deserialize_s']:.3f} | {r['aggregator_deserialize_plus_sum_s']:.3f} | "
            f"{r['sum_after_validate_s']:.3f} | {r['plaintext_fedavg_s']:.4f} | {r['max_abs_error']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="10000,100000,1000000")
    ap.add_argument("--hospitals", type=int, default=10)
    ap.add_argument("--preset", default="ckks")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ckks.json"))
    a = ap.parse_args(argv)
    rows = run([int(s) for s in a.params.split(",")], a.hospitals, a.preset)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": platform.platform(), "python": platform.python_version(), "rows": rows}, indent=1) + "\n"
    )
    print(f"{a.hospitals} hospitals, preset {a.preset} (times on {platform.machine()}, single thread)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
