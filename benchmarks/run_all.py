"""Every benchmark, one command: ``python -m benchmarks.run_all`` (also ``make bench``).

    python -m benchmarks.run_all                  # overhead + scale, then docs/BENCHMARKS.md
    python -m benchmarks.run_all --all            # also re-run DP, CKKS, gas and audit (slow: audit ~15 min)
    python -m benchmarks.run_all --docs-only      # only re-render docs/BENCHMARKS.md from benchmarks/results/*.json
    python -m benchmarks.run_all --skip-scale     # overhead only (plus docs)
    python -m benchmarks.run_all --scale-sizes 10,100   # smaller scaling run

By default the DP, CKKS, gas and audit figures are read from their
benchmarks/results/*.json (they are slow and change only with their code);
``--all`` re-runs them first. The markdown page is generated from the JSON
files only, so it never shows a number that was not measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.bench_overhead import markdown as overhead_markdown
from benchmarks.bench_scale import markdown as scale_markdown

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "BENCHMARKS.md"


def load(name: str) -> dict[str, Any] | None:
    p = RESULTS / f"{name}.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def yes_no(v: Any) -> str:
    return "n/a" if v is None else ("**met**" if v else "**missed**")


def heading(title: str, d: dict[str, Any] | None, cmd: str) -> list[str]:
    """A section's title; with no results file, also the command that measures it."""
    out = [f"## {title}", ""]
    return out if d else [*out, f"Not measured: `{cmd}`.", ""]


def dominates(text: str) -> list[str]:
    """The closing paragraph of a section: what its cost is made of."""
    return ["", f"What dominates: {text}", ""]


# --------------------------------------------------------------------------- sections


def section_targets(ov: dict[str, Any] | None, sc: dict[str, Any] | None) -> list[str]:
    out = ["## Targets at a glance", "", "| target | measured | verdict |", "|---|---|---|"]
    if ov:
        for m, r in (ov.get("all_ratio") or {}).items():
            out.append(
                f"| everything on, 4 hospitals, {m}: <= {ov['target_all_ratio']}x plain Flower per round | "
                f"{r:.2f}x | {yes_no(r <= ov['target_all_ratio'])} |"
            )
    for mode in ("default", "merkle"):
        v = (sc or {}).get(f"at_1000_{mode}") or {}
        if v.get("round_s") is None:
            continue
        how = "measured" if v.get("measured") else "extrapolated"
        out.append(
            f"| 1,000 hospitals, ledger `{mode}`: one round <= 120 s | {v['round_s']:.0f} s steady, "
            f"{v.get('round1_s') or 0:.0f} s round 1 ({how}) | "
            f"{yes_no(v.get('meets_round_target'))} |"
        )
        out.append(
            f"| 1,000 hospitals, ledger `{mode}`: peak memory <= 8 GiB | {v['peak_gib']:.2f} GiB ({how}) | "
            f"{yes_no(v.get('meets_memory_target'))} |"
        )
        if v.get("gas_ratio_1000_over_10") is not None:
            out.append(
                f"| 1,000 hospitals, ledger `{mode}`: gas per round <= 2x gas at 10 | "
                f"{v['gas_ratio_1000_over_10']:.2f}x ({how}) | {yes_no(v.get('meets_gas_target'))} |"
            )
    return out + [""]


def section_overhead(d: dict[str, Any]) -> list[str]:
    out = [
        f"`python -m benchmarks.bench_overhead --rounds {d['rounds']} --repeats {d['repeats']}` "
        f"({d['machine']}; {d['hospitals']} hospitals, breast cancer, {d['rounds']} rounds, round 1 dropped, "
        f"`baselines=false audit=false`; configurations interleaved; each row is a separate "
        f"`python -m experiments.run` process).",
        "",
        overhead_markdown(d),
        "",
        "`plain` = `privacy=off encryption=off ledger=none` (Flower FedAvg), `dp` = `privacy=target_eps`, "
        "`ckks` = `encryption=ckks`, `ledger` = `ledger=anvil`, `all` = all three. A round is everything "
        "`run_rounds` times: send, local training, replies, validation and aggregation, artifact store, "
        "ledger commit, federated evaluation.",
        "",
    ]
    audits = [e for e in d["summary"] if e.get("audit_s") is not None]
    if audits:
        out += [
            "Audit of the finished `all` study (`fedledger audit --run-dir`, outside the rounds): "
            + ", ".join(f"{e['model']} {e['audit_s']:.1f} s" for e in audits)
            + ".",
            "",
        ]
    ratios = ", ".join(f"{m} {r:.2f}x" for m, r in d["all_ratio"].items())
    out += [
        f"**Target** (everything on, at most {d['target_all_ratio']}x plain Flower per round): {ratios} -> "
        f"{yes_no(d['meets_target'])}.",
        "",
    ]
    prof = d.get("profile")
    if prof:
        out += ["What dominates (profile of one `all` round):", ""] + [f"- {line}" for line in prof] + [""]
    return out


