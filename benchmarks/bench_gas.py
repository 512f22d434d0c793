"""Gas and latency of StudyLedger.recordRound (per hospital) and recordRoundMerkle on anvil.

Run: ``python -m benchmarks.bench_gas [--hospitals 4 10 50] [--merkle-hospitals 4 10 50 1000] [--rounds 3]``.
Writes benchmarks/results/gas.json and prints a markdown table. For each
hospital count a fresh study is registered, every hospital consents, and
``--rounds`` rounds are recorded (round >= 2 is the steady state reported;
round 1 is listed separately). A least-squares line ``gas = base + slope * n``
is fitted over the steady-state figures; the target is base <= 100k and
slope <= 15k gas per hospital.

Merkle mode: for each count, every hospital signs a real commitment, the
leaves and the tree are built with ``fedledger.merkle`` (timed: the server's
off-chain work), and the root is recorded with ``recordRoundMerkle``. The
contract reads no per-hospital state in that mode, so at most
``MERKLE_REGISTER_MAX`` of the hospitals are registered (``registerStudy``
for 1,000 hospitals does not fit in one block). Per-hospital gas at counts
not measured (1,000) is estimated from the fitted line and marked so.
Target: Merkle gas at 1,000 hospitals <= 2x Merkle gas at 10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from eth_account import Account

from fedledger.commitment import RoundCommitment, commitment_digest, epsilon_to_micro, sign_commitment
from fedledger.merkle import MerkleTree, commitment_leaf
from ledger.chains import start_chain
from ledger.client import LedgerClient
from ledger.compile import load_artifact

RESULTS = Path(__file__).resolve().parent / "results" / "gas.json"
MERKLE_REGISTER_MAX = 100
TARGET_BASE = 100_000
TARGET_SLOPE = 15_000


def fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def register_consenting(chain, client: LedgerClient, hospitals: list) -> tuple[bytes, bytes]:
    """A fresh study with ``hospitals`` funded, registered and consenting; returns (study id, initial model hash)."""
    for h in hospitals:
        chain.fund(h.address)
    study_id, init = os.urandom(32), os.urandom(32)
    now = chain.w3.eth.get_block("latest")["timestamp"]
    client.register_study(
        study_id,
        os.urandom(32),
        init,
        os.urandom(32),
        "bench",
        chain.aggregator.address,
        now + 86_400,
        [h.address for h in hospitals],
        [epsilon_to_micro(10.0)] * len(hospitals),
        1,
    )
    for h in hospitals:
        client.consent(study_id, h, 10**6)
    return study_id, init


def signed_rounds(hospitals: list, dom, study_id: bytes, init: bytes, rounds: int):
    """Rounds 1..``rounds``: (round, previous aggregate, commitments, signatures, this round's random aggregate)."""
    prev = init
    for r in range(1, rounds + 1):
        cs = [
            RoundCommitment(study_id, r, prev, os.urandom(32), 100 + i, epsilon_to_micro(0.5 * r), prev)
            for i in range(len(hospitals))
        ]
        aggregate = os.urandom(32)
        yield r, prev, cs, [sign_commitment(h, dom, c) for h, c in zip(hospitals, cs)], aggregate
        prev = aggregate


def run_study(chain, client: LedgerClient, n: int, rounds: int) -> dict:
    hospitals = [Account.create() for _ in range(n)]
    study_id, init = register_consenting(chain, client, hospitals)
    agg = client.with_account(chain.aggregator)
    per_round = []
    for r, prev, cs, sigs, aggregate in signed_rounds(hospitals, client.domain(), study_id, init, rounds):
        t0 = time.perf_counter()
        rec = agg.record_round(study_id, r, prev, aggregate, sum(c.sample_count for c in cs), cs, sigs)
        latency = time.perf_counter() - t0
        data = bytes(chain.w3.eth.get_transaction(rec.tx_hash)["input"])
        calldata_gas = 4 * data.count(0) + 16 * (len(data) - data.count(0))
        per_round.append(
            {
                "round": r,
                "gas_used": rec.gas_used,
                "calldata_gas": calldata_gas,
                "calldata_bytes": len(data),
                "latency_s": round(latency, 4),
            }
        )
    steady = [x["gas_used"] for x in per_round if x["round"] >= 2] or [per_round[0]["gas_used"]]
    return {
        "hospitals": n,
        "rounds": per_round,
        "gas_round1": per_round[0]["gas_used"],
        "gas_steady": int(statistics.fmean(steady)),
        "calldata_gas_steady": int(
            statistics.fmean(x["calldata_gas"] for x in per_round if x["round"] >= 2 or rounds == 1)
        ),
        "latency_s_median": round(statistics.median(x["latency_s"] for x in per_round), 4),
    }


def run_merkle_study(chain, client: LedgerClient, n: int, rounds: int) -> dict:
    hospitals = [Account.create() for _ in range(n)]
    registered = hospitals[:MERKLE_REGISTER_MAX]
    study_id, init = register_consenting(chain, client, registered)
    agg = client.with_account(chain.aggregator)
    dom = client.domain()
    per_round = []
    for r, prev, cs, sigs, aggregate in signed_rounds(hospitals, dom, study_id, init, rounds):
        t0 = time.perf_counter()
        leaves = [commitment_leaf(h.address, commitment_digest(dom, c)) for h, c in zip(hospitals, cs)]
        tree = MerkleTree(leaves)
        proofs = [tree.proof(x) for x in leaves]
        tree_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = agg.record_round_merkle(
            study_id,
            r,
            prev,
            aggregate,
            sum(c.sample_count for c in cs),
            tree.root,
            n,
            max(c.epsilon_micro for c in cs),
        )
        latency = time.perf_counter() - t0
        assert len(sigs) == n
        data = bytes(chain.w3.eth.get_transaction(rec.tx_hash)["input"])
        per_round.append(
            {
                "round": r,
                "gas_used": rec.gas_used,
                "calldata_bytes": len(data),
                "latency_s": round(latency, 4),
                "tree_and_proofs_s": round(tree_s, 4),
                "max_proof_len": max(len(p) for p in proofs),
            }
        )
    steady = [x["gas_used"] for x in per_round if x["round"] >= 2] or [per_round[0]["gas_used"]]
    return {
        "hospitals": n,
        "registered": len(registered),
        "rounds": per_round,
        "gas_round1": per_round[0]["gas_used"],
        "gas_steady": int(statistics.fmean(steady)),
        "latency_s_median": round(statistics.median(x["latency_s"] for x in per_round), 4),
        "tree_and_proofs_s_median": round(statistics.median(x["tree_and_proofs_s"] for x in per_round), 4),
        "proof_hashes_per_hospital": per_round[0]["max_proof_len"],
    }


def markdown(result: dict) -> str:
    lines = [
        "| hospitals | gas (round 1) | gas (round >= 2) | target 100k + 15k*n | ledger latency (median s) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["studies"]:
        n = row["hospitals"]
        lines.append(
            f"| {n} | {row['gas_round1']:,} | {row['gas_steady']:,} | {TARGET_BASE + TARGET_SLOPE * n:,} "
            f"| {row['latency_s_median']:.3f} |"
        )
    f = result["fit"]
    lines.append("")
    lines.append(
        f"Fit: gas = {f['base']:,.0f} + {f['per_hospital']:,.0f} x hospitals "
        f"(target: base <= {TARGET_BASE:,}, slope <= {TARGET_SLOPE:,}; "
        f"{'met' if f['meets_target'] else 'NOT met'}); of which calldata: "
        f"{f['calldata_base']:,} + {f['calldata_per_hospital']:,} x hospitals"
    )
    merkle = result.get("merkle")
    if merkle:
        measured = {s["hospitals"]: s for s in result["studies"]}
        lines += [
            "",
            "| hospitals | per-hospital gas (round >= 2) | Merkle gas (round 1) | Merkle gas (round >= 2) "
            "| tree + proofs (s) | proof hashes | Merkle latency (median s) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in merkle["studies"]:
            n = row["hospitals"]
            per = (
                f"{measured[n]['gas_steady']:,}"
                if n in measured
                else f"~{round(f['base'] + f['per_hospital'] * n):,} (fit, not run)"
            )
            lines.append(
                f"| {n:,} | {per} | {row['gas_round1']:,} | {row['gas_steady']:,} "
                f"| {row['tree_and_proofs_s_median']:.3f} | {row['proof_hashes_per_hospital']} "
                f"| {row['latency_s_median']:.3f} |"
            )
        lines.append("")
        lines.append(
            f"Merkle gas at {merkle['ratio_of']}: {merkle['ratio']:.3f}x "
            f"(target <= 2x: {'met' if merkle['meets_target'] else 'NOT met'})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gas per StudyLedger.recordRound")
    parser.add_argument("--hospitals", type=int, nargs="+", default=[4, 10, 50])
    parser.add_argument("--merkle-hospitals", type=int, nargs="*", default=[4, 10, 50, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="anvil", choices=["anvil", "eth_tester"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fedledger-bench-") as tmp:
        chain = start_chain(args.backend, Path(tmp))
        try:
            client = LedgerClient.deploy(chain.w3, chain.admin)
            studies = [run_study(chain, client, n, args.rounds) for n in args.hospitals]
            merkle_studies = [run_merkle_study(chain, client, n, args.rounds) for n in args.merkle_hospitals]
        finally:
            chain.stop()

    base, slope = fit([(s["hospitals"], s["gas_steady"]) for s in studies])
    cd_base, cd_slope = fit([(s["hospitals"], s["calldata_gas_steady"]) for s in studies])
    artifact = load_artifact()
    result = {
        "backend": args.backend,
        "solc": artifact["solcVersion"],
        "source_sha256": artifact["sourceSha256"],
        "machine": platform.platform(),
        "studies": studies,
        "fit": {
            "base": round(base),
            "per_hospital": round(slope),
            "meets_target": base <= TARGET_BASE and slope <= TARGET_SLOPE,
            "calldata_base": round(cd_base),
            "calldata_per_hospital": round(cd_slope),
            "all_points_within_budget": all(
                s["gas_steady"] <= TARGET_BASE + TARGET_SLOPE * s["hospitals"] for s in studies
            ),
        },
    }
    if merkle_studies:
        by_n = {s["hospitals"]: s["gas_steady"] for s in merkle_studies}
        lo, hi = min(by_n), max(by_n)
        lo = 10 if 10 in by_n else lo
        hi = 1000 if 1000 in by_n else hi
        per_hospital_1000 = round(base + slope * 1000)
        result["merkle"] = {
            "studies": merkle_studies,
            "ratio_of": f"{hi} vs {lo} hospitals",
            "ratio": by_n[hi] / by_n[lo],
            "meets_target": by_n[hi] <= 2 * by_n[lo],
            "per_hospital_estimate_1000": {
                "gas": per_hospital_1000,
                "estimated": True,
                "how": "fitted line of the measured per-hospital rounds",
            },
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
