"""Regenerate the survival example CSVs of examples/survival_csv/ from lifelines' GBSG2 data.

GBSG2 (German Breast Cancer Study Group 2, 686 patients) ships with lifelines,
no download: recurrence-free survival in days (``time``) with its event flag
(``cens``: 1 = recurrence or death observed, 0 = censored). This script deals
the real rows out to three made-up "hospitals" of unequal size (a fixed
shuffle, seed 0): the split is illustrative, the rows are GBSG2's own. The
columns are renamed to the schema's (``days``, ``event``) and written as text.

    python examples/survival_csv/make_example.py     # deterministic (fixed seed)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lifelines.datasets import load_gbsg2

HERE = Path(__file__).resolve().parent
SITES = {"university_clinic": 0.45, "city_hospital": 0.33, "county_hospital": 0.22}  # share of the rows
COLUMNS = ["age", "tsize", "pnodes", "progrec", "estrec", "horTh", "menostat", "tgrade", "days", "event"]


def main() -> None:
    data = load_gbsg2().rename(columns={"time": "days", "cens": "event"})[COLUMNS]
    order = np.random.default_rng(0).permutation(len(data))
    cuts = np.cumsum([round(share * len(data)) for share in SITES.values()])[:-1]
    for site, rows in zip(SITES, np.split(order, cuts)):
        data.iloc[np.sort(rows)].to_csv(HERE / f"{site}.csv", index=False)
        print(f"{site}.csv: {len(rows)} rows, {int(data.iloc[rows]['event'].sum())} events")


if __name__ == "__main__":
    main()
