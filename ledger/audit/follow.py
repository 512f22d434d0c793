"""Watch mode for regulators: poll the chain and the artifact store, print new rounds, alert on what needs a look."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fedledger.hashing import to_hex
from ledger.audit.auditor import audit
from ledger.audit.epsilon_checks import trusted_protocol
from ledger.audit.events import read_chain_view
from ledger.audit.query_alerts import query_alerts
from ledger.audit.records import ChainView
from ledger.audit.refusals import RoundRefusal, store_refusals
from ledger.audit.result import AuditResult, Finding
from ledger.audit.store import learn_labels
from ledger.client import LedgerClient


def follow(
    w3: Any,
    contract: str,
    study: str,
    console: Any,
    *,
    alert_share: float = 0.8,
    poll_interval: float = 5.0,
    max_polls: int | None = None,
    from_block: int = 0,
    store: Path | None = None,
    members: tuple[str, ...] = (),
) -> int:
    """Poll the chain; print each newly recorded round; alert on failed checks, budget share, odd events.

    With the artifact store (``store``) it also reads each round manifest as it
    appears and alerts on every hospital's policy or protocol refusal in it.
    Returns 1 if any alert was raised, else 0 (when ``max_polls`` ends the watch).
    """
    client = LedgerClient.at(w3, contract, deploy_block=from_block, max_attempts=3)
    seen_rounds: set[int] = set()
    seen_notices: set[str] = set()
    share_alerted: set[str] = set()
    seen_refusals: set[RoundRefusal] = set()
    alerts = 0
    polls = 0
    console.print(f"following study {str(study)[:18]}.. on {contract} (alert at {alert_share:.0%} of a budget)")
    try:
        while max_polls is None or polls < max_polls:
            polls += 1
            view = read_chain_view(w3, contract, study, from_block=from_block)
            view.notices += _role_notices(client, from_block)
            if store is not None:
                learn_labels(view, store)  # alerts name hospitals, not only addresses
            result = audit(view)
            by_round: dict[int | None, list[Finding]] = {}
            for f in result.failures:
                by_round.setdefault(f.round, []).append(f)
            alerts += _new_rounds(result, by_round, seen_rounds, console)
            for f in by_round.get(None, []):
                key = f"{f.check}:{f.message}"
                if key not in seen_notices:
                    seen_notices.add(key)
                    alerts += 1
                    console.print(f"[bold red]ALERT[/] study {f.check}: {f.message}")
            alerts += _budget_alerts(result, alert_share, share_alerted, console, _planned_spend(view, store))
            if store is not None:
                alerts += refusal_alerts(store, seen_refusals, console)
            for line in query_alerts(view, members, alert_share):  # statistics queries (query_alerts.py)
                if line not in seen_notices:
                    seen_notices.add(line)
                    alerts += 1
                    console.print(f"[bold red]ALERT[/] query: {line}")
            for n in view.notices:
                if n not in seen_notices:
                    seen_notices.add(n)
                    alerts += 1
                    console.print(f"[bold yellow]ALERT[/] unexpected event: {n}")
            if max_polls is not None and polls >= max_polls:
                break
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        console.print("stopped")
    console.print(f"followed {len(seen_rounds)} rounds over {polls} polls, {alerts} alert(s)")
    return 1 if alerts else 0


def _new_rounds(
    result: AuditResult, by_round: dict[int | None, list[Finding]], seen_rounds: set[int], console: Any
) -> int:
    """Print each round not seen before with its failures; the number of alerts raised."""
    alerts = 0
    for rv in sorted(result.view.rounds, key=lambda x: x.round):
        if rv.round in seen_rounds:
            continue
        seen_rounds.add(rv.round)
        bad = by_round.get(rv.round, [])
        console.print(
            f"round {rv.round}: block {rv.block}, {len(rv.commitments)} hospitals, "
            f"{rv.total_samples} samples, aggregate {to_hex(rv.aggregate_hash)[:18]}.. "
            + ("[green]ok[/]" if not bad else "[bold red]FAIL[/]")
        )
        for f in bad:
            alerts += 1
            console.print(f"[bold red]ALERT[/] round {f.round} {f.hospital or ''} {f.check}: {f.message}")
    return alerts


def refusal_alerts(store: Path, seen: set[RoundRefusal], console: Any) -> int:
    """Alert once per watched refusal (policy, protocol, weight, aggregate bounds) in the store's manifests
    not seen before; how many."""
    alerts = 0
    for r in store_refusals(store):
        if r not in seen:
            seen.add(r)
            alerts += 1
            console.print(f"[bold red]ALERT[/] round {r.round} hospital {r.hospital} {r.what()}: {r.code}: {r.reason}")
    return alerts


#: Relative slack on the planned spend: the accountant's own rounding (docs/AUDIT.md, ``accounting``).
PLANNED_SLACK = 1e-3


def _planned_spend(view: ChainView, store: Path | None) -> float | None:
    """The target epsilon of the registered protocol (from a trusted ``study.json``), if it sets one."""
    if store is None:
        return None
    task, _ = trusted_protocol(view, store)
    if task is None or not task.privacy.get("enabled") or task.privacy.get("target_epsilon") is None:
        return None
    return float(task.privacy["target_epsilon"])


def _budget_alerts(
    result: AuditResult, alert_share: float, share_alerted: set[str], console: Any, planned: float | None = None
) -> int:
    """Once per hospital that has spent ``alert_share`` of its epsilon budget, naming the round it crossed it.

    A spend within the registered protocol's target epsilon is the plan, so it is a notice, not an alert.
    """
    view, alerts = result.view, 0
    for addr, eps in result.epsilon.items():
        hv = view.hospitals.get(addr)
        if not eps or hv is None or hv.budget_micro >= 2**64 - 1 or addr in share_alerted:
            continue
        budget = hv.budget_micro / 1e6
        crossed = next((r for r in sorted(eps) if budget > 0 and eps[r] >= alert_share * budget), None)
        if crossed is None:
            continue
        share_alerted.add(addr)
        spent = max(eps.values())
        what = (
            f"hospital {view.label(addr)} crossed {alert_share:.0%} of its budget {budget:.3f} in round {crossed} "
            f"(epsilon {eps[crossed]:.3f}); spent {spent:.3f}, {spent / budget:.0%}"
        )
        if planned is not None and spent <= planned * (1 + PLANNED_SLACK):
            console.print(f"[cyan]notice[/] {what}: within the registered target epsilon {planned:g}, as planned")
            continue
        alerts += 1
        console.print(f"[bold yellow]ALERT[/] {what}")
    return alerts


def _role_notices(client: Any, from_block: int) -> list[str]:
    """Access-control changes after deployment are outside a study's normal flow.

    ``from_block`` is the deployment block when known (a run dir's ``deploy_block``,
    ``--from-block``). When it is 0 (``--rpc`` without ``--from-block``) the deployment
    block is the contract's first ``RoleGranted`` (its constructor's grant to the
    deployer), so that grant is not reported as an unexpected event.
    """
    logs = {}
    for name in ("RoleGranted", "RoleRevoked"):
        try:
            logs[name] = client.events(name, None, from_block)
        except Exception:
            logs[name] = []
    deploy_block = from_block
    if from_block == 0 and logs["RoleGranted"]:
        deploy_block = min(ev["blockNumber"] for ev in logs["RoleGranted"])
    out = []
    for name, evs in logs.items():
        for ev in evs:
            if ev["blockNumber"] > deploy_block:
                a = ev["args"]
                out.append(
                    f"block {ev['blockNumber']}: {name} role 0x{bytes(a['role']).hex()[:8]}.. account {a['account']}"
                )
    return out
