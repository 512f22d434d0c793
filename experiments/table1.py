"""Table 1 as Markdown, CSV and HTML: every figure with its 95% noise interval and its cells' noise scale.

The CSV is long (one figure a line: row, column, value, pm95, noise_scale,
mechanism, exact); Markdown and HTML are wide (one column per stratum and
``overall``, per site when released), each cell ``value ± pm95``. With the
exact figures (docs, tests) each column gets its exact twin beside it.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TableCell:
    value: float
    pm95: float
    noise_scale: float
    exact: float | None = None


Table = dict[str, dict[str, TableCell]]  # row -> column -> cell


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "n/a"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 1 else f"{x:.1f}"


def _columns(table: Table) -> list[str]:
    cols: list[str] = []
    for cells in table.values():
        cols += [c for c in cells if c not in cols]
    return cols


def _wide(table: Table, with_exact: bool) -> tuple[list[str], list[list[str]]]:
    cols = _columns(table)
    header = ["figure", "noise scale"]
    for c in cols:
        header += [c, f"{c} (exact)"] if with_exact else [c]
    rows = []
    for row, cells in table.items():
        line = [row, _fmt(max(c.noise_scale for c in cells.values()))]
        for c in cols:
            cell = cells.get(c)
            line.append("" if cell is None else f"{_fmt(cell.value)} ± {_fmt(cell.pm95)}")
            if with_exact:
                line.append("" if cell is None or cell.exact is None else _fmt(cell.exact))
        rows.append(line)
    return header, rows


def write_table1(out_dir: Path, name: str, table: Table, meta: Mapping[str, str]) -> dict[str, Path]:
    """Write ``<name>.md``, ``.csv``, ``.html``; ``meta`` lines (mechanism, epsilon, sites...) head each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with_exact = any(c.exact is not None for cells in table.values() for c in cells.values())
    header, rows = _wide(table, with_exact)
    notes = [f"{k}: {v}" for k, v in meta.items()]
    md = [f"# {name}", "", *[f"- {n}" for n in notes], ""]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    paths = {"md": out_dir / f"{name}.md", "csv": out_dir / f"{name}.csv", "html": out_dir / f"{name}.html"}
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["row", "column", "value", "pm95", "noise_scale", "exact"])
        for row, cells in table.items():
            for col, c in cells.items():
                w.writerow(
                    [row, col, repr(c.value), repr(c.pm95), repr(c.noise_scale), "" if c.exact is None else c.exact]
                )
    esc = html.escape
    body = "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in r) + "</tr>\n" for r in rows)
    paths["html"].write_text(
        f"<!doctype html><meta charset='utf-8'><title>{esc(name)}</title><h1>{esc(name)}</h1>\n<ul>"
        + "".join(f"<li>{esc(n)}</li>" for n in notes)
        + "</ul>\n<table border='1' cellpadding='3'>\n<tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in header)
        + f"</tr>\n{body}</table>\n",
        encoding="utf-8",
    )
    return paths
