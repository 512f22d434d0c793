"""Audit reports: a rich terminal table, a JSON verdict, a self-contained HTML page with plots.

The HTML has no external resources: the plots (epsilon per hospital over
rounds against each budget, participants per round) are PNGs embedded as
base64 data URIs, so the file can be archived or mailed as the audit record.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from ledger.audit.result import AuditResult

#: Column groups of the terminal table (check names in each group).
GROUPS = {
    "chain": ("study", "hash_chain"),
    "commit": ("signature", "binding", "registered", "consent", "expiry", "samples", "start_model"),
    "priv": ("budget", "privacy", "accounting"),
    "store": ("context", "manifest", "protocol", "participants", "blobs", "update_hash"),
    "resum": ("resum",),
    "ckpt": ("checkpoint",),
}
MAX_TABLE_ROWS = 40


def _short(name: str | None, n: int = 12) -> str:
    if not name:
        return "-"
    if " (" in name:  # "hospital_0 (0xabc...)" -> "hospital_0"
        return name.split(" (")[0]
    return name[:n] + ".." if name.startswith("0x") and len(name) > n else name


def _mark(status: str | None) -> str:
    return {"pass": "[green]ok[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}.get(status or "", "[dim]-[/]")


def group_status(checks: dict[str, str], group: tuple[str, ...]) -> str | None:
    seen = [checks[c] for c in group if c in checks]
    if not seen:
        return None
    if "fail" in seen:
        return "fail"
    return "skip" if all(s == "skip" for s in seen) else "pass"


def _recomputed_line(j: dict[str, Any]) -> str:
    """Each hospital's last epsilon recomputed from the registered protocol next to the one it committed."""
    parts = []
    recomputed = (j.get("epsilon_accounting") or {}).get("recomputed") or {}
    for addr, h in j["hospitals"].items():
        table = recomputed.get(addr)
        if table:
            last = max(table, key=int)
            committed = (h.get("epsilon") or {}).get(last)
            shown = "-" if committed is None else f"{committed:.3f}"
            parts.append(f"{_short(h.get('label') or addr)} {table[last]:.3f}/{shown}")
    return ", ".join(parts)


def print_report(result: AuditResult | dict[str, Any], console: Any = None) -> None:
    """The per-round table, each failure (round, hospital, check, message), and the verdict."""
    console = console or Console()
    j = result.to_json() if isinstance(result, AuditResult) else result
    rows = j["rounds"]
    show = rows
    if len(rows) > MAX_TABLE_ROWS:
        head, tail = rows[:5], rows[-5:]
        show = head + [r for r in rows[5:-5] if not r["ok"]][: MAX_TABLE_ROWS - 10] + tail
    table = Table(
        title=f"audit of study {j['study_id'][:18]}.. on chain {j['chain_id']} ({j['contract']})",
        show_lines=False,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )

    def col(name: str, justify: str = "right") -> None:
        table.add_column(name, justify=justify, min_width=len(name), no_wrap=True)

    col("round")
    col("block")
    col("hosp")
    col("samples")
    groups = [g for g in GROUPS if any(group_status(r["checks"], GROUPS[g]) for r in rows)]
    for g in groups:
        col(g, "center")
    col("verdict", "center")
    for r in show:
        table.add_row(
            str(r["round"]),
            str(r["block"] if r["block"] is not None else "-"),
            str(r["n_participants"]),
            str(r["total_samples"] if r["total_samples"] is not None else "-"),
            *[_mark(group_status(r["checks"], GROUPS[g])) for g in groups],
            "[green]PASS[/]" if r["ok"] else "[bold red]FAIL[/]",
        )
    console.print(table)
    if len(show) < len(rows):
        console.print(f"[dim]({len(rows) - len(show)} passing rounds not shown; see the JSON/HTML report)[/]")
    study_wide = [f for f in j["failures"] if f["round"] is None]
    for f in study_wide + [f for f in j["failures"] if f["round"] is not None]:
        where = f"round {f['round']}" if f["round"] is not None else "study"
        label = (j["hospitals"].get(f["hospital"]) or {}).get("label") if f["hospital"] else None
        who = f" hospital {label or f['hospital']}" if f["hospital"] else ""
        console.print(
            f"[red]FAIL[/] {where}{who} [bold]{f['check']}[/]: {html.unescape(f['message'])}",
            highlight=False,
            markup=True,
        )
    for n in j.get("notices", []):
        console.print(f"[yellow]notice[/] {n}")
    accounting = j.get("epsilon_accounting") or {}
    if accounting.get("status") == "skipped":
        console.print(f"[yellow]notice[/] epsilon accounting not checked: {accounting.get('reason')}", highlight=False)
    eps_line = ", ".join(
        f"{_short(h.get('label') or a)} {h['final_epsilon']:.3f}"
        + (f"/{h['budget']:.3f}" if h.get("budget") is not None else "")
        for a, h in j["hospitals"].items()
    )
    if eps_line:
        console.print(f"epsilon spent/budget: {eps_line}")
    recomputed = _recomputed_line(j)
    if recomputed:
        console.print(f"epsilon recomputed/committed: {recomputed}")
    counts = ", ".join(
        f"{k} {v['pass']}/{v['pass'] + v['fail']}" for k, v in j["checks"].items() if v["pass"] + v["fail"]
    )
    console.print(f"checks passed: {counts}")
    verdict = "[bold green]AUDIT PASS[/]" if j["ok"] else f"[bold red]AUDIT FAIL[/] ({len(j['failures'])} failure(s))"
    console.print(
        f"{verdict}: {j['rounds_on_chain']} rounds, artifacts "
        f"{'checked' if j['artifacts_checked'] else 'not checked (chain only)'}, {j['duration_s']:.2f}s"
    )