def section_scale(d: dict[str, Any]) -> list[str]:
    out = [
        f"`python -m benchmarks.bench_scale --rounds {d['rounds']}` ({d['machine']}; DP + CKKS + anvil, logreg, "
        f"`dataset.partitioner=bootstrap dataset.rows_per_hospital={d['rows_per_hospital']}` -- each hospital "
        "draws its rows with replacement from the 569 patients, for scale benchmarks only: the accuracy of these "
        "runs means nothing).",
        "",
        scale_markdown(d),
        "",
        "Round 1 includes Ray actor start-up and imports; *steady round* is the last round. *Set-up* is the "
        "study preparation before round 1 (CKKS keys, chain deploy, funding, registering the study and one "
        "consent transaction per hospital). Peak RSS is summed over the driver and every descendant (raylet, "
        "Ray workers, anvil), sampled every 0.5 s: shared pages count once per process, so it overstates.",
        "",
    ]
    for mode in ("default", "merkle"):
        v = d.get(f"at_1000_{mode}")
        if not v or v.get("round_s") is None:
            continue
        how = "measured" if v.get("measured") else "**extrapolated** from a straight line through the smaller sizes"
        gas = v.get("gas_ratio_1000_over_10")
        out += [
            f"Targets at 1,000 hospitals, ledger mode `{mode}` ({how}):",
            "",
            f"- one round at most 120 s: {v['round_s']:.1f} s steady (round 1: {v.get('round1_s') or 0:.1f} s) -> "
            f"{yes_no(v.get('meets_round_target'))}",
            f"- peak memory at most 8 GiB: {v['peak_gib']:.2f} GiB -> {yes_no(v.get('meets_memory_target'))}",
            "- gas per round at most 2x the gas at 10 hospitals: "
            + (f"{gas:.1f}x -> {yes_no(v.get('meets_gas_target'))}" if gas is not None else "n/a"),
            "",
        ]
    if not d.get("merkle_mode_available"):
        out += [
            "`ledger.mode=merkle` did not exist when this was measured: the default ledger records every "
            "hospital's signed commitment in `recordRound`, so its gas grows linearly with the hospitals "
            "(see *gas / hospital*); the 2x target needs the Merkle mode.",
            "",
        ]
    fl = d.get("flower_ms_per_client_message_measured_before")
    if fl:
        out += [
            f"Flower's own simulation overhead, measured before, is about {fl:.0f} ms per simulated client "
            f"message: at 1,000 hospitals and two messages per round (train, evaluate) that alone is about "
            f"{2 * 1000 * fl / 1000:.0f} s of every round.",
            "",
        ]
    if d.get("dominates"):
        out += ["What dominates:", ""] + [f"- {line}" for line in d["dominates"]] + [""]
    return out


