"""Regulator alerts on statistics queries (``fedledger audit --follow``): differencing, budget, membership.

- *Repeated narrow cohort*: one requester asks about the same cohort filter
  ``repeat_limit`` times or more (rare-disease patients asked for again and
  again: each answer spends budget, and averages wear the noise down).
- *Differencing*: two queries of one requester whose cohorts differ in one
  filter only, one range inside the other, by a slice narrower than
  ``slice_share`` of the wider range: subtracting the answers isolates the
  few records in that slice.
- *Near budget*: a hospital's signed composed total reaches ``alert_share``
  of its budget with a query.
- *Outsider*: the requester is not a member of the study (its aggregator,
  its hospitals, or an address the regulator names with ``--member``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fedledger.hashing import to_hex
from fedledger.stats.query import CohortFilter, StatsQuery
from ledger.audit.queries import QueryView
from ledger.audit.records import ChainView


def _columns(q: StatsQuery) -> tuple[Any, ...]:
    m = q.to_mapping()
    return (repr(m["numeric"]), repr(m["categorical"]), repr(m["strata"]), repr(m["survival"]))


def _cohort_key(q: StatsQuery) -> tuple[tuple[str, float, float], ...]:
    return tuple(sorted((f.column, f.lo, f.hi) for f in q.cohort))


def _slice(a: Sequence[CohortFilter], b: Sequence[CohortFilter], slice_share: float) -> str | None:
    """The slice two cohorts differ by when it is one narrow filter difference, else None."""
    fa, fb = {f.column: f for f in a}, {f.column: f for f in b}
    if set(fa) != set(fb):
        return None
    diff = [c for c in fa if (fa[c].lo, fa[c].hi) != (fb[c].lo, fb[c].hi)]
    if len(diff) != 1:
        return None
    x, y = fa[diff[0]], fb[diff[0]]
    wide, narrow = (x, y) if x.hi - x.lo >= y.hi - y.lo else (y, x)
    if not (wide.lo <= narrow.lo and narrow.hi <= wide.hi):
        return None
    width = (wide.hi - wide.lo) - (narrow.hi - narrow.lo)
    if wide.hi - wide.lo <= 0 or width > slice_share * (wide.hi - wide.lo):
        return None
    return f"{diff[0]} [{wide.lo:g}, {wide.hi:g}] vs [{narrow.lo:g}, {narrow.hi:g}]"


def differencing_alerts(queries: Iterable[QueryView], repeat_limit: int = 3, slice_share: float = 0.1) -> list[str]:
    """Alert lines for repeated narrow cohorts and differencing pairs, per requester (module docstring)."""
    out: list[str] = []
    by_requester: dict[str, list[tuple[QueryView, StatsQuery]]] = {}
    for qv in queries:
        q = qv.query()
        if q is not None:
            by_requester.setdefault(qv.requester, []).append((qv, q))
    for requester, qs in by_requester.items():
        counts: dict[tuple[Any, ...], int] = {}
        for qv, q in qs:
            if not q.cohort:
                continue
            key = (_cohort_key(q), _columns(q))
            counts[key] = counts.get(key, 0) + 1
            if counts[key] == repeat_limit:
                cohort = ", ".join(f"{c} [{lo:g}, {hi:g}]" for c, lo, hi in key[0])
                out.append(
                    f"requester {requester} asked for the same cohort ({cohort}) {repeat_limit} times "
                    f"(latest: block {qv.block}, purpose {qv.purpose!r})"
                )
        for i, (qa, a) in enumerate(qs):
            for qb, b in qs[i + 1 :]:
                if _columns(a) != _columns(b) or not a.cohort:
                    continue
                cut = _slice(a.cohort, b.cohort, slice_share)
                if cut is not None:
                    out.append(
                        f"differencing pattern: requester {requester}'s queries {to_hex(qa.query_hash)[:12]}.. "
                        f"and {to_hex(qb.query_hash)[:12]}.. differ only by the narrow slice {cut}"
                    )
    return out


def budget_alerts(view: ChainView, alert_share: float = 0.8) -> list[str]:
    """A hospital's signed total reaching ``alert_share`` of its budget with a query (once per hospital)."""
    out, done = [], set()
    for qv in view.queries:
        for cv in qv.charges:
            hv = view.hospitals.get(cv.hospital)
            if hv is None or cv.hospital in done or hv.budget_micro <= 0 or hv.budget_micro >= 2**64 - 1:
                continue
            share = cv.charge.total_epsilon_micro / hv.budget_micro
            if share >= alert_share:
                done.add(cv.hospital)
                out.append(
                    f"query {to_hex(qv.query_hash)[:12]}.. brings hospital {view.label(cv.hospital)} to epsilon "
                    f"{cv.charge.total_epsilon_micro / 1e6:.3f} of its budget {hv.budget_micro / 1e6:.3f} ({share:.0%})"
                )
    return out


def membership_alerts(view: ChainView, members: Iterable[str] = ()) -> list[str]:
    """Queries whose requester is neither the aggregator, a hospital, nor a named member."""
    allowed = {view.aggregator.lower(), *(a.lower() for a in view.hospitals), *(m.lower() for m in members)}
    return [
        f"requester {qv.requester} of query {to_hex(qv.query_hash)[:12]}.. (block {qv.block}, purpose {qv.purpose!r}) "
        "does not belong to the study"
        for qv in view.queries
        if qv.requester.lower() not in allowed
    ]


def query_alerts(
    view: ChainView, members: Iterable[str] = (), alert_share: float = 0.8, repeat_limit: int = 3
) -> list[str]:
    """Every query alert line of the view, in a stable order (follow prints the new ones)."""
    return (
        differencing_alerts(view.queries, repeat_limit)
        + budget_alerts(view, alert_share)
        + membership_alerts(view, members)
    )
