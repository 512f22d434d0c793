"""The live per-round table in the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from fedledger.tasks import task_kind
from fl_server.intervals import wilson
from fl_server.round_protocol import RoundOutcome


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _why(rejected: dict[str, Any]) -> str:
    """A refusal by its code (the reason's prefix, ``code: reason``, as validation writes it), else the kind."""
    return str(rejected["reason"]).split(":", 1)[0] if rejected["kind"] == "refusal" else str(rejected["kind"])


def _ci(o: RoundOutcome) -> str:
    """Wilson interval of the round's accuracy over every evaluated patient (the sample-weighted accuracy is theirs)."""
    n = sum(int(m.get("num-examples") or 0) for m in o.per_hospital.values())
    ci = wilson(o.metrics.get("accuracy"), n)
    return "n/a" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"


class RoundTable:
    """Prints one row per finished round, so a long study shows progress as it goes.

    Its metric columns are the study task's (fedledger/tasks.py), then the loss;
    accuracy is followed by its Wilson interval over every evaluated patient.
    """

    def __init__(self, num_rounds: int, console: Console | None = None, task: str = "binary") -> None:
        self.num_rounds = num_rounds
        self.console = console or Console(stderr=False)
        self._header_done = False
        self.metrics = [*task_kind(task).metrics[1:], "loss"]

    def _table(self, header: bool) -> Table:
        t = Table(show_header=header, box=None, pad_edge=False)
        metric_columns = [(m, max(6, len(m))) for m in self.metrics]
        if "accuracy" in self.metrics:
            metric_columns.insert(self.metrics.index("accuracy") + 1, ("95% CI", 11))
        for name, width in (
            ("round", 7),
            ("hospitals", 9),
            *metric_columns,
            ("max eps", 7),
            ("KiB/hosp", 9),
            ("time s", 6),
            ("ledger tx", 14),
            ("rejected", 40),
        ):
            t.add_column(name, min_width=width, max_width=max(width, 40), no_wrap=True)
        return t

    def __call__(self, o: RoundOutcome) -> None:
        t = self._table(not self._header_done)
        self._header_done = True
        eps = max((p.get("epsilon", 0.0) for p in o.privacy.values()), default=None)
        tx = (o.ledger or {}).get("tx")
        rejected = (
            ", ".join(
                [f"{r['hospital']} ({_why(r)})" for r in o.rejected]
                + [f"{r['hospital']} (evaluate: {_why(r)})" for r in o.evaluation_rejected]
            )
            or "-"
        )
        values = [_fmt(o.metrics.get(m)) for m in self.metrics]
        if "accuracy" in self.metrics:
            values.insert(self.metrics.index("accuracy") + 1, _ci(o))
        t.add_row(
            f"{o.server_round}/{self.num_rounds}",
            str(len(o.participants)),
            *values,
            _fmt(eps, 2),
            f"{o.bytes_per_hospital / 1024:.1f}",
            f"{o.duration_s:.1f}",
            (tx[:12] + "..") if tx else "-",
            rejected,
        )
        self.console.print(t)
