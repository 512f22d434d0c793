"""Split the rows of one pooled data set into N hospitals.

Partitioners (``dataset.partitioner``):

* ``iid``       - random permutation cut into N near-equal parts.
* ``dirichlet`` - label skew: for every class, its rows are divided among the
  hospitals with proportions drawn from Dirichlet(``alpha``). Small alpha
  (0.1) gives strongly skewed hospitals, large alpha (100) is close to iid.
* ``quantity``  - size skew: hospital sizes follow proportions drawn from
  Dirichlet(``quantity_alpha``), on top of ``min_rows`` per hospital; rows are
  assigned at random, so label mix stays close to the pooled one.
* ``bootstrap`` - FOR SCALE BENCHMARKS ONLY: each hospital draws
  ``rows_per_hospital`` rows WITH replacement from the pooled data
  (deterministic in ``seed`` and the hospital index). Hospitals share
  patients and a hospital may hold the same patient twice (even in both its
  train and test split), so its accuracy figures mean nothing; it exists
  because 569 patients cannot be split over 1,000 hospitals.
* ``by_column`` - real centers: data that carries a site column (``dataset=lung``:
  ``inst``) is split by its values, one hospital per center
  (:func:`partition_by_column`); centers under ``min_site_rows`` rows are merged
  into one hospital, and ``num_hospitals`` follows from the column.

All partitioners except ``bootstrap`` are deterministic in ``seed``, put every row in exactly one
hospital and give every hospital at least ``min_rows`` rows (``dirichlet``
resamples deterministically until that holds, up to ``max_tries`` times, and
then tops up the short hospitals from the largest ones, with a warning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import PartitionError
from .preprocess import warn

PARTITIONERS = ("iid", "dirichlet", "quantity", "bootstrap")


def _check(n_rows: int, num_hospitals: int, min_rows: int) -> None:
    if num_hospitals < 1:
        raise PartitionError(f"num_hospitals must be >= 1, got {num_hospitals}")
    if min_rows < 0:
        raise PartitionError(f"min_rows must be >= 0, got {min_rows}")
    if num_hospitals * min_rows > n_rows:
        raise PartitionError(
            f"cannot give {num_hospitals} hospitals at least min_rows={min_rows} rows each: "
            f"the data set has only {n_rows} rows (lower min_rows or num_hospitals)"
        )


def partition_iid(n_rows: int, num_hospitals: int, seed: int, min_rows: int = 0) -> list[np.ndarray]:
    """Random permutation cut into ``num_hospitals`` near-equal parts."""
    _check(n_rows, num_hospitals, min_rows)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_rows)
    return [np.sort(p) for p in np.array_split(perm, num_hospitals)]


def partition_quantity(
    n_rows: int, num_hospitals: int, seed: int, quantity_alpha: float = 1.0, min_rows: int = 0
) -> list[np.ndarray]:
    """Quantity skew: sizes = min_rows + Multinomial(rest, Dirichlet(quantity_alpha))."""
    _check(n_rows, num_hospitals, min_rows)
    if not quantity_alpha > 0:
        raise PartitionError(f"quantity_alpha must be > 0, got {quantity_alpha}")
    rng = np.random.default_rng(seed)
    props = rng.dirichlet(np.full(num_hospitals, float(quantity_alpha)))
    rest = n_rows - num_hospitals * min_rows
    sizes = min_rows + rng.multinomial(rest, props)
    perm = rng.permutation(n_rows)
    bounds = np.cumsum(sizes)[:-1]
    return [np.sort(p) for p in np.split(perm, bounds)]


def partition_dirichlet(
    labels: Sequence | np.ndarray,
    num_hospitals: int,
    seed: int,
    alpha: float = 0.5,
    min_rows: int = 0,
    max_tries: int = 200,
) -> list[np.ndarray]:
    """Label skew: each class split over hospitals by Dirichlet(alpha) proportions.

    Resamples (same RNG stream, so still deterministic) until every hospital
    has at least ``min_rows`` rows; after ``max_tries`` failed samples it moves
    random rows from the largest hospitals to the short ones (DataWarning).
    """
    labels = np.asarray(labels)
    n_rows = len(labels)
    _check(n_rows, num_hospitals, min_rows)
    if not alpha > 0:
        raise PartitionError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    cap = n_rows / num_hospitals
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_hospitals)]
        for c in classes:
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            props = rng.dirichlet(np.full(num_hospitals, float(alpha)))
            # Hospitals already holding their fair share get no more rows of
            # this class (standard trick, keeps sizes from collapsing).
            sizes_now = np.array([len(p) for p in parts])
            props = props * (sizes_now < cap)
            if props.sum() <= 0:
                props = np.full(num_hospitals, 1.0 / num_hospitals)
            props = props / props.sum()
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for h, chunk in enumerate(np.split(idx, cuts)):
                parts[h].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_rows:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    # No sample met min_rows (e.g. alpha=0.1 with many hospitals): keep the
    # last sample's skew and top up small hospitals with random rows taken
    # from the largest ones. Still deterministic in seed.
    short = [h for h, p in enumerate(parts) if len(p) < min_rows]
    warn(
        f"dirichlet partition (alpha={alpha}): no sample in {max_tries} tries gave every hospital "
        f"min_rows={min_rows} rows; topped up hospitals {short} with rows from the largest ones"
    )
    for h in short:
        while len(parts[h]) < min_rows:
            donor = int(np.argmax([len(p) for p in parts]))
            j = int(rng.integers(len(parts[donor])))
            parts[h].append(parts[donor].pop(j))
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition_bootstrap(
    n_rows: int, num_hospitals: int, seed: int, rows_per_hospital: int = 40, min_rows: int = 0
) -> list[np.ndarray]:
    """Scale benchmarks only: each hospital draws ``rows_per_hospital`` rows with replacement.

    Hospital ``h`` uses its own stream ``default_rng([seed, h])``, so its rows
    do not depend on ``num_hospitals``. Rows are returned sorted (duplicates kept).
    """
    if num_hospitals < 1:
        raise PartitionError(f"num_hospitals must be >= 1, got {num_hospitals}")
    if n_rows < 1:
        raise PartitionError("bootstrap partition needs a non-empty data set")
    if rows_per_hospital < max(1, min_rows):
        raise PartitionError(f"rows_per_hospital={rows_per_hospital} must be >= max(1, min_rows={min_rows})")
    return [bootstrap_rows(n_rows, h, seed, rows_per_hospital) for h in range(num_hospitals)]


def bootstrap_rows(n_rows: int, index: int, seed: int, rows_per_hospital: int) -> np.ndarray:
    """Hospital ``index``'s bootstrap rows alone (what a simulated hospital loads: O(1), not O(N))."""
    return np.sort(np.random.default_rng([int(seed), int(index)]).integers(0, n_rows, size=int(rows_per_hospital)))