def section_dp(d: dict[str, Any]) -> list[str]:
    how = f"torch {d.get('torch')}, {d.get('threads')} thread, median of {d.get('reps')} interleaved repetitions"
    out = [f"`python -m benchmarks.bench_dp` ({how}, one local epoch, batch 32).", ""]
    out += ["| model | data | non-private ms | DP (ew, default) ms | x | DP hooks ms | x | DP functorch ms | x |"]
    out += ["|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in d["rows"]:
        groups.setdefault((r["model"], r["data"]), {})[r["variant"]] = r
    for (model, data), v in groups.items():

        def c(name: str) -> str:
            r = v.get(name)
            return f"{r['median_ms']:.1f} | {r['ratio_vs_non_private']:.2f}" if r else "- | -"

        out.append(
            f"| {model} | {data} | {v['non-private']['median_ms']:.1f} | {c('dp-ew')} | {c('dp-hooks')} | {c('dp-functorch')} |"
        )
    acc = d.get("accountant_epsilon_ms_10_rounds_140_rows") or {}
    if acc:
        out += [
            "",
            "Accountant, epsilon after 10 rounds (140 rows): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in acc.items())
            + " (cached per history).",
        ]
    return out


def section_ckks(d: dict[str, Any]) -> list[str]:
    rows = d["rows"]
    out = [
        f"`python -m benchmarks.bench_ckks` ({rows[0]['hospitals']} hospitals, preset `{rows[0]['preset']}`).",
        "",
        "| parameters | ciphertexts / hospital | bytes / hospital | x float32 | encrypt s / hospital | "
        "aggregator validate + sum s | plaintext FedAvg s | decrypt s | max abs error |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['n_params']:,} | {r['ciphertexts_per_hospital']} | {r['bytes_per_hospital']:,} | "
            f"{r['expansion']:.1f} | {r['encrypt_s_per_hospital']:.3f} | "
            f"{r['validate_deserialize_s'] + r['sum_after_validate_s']:.3f} | {r['plaintext_fedavg_s']:.3f} | "
            f"{r['decrypt_s']:.3f} | {r['max_abs_error']:.1e} |"
        )
    return out


def section_gas(d: dict[str, Any]) -> list[str]:
    out = [
        f"`python -m benchmarks.bench_gas` (backend {d.get('backend')}, solc {str(d.get('solc', ''))[:6]}).",
        "",
        "| hospitals | gas round 1 | gas steady | calldata gas | latency s (median) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in d["studies"]:
        out.append(
            f"| {s['hospitals']} | {s['gas_round1']:,} | {s['gas_steady']:,} | {s['calldata_gas_steady']:,} | "
            f"{s['latency_s_median']:.3f} |"
        )
    m = d.get("merkle") or {}
    if m.get("studies"):
        out += [
            "",
            "Merkle mode (`ledger.mode=merkle`: one root per round, leaves and proofs in the round manifest):",
            "",
            "| hospitals | gas steady | calldata bytes | tree + proofs s (median) |",
            "|---:|---:|---:|---:|",
        ]
        for s in m["studies"]:
            out.append(
                f"| {s['hospitals']} | {s['gas_steady']:,} | {s['rounds'][-1]['calldata_bytes']:,} | "
                f"{s.get('tree_and_proofs_s_median', 0):.3f} |"
            )
        if m.get("ratio") is not None:
            out += ["", f"Merkle gas {m.get('ratio_of', '')}: {m['ratio']:.2f}x -> {yes_no(m.get('meets_target'))}."]
    f = d.get("fit") or {}
    if f:
        out += [
            "",
            f"Fit: gas = {f['base']:,} + {f['per_hospital']:,} x hospitals "
            f"(calldata {f['calldata_base']:,} + {f['calldata_per_hospital']:,} x hospitals); "
            f"target base <= 100k, slope <= 15k per hospital: {yes_no(f.get('meets_target'))}.",
        ]
    return out


def section_audit(d: dict[str, Any]) -> list[str]:
    size = f"{d['rounds']:,} rounds x {d['hospitals']} hospitals = {d['commitments']:,} signed commitments"
    out = [f"`python -m benchmarks.bench_audit` ({size}, signatures via {d.get('signature_backend')}).", ""]
    out += [
        "| part | seconds |",
        "|---|---:|",
        f"| recording the synthetic study (not audit) | {d['record_s']:.1f} |",
        f"| reading the chain | {d['chain_read_s']:.2f} |",
        f"| chain checks | {d['chain_checks_s']:.2f} |",
        f"| chain total | {d['chain_total_s']:.2f} |",
        f"| chain checks, reference signature path | {d['chain_checks_reference_signatures_s']:.2f} |",
        f"| artifact checks + CKKS re-sum per round | {d['artifact_checks_per_round_s']:.4f} |",
        f"| full audit{' (extrapolated from ' + str(d['resum_rounds_measured']) + ' rounds)' if d.get('extrapolated') else ''} | {d['full_audit_extrapolated_s']:.1f} |",
        "",
        f"Target (chain-only audit at most {d['target_chain_only_s']:.0f} s): {yes_no(d.get('meets_target'))}.",
        "",
        "What dominates: reading the round events from the chain and recovering each commitment's signer "
        "(one secp256k1 recovery per hospital per round); the artifact store's CKKS re-sum is small for small "
        "models.",
        "",
    ]
    if d.get("note"):
        out += [f"Note: {d['note']}", ""]
    return out


# What each cost is made of (profiles of earlier runs), closing its section of docs/BENCHMARKS.md.
DOMINATES = {
    "dp": (
        "per-sample gradients and clipping (Opacus), 2-3x a non-private epoch for these "
        "tiny models; for a whole round it is milliseconds, so in a study the accountant (prv: hundreds of ms "
        "per new history, once per hospital and round unless cached) and the fixed per-round costs matter more "
        "than DP-SGD itself."
    ),
    "ckks": (
        "bytes on the wire (about 4x float32 for large models; for a 31-parameter logreg "
        "one whole ciphertext, ~65 KB instead of 124 B) and, at the aggregator, deserialising and validating "
        "ciphertexts, which costs more than the homomorphic sum itself."
    ),
    "gas": (
        "per hospital, one signed EIP-712 commitment in calldata (~3.4k gas) and its "
        "on-chain `ecrecover` plus registration/consent/budget checks and storage of the cumulative epsilon "
        "(~11k gas); linear in the hospitals by design. The Merkle mode makes it flat (~99k gas) and moves the "
        "per-hospital checks to the auditor."
    ),
}


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], list[str]]]] = [
    ("1. Round overhead over plain Flower (4 hospitals)", "overhead", section_overhead),
    ("2. Scaling: 10, 100, 1,000 simulated hospitals, everything on", "scale", section_scale),
    ("3. DP-SGD local training", "dp", section_dp),
    ("4. CKKS encrypted aggregation", "ckks", section_ckks),
    ("5. Gas per recorded round", "gas", section_gas),
    ("6. Audit time", "audit", section_audit),
]