def write_json(result: AuditResult | dict[str, Any], path: Path) -> dict[str, Any]:
    j = result.to_json() if isinstance(result, AuditResult) else result
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(j, indent=1, sort_keys=False) + "\n")
    return j


# ----------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported only when a report is drawn (matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, fig: Any) -> str:
    """The figure as a PNG data URI; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_epsilon(j: dict[str, Any], alert_share: float | None = None) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    budgets = {h["budget"] for h in j["hospitals"].values() if h.get("budget") is not None}
    shared = len(budgets) == 1
    for i, (addr, h) in enumerate(j["hospitals"].items()):
        color = colors[i % len(colors)]
        label = h.get("label") or addr[:10]
        pts = sorted((int(r), e) for r, e in h["epsilon"].items())
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, color=color, label=label)
        if h.get("budget") is not None and not shared:
            ax.axhline(h["budget"], color=color, ls="--", lw=1, alpha=0.7)
            if alert_share:
                ax.axhline(h["budget"] * alert_share, color=color, ls=":", lw=0.8, alpha=0.5)
    if shared:
        (b,) = budgets
        ax.axhline(b, color="black", ls="--", lw=1, label=f"budget {b:g}")
        if alert_share:
            ax.axhline(b * alert_share, color="grey", ls=":", lw=1, label=f"{alert_share:.0%} alert")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative epsilon")
    title = "Epsilon per hospital (dashed: budget"
    ax.set_title(title + (f", dotted: {alert_share:.0%} alert)" if alert_share else ")"))
    ax.grid(alpha=0.3)
    if j["hospitals"]:
        ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(plt, fig)


def plot_participants(j: dict[str, Any]) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    rows = j["rounds"]
    xs = [r["round"] for r in rows]
    ys = [r["n_participants"] for r in rows]
    cols = ["#2e7d32" if r["ok"] else "#c62828" for r in rows]
    ax.bar(xs, ys, color=cols, width=0.8 if len(xs) < 200 else 1.0)
    ax.axhline(len(j["hospitals"]), color="grey", ls="--", lw=1, label="registered hospitals")
    ax.set_xlabel("round")
    ax.set_ylabel("participants")
    ax.set_title("Participants per round (red: round failed a check)")
    ax.set_ylim(0, max([len(j["hospitals"])] + ys) + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, loc="lower right")
    return _png(plt, fig)


# ----------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{display:inline-block;padding:6px 14px;border-radius:4px;color:#fff;font-weight:700;font-size:18px}
.pass{background:#2e7d32}.fail{background:#c62828}
table{border-collapse:collapse;font-size:13px;width:100%} th,td{border:1px solid #ddd;padding:4px 6px;text-align:left}
th{background:#f5f5f5} td.ok{color:#2e7d32} td.bad{color:#c62828;font-weight:700} td.skip{color:#999}
code{font-size:12px;word-break:break-all} .meta td:first-child{width:180px;font-weight:600}
img{max-width:100%;border:1px solid #eee}
"""