def partition(
    labels: Sequence | np.ndarray,
    num_hospitals: int,
    seed: int,
    method: str = "iid",
    alpha: float = 0.5,
    quantity_alpha: float = 1.0,
    min_rows: int = 10,
    rows_per_hospital: int = 40,
) -> list[np.ndarray]:
    """Dispatch to a partitioner by name. Returns sorted row indices per hospital."""
    n_rows = len(labels)
    if method == "iid":
        return partition_iid(n_rows, num_hospitals, seed, min_rows=min_rows)
    if method == "dirichlet":
        return partition_dirichlet(labels, num_hospitals, seed, alpha=alpha, min_rows=min_rows)
    if method == "quantity":
        return partition_quantity(n_rows, num_hospitals, seed, quantity_alpha=quantity_alpha, min_rows=min_rows)
    if method == "bootstrap":
        return partition_bootstrap(n_rows, num_hospitals, seed, rows_per_hospital=rows_per_hospital, min_rows=min_rows)
    if method == "by_column":
        raise PartitionError(
            "partitioner=by_column splits by a site column; only data sets that carry one support it "
            "(dataset=lung: its 'inst' column)"
        )
    raise PartitionError(f"unknown partitioner {method!r}; choose one of {', '.join(PARTITIONERS)}")


def partition_with(labels: Sequence | np.ndarray, num_hospitals: int, seed: int, opts: dict) -> list[np.ndarray]:
    """:func:`partition` with a built-in data set's options (``partitioner``, ``alpha``, ...)."""
    return partition(
        labels,
        int(num_hospitals),
        int(seed),
        method=opts["partitioner"],
        alpha=float(opts["alpha"]),
        quantity_alpha=float(opts["quantity_alpha"]),
        min_rows=int(opts["min_rows"]),
        rows_per_hospital=int(opts.get("rows_per_hospital", 40)),
    )


def partition_by_column(
    sites: Sequence | np.ndarray, min_site_rows: int = 10, prefix: str = "site"
) -> tuple[list[str], list[np.ndarray]]:
    """One hospital per value of a site column: ``(hospital ids, sorted row indices)``, in sorted site order.

    Centers with fewer than ``min_site_rows`` rows are merged into one last
    hospital ``<prefix>_small`` (named in a warning), so no hospital trains on a
    handful of patients; a merged group still under ``min_site_rows`` rows is
    refused. Rows whose site is missing (NaN/None) belong to no center and are
    refused: the caller drops them first, saying so.
    """
    values = np.asarray(sites, dtype=object)
    missing = [i for i, v in enumerate(values) if v is None or (isinstance(v, float) and np.isnan(v))]
    if missing:
        raise PartitionError(f"{len(missing)} row(s) have no site value (rows {missing[:5]}); drop them first")
    if min_site_rows < 1:
        raise PartitionError(f"min_site_rows must be >= 1, got {min_site_rows}")
    labels = np.asarray([_site_name(v) for v in values])
    names, counts = np.unique(labels, return_counts=True)
    order = sorted(range(len(names)), key=lambda i: _site_key(values[np.flatnonzero(labels == names[i])[0]]))
    ids: list[str] = []
    parts: list[np.ndarray] = []
    small: list[str] = []
    for i in order:
        if counts[i] >= min_site_rows:
            ids.append(f"{prefix}_{names[i]}")
            parts.append(np.flatnonzero(labels == names[i]))
        else:
            small.append(str(names[i]))
    if small:
        rows = np.flatnonzero(np.isin(labels, small))
        if len(rows) < min_site_rows:
            raise PartitionError(
                f"centers {small} have fewer than min_site_rows={min_site_rows} rows each and only {len(rows)} "
                "together; lower dataset.min_site_rows"
            )
        warn(
            f"{prefix} centers {small} have fewer than min_site_rows={min_site_rows} rows each; "
            f"merged into one hospital {prefix}_small ({len(rows)} rows)"
        )
        ids.append(f"{prefix}_small")
        parts.append(rows)
    if not parts:
        raise PartitionError("the site column holds no rows")
    return ids, parts


def _site_name(value: object) -> str:
    """A site value as an id part: integral floats (lung's ``inst`` 3.0) as integers."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _site_key(value: object) -> tuple[int, float, str]:
    """Numeric sites in numeric order, then the others by name."""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (0, float(value), "")
    return (1, 0.0, str(value))
