"""DP-SGD local training time vs non-private training, side by side.

    python -m benchmarks.bench_dp [--reps 15] [--threads 1]

Same model, data (breast cancer, standardized; ~140 rows = one of 4 hospitals,
and all 455 train rows), batch size 32 and one local epoch. Every repetition
runs the non-private round and each DP variant back to back (interleaved), so
load from other processes hits all of them alike; medians are reported.
DP variants: each Opacus grad-sample mode (hooks, functorch, ew) through
``train_local`` (fast in-memory Poisson sampler), plus hooks with Opacus's
DPDataLoader to show the data-loading overhead. The accountant's epsilon is
timed separately (it is cached per history, so repeated rounds do not pay it).

Writes benchmarks/results/dp.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from fedledger.config import DEFAULT_GRAD_SAMPLE_MODE, GRAD_SAMPLE_MODES, PrivacyConfig, TrainConfig
from fedledger.dp.epsilon import compute_epsilon
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model
from fl_client.training import train_local

RESULTS = Path(__file__).parent / "results" / "dp.json"
BATCH = 32


class _RowDataset(Dataset):  # a plain map-style dataset: forces Opacus's DPDataLoader path
    def __init__(self, X, y):
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def _data():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X_tr, _, y_tr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_tr = StandardScaler().fit_transform(X_tr).astype(np.float32)
    return X_tr, y_tr.astype(np.float32)


def _privacy(n, mode):
    return HospitalPrivacy(PrivacyConfig(enabled=True, noise_multiplier=1.0, grad_sample_mode=mode), n, BATCH, 10, 1)


def _run_plain(name, X, y, seed):
    train_local(build_model(name, X.shape[1]), X, y, TrainConfig(local_epochs=1, batch_size=BATCH, lr=0.1), seed)


def _run_dp(name, X, y, seed, mode):
    train_local(
        build_model(name, X.shape[1]),
        X,
        y,
        TrainConfig(local_epochs=1, batch_size=BATCH, lr=0.1),
        seed,
        _privacy(len(X), mode),
    )


def _run_dp_dataloader(name, X, y, seed):
    """hooks, but data through a DataLoader -> Opacus DPDataLoader (the make_private default path)."""
    model = build_model(name, X.shape[1])
    privacy = _privacy(len(X), "hooks")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(_RowDataset(X, y), batch_size=BATCH)
    dp_model, dp_opt, dp_loader = privacy.attach(model, opt, loader, generator=torch.Generator().manual_seed(seed))
    try:
        for xb, yb in dp_loader:
            dp_opt.zero_grad()
            out = dp_model(xb)
            loss = F.binary_cross_entropy_with_logits(out, yb) if len(xb) else (out * 0).sum()
            loss.backward()
            dp_opt.step()
    finally:
        privacy.detach(dp_model)
    privacy.epsilon()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    X_all, y_all = _data()
    datasets = {"hospital (140 rows)": (X_all[:140], y_all[:140]), "all train (455 rows)": (X_all, y_all)}
    rows = []
    for name in ("logreg", "mlp"):
        for data_label, (X, y) in datasets.items():
            variants = {"non-private": lambda s: _run_plain(name, X, y, s)}
            for mode in GRAD_SAMPLE_MODES:
                variants[f"dp-{mode}"] = lambda s, m=mode: _run_dp(name, X, y, s, m)
            variants["dp-hooks+DPDataLoader"] = lambda s: _run_dp_dataloader(name, X, y, s)
            for fn in variants.values():  # warm-up (imports, caches, accountant for this history)
                fn(0)
            times = {k: [] for k in variants}
            for rep in range(args.reps):
                for k, fn in variants.items():
                    t0 = time.perf_counter()
                    fn(rep)
                    times[k].append(time.perf_counter() - t0)
            base = statistics.median(times["non-private"])
            steps = max(1, len(X) // BATCH)
            for k, ts in times.items():
                med = statistics.median(ts)
                rows.append(
                    {
                        "model": name,
                        "data": data_label,
                        "rows": len(X),
                        "batch_size": BATCH,
                        "steps": steps,
                        "variant": k,
                        "median_ms": round(1000 * med, 2),
                        "ratio_vs_non_private": round(med / base, 2),
                    }
                )
    acc = {}
    for accountant in ("prv", "rdp", "gdp"):
        t0 = time.perf_counter()
        from fedledger.dp.epsilon import _MEMO, _compute_epsilon_cached

        _compute_epsilon_cached.cache_clear()
        _MEMO.clear()
        compute_epsilon(accountant, [(1.0, BATCH / 140, 40)], 1e-5)
        acc[accountant] = round(1000 * (time.perf_counter() - t0), 1)
    result = {
        "default_grad_sample_mode": DEFAULT_GRAD_SAMPLE_MODE,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "reps": args.reps,
        "rows": rows,
        "accountant_epsilon_ms_10_rounds_140_rows": acc,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return result


def table(result: dict) -> str:
    lines = [
        "| model | data | variant | median ms / round | ratio vs non-private |",
        "|---|---|---|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['data']} | {r['variant']} | {r['median_ms']:.1f} | {r['ratio_vs_non_private']:.2f}x |"
        )
    acc = result["accountant_epsilon_ms_10_rounds_140_rows"]
    lines.append("")
    lines.append("Accountant, one epsilon evaluation (uncached): " + ", ".join(f"{k} {v} ms" for k, v in acc.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