def _cell(status: str | None, title: str = "") -> str:
    if status is None:
        return "<td class=skip>-</td>"
    cls = {"pass": "ok", "fail": "bad", "skip": "skip"}[status]
    tip = f" title='{html.escape(title)}'" if title else ""
    return f"<td class={cls}{tip}>{ {'pass': 'ok', 'fail': 'FAIL', 'skip': 'skip'}[status] }</td>"


def _date(ts: int | None) -> str:
    """A chain timestamp as a UTC date and time (the report's reader is a person, not a node)."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _round_dates(j: dict[str, Any]) -> str:
    stamps = [r["timestamp"] for r in j["rounds"] if r.get("timestamp")]
    return f"{_date(min(stamps))} to {_date(max(stamps))}" if stamps else "-"


def _plan_cells(plan: dict[str, Any]) -> str:
    """delta, accountant and noise as the registered protocol gives them for this hospital (else unknown)."""
    if not plan:
        return "<td title='needs the store: the registered protocol' colspan=3 class=skip>not known (chain only)</td>"
    return (
        f"<td>{plan['delta']:.3g}</td><td>{html.escape(str(plan['accountant']))}</td>"
        f"<td>{plan['noise_multiplier']:.4g}</td>"
    )


def _accounting_html(j: dict[str, Any]) -> list[str]:
    """Each hospital's epsilon recomputed from the registered protocol next to the committed one."""
    acc = j.get("epsilon_accounting") or {}
    e = html.escape
    if acc.get("status") != "checked":
        return [f"<p>Epsilon accounting not checked: {e(str(acc.get('reason') or 'no result'))}</p>"] if acc else []
    out = [
        "<h3>Epsilon recomputed from the registered protocol</h3>"
        "<table><tr><th>hospital</th><th>round</th><th>recomputed</th><th>committed</th></tr>"
    ]
    failed = {(str(f["round"]), f["hospital"]) for f in j["failures"] if f["check"] == "accounting"}
    for addr, table in acc.get("recomputed", {}).items():
        h = j["hospitals"].get(addr) or {}
        for r, eps in table.items():
            committed = (h.get("epsilon") or {}).get(r)
            cls = "bad" if (r, addr) in failed else "ok"
            out.append(
                f"<tr><td>{e(str(h.get('label') or addr))}</td><td>{r}</td><td>{eps:.6f}</td>"
                f"<td class={cls}>{'-' if committed is None else f'{committed:.6f}'}</td></tr>"
            )
    out.append("</table>")
    return out


