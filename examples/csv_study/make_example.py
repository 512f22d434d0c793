"""Regenerate the synthetic example CSVs of examples/csv_study/.

The rows are SYNTHETIC: random patients with the columns, value ranges and
coding of the UCI heart-disease multi-center data (Cleveland, Hungary,
Switzerland), made up here because this repository ships no patient data.
They only demonstrate the file format; replace them with your own files.

    python examples/csv_study/make_example.py     # deterministic (fixed seed)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
    "slope",
    "ca",
    "thal",
    "num",
]

# hospital -> (rows, seed, baseline risk shift, share of "?" in ca/thal/slope/chol)
HOSPITALS = {
    "cleveland": (200, 11, -0.8, 0.02),
    "hungary": (150, 12, -1.3, 0.04),
    "switzerland": (110, 13, 3.5, 0.03),  # every patient positive: single-class demo
}


def _patients(n: int, seed: int, shift: float, miss: float, all_positive: bool) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(54, 9, n), 28, 77).round()
    sex = (rng.random(n) < 0.7).astype(int)
    cp = rng.choice([1, 2, 3, 4], n, p=[0.08, 0.17, 0.28, 0.47])
    trestbps = np.clip(rng.normal(132, 17, n), 94, 200).round()
    chol = np.clip(rng.normal(245, 50, n), 120, 560).round()
    fbs = (rng.random(n) < 0.15).astype(int)
    restecg = rng.choice([0, 1, 2], n, p=[0.5, 0.1, 0.4])
    thalach = np.clip(rng.normal(150, 22, n) - 0.5 * (age - 54), 71, 202).round()
    exang = (rng.random(n) < 0.33).astype(int)
    oldpeak = np.clip(rng.gamma(1.2, 0.9, n), 0, 6.2).round(1)
    slope = rng.choice([1, 2, 3], n, p=[0.47, 0.46, 0.07])
    ca = rng.choice([0, 1, 2, 3], n, p=[0.58, 0.22, 0.13, 0.07])
    thal = rng.choice([3, 6, 7], n, p=[0.55, 0.06, 0.39])
    risk = (
        shift
        - 4.2
        + 0.04 * (age - 54)
        + 0.9 * sex
        + 1.1 * (cp == 4)
        + 0.8 * exang
        + 0.6 * oldpeak
        + 0.7 * ca
        + 1.0 * (thal == 7)
        - 0.02 * (thalach - 150)
        + rng.normal(0, 0.8, n)
        + 3.0
    )
    num = np.clip(np.floor(risk), 0, 4).astype(int)
    if all_positive:
        num = np.maximum(num, 1)
    rows = []
    for i in range(n):
        r = [
            int(age[i]),
            sex[i],
            cp[i],
            int(trestbps[i]),
            int(chol[i]),
            fbs[i],
            restecg[i],
            int(thalach[i]),
            exang[i],
            f"{oldpeak[i]:.1f}",
            slope[i],
            ca[i],
            thal[i],
            num[i],
        ]
        r = [str(v) for v in r]
        for col in ("chol", "slope", "ca", "thal"):
            if rng.random() < miss:
                r[COLUMNS.index(col)] = "?"
        rows.append(r)
    return rows


def main() -> None:
    for name, (n, seed, shift, miss) in HOSPITALS.items():
        rows = _patients(n, seed, shift, miss, all_positive=(name == "switzerland"))
        text = ",".join(COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        (HERE / f"{name}.csv").write_text(text, encoding="utf-8")
        pos = sum(int(r[-1]) > 0 for r in rows)
        print(f"{name}.csv: {n} rows, {pos} positive (num > 0)")


if __name__ == "__main__":
    main()