def render() -> str:
    lines = [
        "# Benchmarks",
        "",
        "Measured costs of FedLedger, side by side with what they are compared to. Every number on this page "
        "is generated by `python -m benchmarks.run_all` from `benchmarks/results/*.json`; nothing is typed in "
        "by hand. Timings come from a 2-core machine shared with other work, so read ratios, not absolute "
        "milliseconds.",
        "",
        "## How to run",
        "",
        "```bash",
        ". .venv/bin/activate",
        "python -m benchmarks.run_all                 # overhead + scaling (+ this page); make bench does the same",
        "python -m benchmarks.run_all --all           # also re-run DP, CKKS, gas and audit benchmarks (slow)",
        "python -m benchmarks.run_all --docs-only     # re-render this page from the JSON files",
        "python -m benchmarks.bench_overhead --rounds 20 --repeats 1",
        "python -m benchmarks.bench_overhead --workdir /tmp/ov --resume        # keep runs; rerun only missing ones",
        "python -m benchmarks.bench_overhead --workdir /tmp/ov --existing-only # summarise what finished",
        "python -m benchmarks.bench_scale --sizes 10,100,1000 --rounds 2",
        "python -m benchmarks.bench_scale --sizes 1000 --rounds 2 --merkle only --out /tmp/scale_1000.json",
        "python -m benchmarks.bench_scale --sizes 10,100 --rounds 2 --rows-from /tmp/scale_1000.json",
        "```",
        "",
        "A full `run_all` takes about 10 minutes for the overhead part (10 studies of 20 rounds) and about "
        "15 minutes for the scaling part (1,000 hospitals in both ledger modes are ~4 minutes each) on a "
        "2-core machine. The figures below were produced on 2026-12-02 by `bench_overhead --rounds 20` and one "
        "`bench_scale --sizes 10,100,1000 --rounds 2`; a run that did not finish would be listed in the JSON "
        "under `not_measured` or as `not finished`.",
        "",
    ]
    lines += section_targets(load("overhead"), load("scale"))
    for title, name, section in SECTIONS:
        d = load(name)
        lines += heading(
            f"{title} (benchmarks/results/{name}.json)",
            d,
            f"python -m benchmarks.bench_{name}",
        )
        if d:
            lines += section(d)
            if name in DOMINATES:
                lines += dominates(DOMINATES[name])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="also re-run the DP, CKKS, gas and audit benchmarks")
    ap.add_argument("--docs-only", action="store_true", help="only re-render docs/BENCHMARKS.md")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--overhead-rounds", type=int, default=20)
    ap.add_argument("--overhead-repeats", type=int, default=1)
    ap.add_argument("--scale-sizes", default="10,100,1000")
    ap.add_argument("--scale-rounds", type=int, default=2)
    ap.add_argument("--scale-timeout", type=float, default=1500.0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if not args.docs_only:
        if args.all:
            from benchmarks import bench_audit, bench_ckks, bench_dp, bench_gas

            for name, mod in (("dp", bench_dp), ("ckks", bench_ckks), ("gas", bench_gas), ("audit", bench_audit)):
                print(f"[run_all] bench_{name}", flush=True)
                mod.main([])
        if not args.skip_overhead:
            from benchmarks import bench_overhead

            prev = load("overhead") or {}
            bench_overhead.main(["--rounds", str(args.overhead_rounds), "--repeats", str(args.overhead_repeats)])
            _keep_notes("overhead", prev, ("profile",))
        if not args.skip_scale:
            from benchmarks import bench_scale

            prev = load("scale") or {}
            bench_scale.main(
                ["--sizes", args.scale_sizes, "--rounds", str(args.scale_rounds), "--timeout", str(args.scale_timeout)]
            )
            _keep_notes("scale", prev, ("dominates",))
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render())
    print(f"[run_all] wrote {DOC} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _keep_notes(name: str, prev: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Carry the hand-checked profiling notes (``profile``/``dominates``) over a re-run, marked as from before."""
    cur = load(name)
    if not cur:
        return
    changed = False
    for k in keys:
        if prev.get(k) and not cur.get(k):
            cur[k] = list(prev[k])
            cur[f"{k}_from_previous_run"] = True
            changed = True
    if changed:
        (RESULTS / f"{name}.json").write_text(json.dumps(cur, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