def render_html(result: AuditResult | dict[str, Any], alert_share: float | None = None) -> str:
    j = result.to_json() if isinstance(result, AuditResult) else result
    e = html.escape
    ok = j["ok"]
    meta = [
        ("study id", f"<code>{e(j['study_id'])}</code>"),
        ("chain id", str(j["chain_id"])),
        ("contract", f"<code>{e(j['contract'])}</code>"),
        ("aggregator", f"<code>{e(str(j['aggregator']))}</code>"),
        ("initial model hash", f"<code>{e(j['initial_model_hash'])}</code>"),
        ("CKKS context hash", f"<code>{e(j['context_hash'])}</code>"),
        ("code version", e(str(j.get("code_version", "")))),
        ("registered", _date(j.get("registered_at"))),
        ("expiry", _date(j.get("expiry"))),
        ("rounds recorded", _round_dates(j)),
        ("rounds on chain", str(j["rounds_on_chain"])),
        ("artifact store", "checked" if j["artifacts_checked"] else "not checked (chain only)"),
        ("audit time", f"{j['duration_s']:.2f} s"),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>FedLedger audit {e(j['study_id'][:18])}</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>FedLedger audit report</h1>",
        f"<p><span class='verdict {'pass' if ok else 'fail'}'>{'PASS' if ok else 'FAIL'}</span> "
        f"&nbsp;{len(j['failures'])} failure(s), {j['rounds_on_chain']} rounds, "
        f"{len(j['hospitals'])} hospitals</p>",
        "<table class=meta>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta) + "</table>",
    ]
    if j["failures"]:
        parts.append("<h2>Failures</h2><table><tr><th>round</th><th>hospital</th><th>check</th><th>message</th></tr>")
        for f in j["failures"]:
            label = (j["hospitals"].get(f["hospital"]) or {}).get("label") if f["hospital"] else None
            who = f"{label}<br><code>{e(f['hospital'])}</code>" if label else e(str(f["hospital"] or "-"))
            parts.append(
                f"<tr><td>{f['round'] if f['round'] is not None else 'study'}</td>"
                f"<td>{who}</td><td>{e(f['check'])}</td><td>{e(f['message'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Privacy</h2>")
    parts.append(f"<img alt='epsilon per hospital' src='{plot_epsilon(j, alert_share)}'>")
    parts.append(
        "<table><tr><th>hospital</th><th>address</th><th>budget</th><th>final epsilon</th><th>share</th>"
        "<th>delta</th><th>accountant</th><th>noise multiplier</th><th>consent events (block)</th></tr>"
    )
    plans = (j.get("epsilon_accounting") or {}).get("plans") or {}
    for addr, h in j["hospitals"].items():
        budget = h.get("budget")
        share = f"{h['final_epsilon'] / budget:.0%}" if budget else "-"
        ev = ", ".join(f"{x['kind']} ({x['block']})" for x in h["status_events"])
        plan = plans.get(addr) or {}
        parts.append(
            f"<tr><td>{e(str(h.get('label') or '-'))}</td><td><code>{e(addr)}</code></td>"
            f"<td>{'unbounded' if budget is None else f'{budget:.3f}'}</td><td>{h['final_epsilon']:.3f}</td>"
            f"<td>{share}</td>{_plan_cells(plan)}<td>{e(ev)}</td></tr>"
        )
    parts.append("</table>")
    parts += _accounting_html(j)
    parts.append("<h2>Rounds</h2>")
    parts.append(f"<img alt='participants per round' src='{plot_participants(j)}'>")
    groups = [g for g in GROUPS if any(group_status(r["checks"], GROUPS[g]) for r in j["rounds"])]
    registered = {h.get("label") or a for a, h in j["hospitals"].items()}
    parts.append(
        "<table><tr><th>round</th><th>block</th><th>recorded</th><th>participants</th><th>samples</th>"
        + "".join(f"<th title='{e(', '.join(GROUPS[g]))}'>{e(g)}</th>" for g in groups)
        + "<th>verdict</th></tr>"
    )
    for r in j["rounds"]:
        took = {_short(p) for p in r["participants"]}
        absent = sorted(registered - took)
        who = f"{len(took)} of {len(registered)}" + (f" (not: {e(', '.join(absent))})" if absent and took else "")
        parts.append(
            f"<tr><td>{r['round']}</td><td>{r['block'] if r['block'] is not None else '-'}</td>"
            f"<td>{_date(r.get('timestamp'))}</td><td title='{e(', '.join(sorted(took)))}'>{who}</td>"
            f"<td>{r['total_samples'] if r['total_samples'] is not None else '-'}</td>"
            + "".join(
                _cell(
                    group_status(r["checks"], GROUPS[g]),
                    ", ".join(f"{c}: {r['checks'][c]}" for c in GROUPS[g] if c in r["checks"]),
                )
                for g in groups
            )
            + _cell("pass" if r["ok"] else "fail")
            + "</tr>"
        )
    parts.append("</table>")
    if j.get("released"):
        parts.append("<h2>Released models</h2><table><tr><th>round</th><th>model hash (on chain)</th></tr>")
        parts += [f"<tr><td>{r}</td><td><code>{e(h)}</code></td></tr>" for r, h in j["released"].items()]
        parts.append("</table>")
    if j.get("notices"):
        parts.append("<h2>Notices</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in j["notices"]) + "</ul>")
    parts.append("<h2>Checks</h2><table><tr><th>check</th><th>pass</th><th>fail</th><th>skip</th></tr>")
    parts += [
        f"<tr><td>{e(k)}</td><td>{v['pass']}</td><td>{v['fail']}</td><td>{v['skip']}</td></tr>"
        for k, v in j["checks"].items()
    ]
    parts.append(
        "</table><p style='color:#888;font-size:12px'>Generated by <code>fedledger audit</code> "
        "(format fedledger-audit-v1). No secret key was used. See docs/AUDIT.md.</p></body></html>"
    )
    return "\n".join(parts)


def write_html(result: AuditResult | dict[str, Any], path: Path, alert_share: float | None = None) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render_html(result, alert_share))
    return Path(path)
