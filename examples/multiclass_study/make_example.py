"""Regenerate the synthetic multiclass example CSVs of examples/multiclass_study/.

The rows are SYNTHETIC: made-up patients of three liver clinics, each with a
liver fibrosis stage 0-4 (F0 none ... F4 cirrhosis) and routine measurements
whose typical values shift with the stage the way the clinical literature
describes (AST up, platelets and albumin down, older patients, more diabetes).
The clinics differ in case mix: a tertiary hepatology centre sees advanced
stages, a community clinic mostly early ones. No real patient is in here;
the files only show a multiclass study's format.

    python examples/multiclass_study/make_example.py     # deterministic (fixed seed)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
COLUMNS = ["age", "sex", "bmi", "ast", "alt", "platelets", "albumin", "diabetes", "alcohol", "stage"]
ALCOHOL = ("none", "moderate", "heavy")

# clinic -> (rows, seed, share of each stage F0..F4, share of "?" in alt / albumin)
CLINICS = {
    "tertiary_centre": (240, 21, (0.12, 0.18, 0.25, 0.22, 0.23), 0.03),
    "community_clinic": (180, 22, (0.40, 0.30, 0.15, 0.10, 0.05), 0.02),
    "regional_hospital": (150, 23, (0.22, 0.25, 0.22, 0.16, 0.15), 0.04),
}


def _patients(n: int, seed: int, stages: tuple[float, ...], miss: float) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    stage = rng.choice(5, n, p=stages)
    age = np.clip(45 + 4 * stage + rng.normal(0, 10, n), 18, 88).round()
    sex = (rng.random(n) < 0.55).astype(int)
    bmi = np.clip(27 + 0.8 * stage + rng.normal(0, 4.5, n), 16, 55).round(1)
    ast = np.clip(np.exp(np.log(26) + 0.28 * stage + rng.normal(0, 0.35, n)), 8, 900).round()
    alt = np.clip(np.exp(np.log(30) + 0.12 * stage + rng.normal(0, 0.45, n)), 6, 900).round()
    platelets = np.clip(265 - 28 * stage + rng.normal(0, 45, n), 35, 520).round()
    albumin = np.clip(44 - 1.6 * stage + rng.normal(0, 3.5, n), 20, 55).round(1)
    diabetes = np.where(rng.random(n) < 0.08 + 0.08 * stage, "yes", "no")
    heavy = 0.05 + 0.05 * stage
    alcohol = [ALCOHOL[rng.choice(3, p=(0.6 - h, 0.4, h))] for h in heavy]
    rows = []
    for i in range(n):
        r = [int(age[i]), sex[i], f"{bmi[i]:.1f}", int(ast[i]), int(alt[i]), int(platelets[i])]
        r += [f"{albumin[i]:.1f}", diabetes[i], alcohol[i], stage[i]]
        r = [str(v) for v in r]
        for col in ("alt", "albumin"):
            if rng.random() < miss:
                r[COLUMNS.index(col)] = "?"
        rows.append(r)
    return rows


def main() -> None:
    for name, (n, seed, stages, miss) in CLINICS.items():
        rows = _patients(n, seed, stages, miss)
        text = ",".join(COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in rows)
        (HERE / f"{name}.csv").write_text(text, encoding="utf-8")
        counts = np.bincount([int(r[-1]) for r in rows], minlength=5).tolist()
        print(f"{name}.csv: {n} rows, stages F0-F4 {counts}")


if __name__ == "__main__":
    main()
