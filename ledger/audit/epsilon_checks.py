"""Verifiable accounting: every hospital's committed epsilon against the one its protocol and sample counts give.

Epsilon is a public function of the registered protocol (noise or target
epsilon, delta, clipping, accountant, batch size, local epochs, rounds) and
the sample counts a hospital commits (:func:`fedledger.dp.plan.committed_epsilons`,
the code the hospital's own accountant runs). The protocol's preimage is the
study spec (``study.json``) in the artifact store, trusted only when its
protocol hash is the chain's ``configHash``. A commitment whose ``epsilonMicro``
is below the recomputed figure by more than :data:`EPSILON_REL_SLACK` (and
one micro-epsilon of rounding) FAILs, naming round and hospital. Without a
trusted preimage the check is skipped, and a notice says why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.config import PrivacyConfig
from fedledger.hashing import to_hex
from fedledger.protocol import protocol_hash
from fedledger.round_task import RoundTask
from fedledger.study_task import round_task
from ledger.audit.records import ChainView
from ledger.audit.result import Finding, per_round

CHECK = "accounting"
#: Relative slack for accountant numerics (another machine's FFT, another scipy): docs/AUDIT.md.
EPSILON_REL_SLACK = 0.01
STUDY_SPEC = "study.json"


@dataclass
class Accounting:
    """The check's findings and what it recomputed (audit.json ``epsilon_accounting``)."""

    findings: list[Finding]
    status: str  # checked | skipped
    reason: str = ""
    recomputed: dict[str, dict[int, float]] = field(default_factory=dict)  # address -> round -> epsilon
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # address -> delta, accountant, noise, q

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "relative_slack": EPSILON_REL_SLACK}
        if self.reason:
            out["reason"] = self.reason
        out["recomputed"] = {a: {str(r): e for r, e in sorted(t.items())} for a, t in self.recomputed.items()}
        out["plans"] = self.plans
        return out


def _skipped(reason: str) -> Accounting:
    """Not PASS: a skipped finding, and the reason the reports print as a notice (not in ``view.notices``,
    which ``--follow`` raises as alerts every chain-only poll)."""
    return Accounting([Finding(CHECK, True, f"skipped: {reason}", skipped=True)], "skipped", reason)


def trusted_protocol(view: ChainView, store_dir: Path | None) -> tuple[RoundTask | None, str]:
    """The study's round task from ``<store>/study.json`` when it hashes to the chain's configHash; else why not."""
    if store_dir is None:
        return None, "chain-only audit: no study spec (study.json) to take the registered protocol from"
    path = Path(store_dir) / STUDY_SPEC
    if not path.is_file():
        return None, f"no {STUDY_SPEC} in {store_dir}: the registered protocol's preimage is absent"
    try:
        task = round_task(json.loads(path.read_text()))
        digest = protocol_hash(task)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, f"{STUDY_SPEC} does not define the study's round task ({type(exc).__name__}: {exc})"
    if digest != view.config_hash:
        return None, (
            f"{STUDY_SPEC}'s protocol hashes to {to_hex(digest)}, not to the chain's configHash "
            f"{to_hex(view.config_hash)} (another study, an older protocol version, or an edited spec): not trusted"
        )
    return task, ""


def _privacy(task: RoundTask) -> PrivacyConfig:
    known = {k: v for k, v in task.privacy.items() if k in PrivacyConfig.__dataclass_fields__}
    cfg = PrivacyConfig(**{**known, "noise_source": "seeded"})  # who draws the noise does not change epsilon
    cfg.validate()
    return cfg


def check_epsilon_accounting(view: ChainView, store_dir: Path | None) -> Accounting:
    """Recompute each hospital's cumulative epsilon round by round; FAIL a commitment that under-reports it."""
    task, why = trusted_protocol(view, store_dir)
    if task is None:
        return _skipped(why)
    try:
        privacy = _privacy(task)
    except ValueError as exc:
        return _skipped(f"the registered protocol's privacy settings are not valid: {exc}")
    if not privacy.enabled:
        return _skipped("the registered protocol trains without DP: no epsilon to recompute")
    from fedledger.dp.plan import committed_epsilons  # numpy, scipy and Opacus only when there is work

    counts: dict[str, list[int]] = {}
    recomputed: dict[str, dict[int, float]] = {}
    broken: set[str] = set()  # hospitals whose figures cannot be recomputed (FAILed once, where it started)
    findings: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        fails: list[Finding] = []
        for cv in rv.commitments:
            h, c = cv.hospital, cv.commitment
            if h in broken:
                continue
            counts.setdefault(h, []).append(int(c.sample_count))
            try:  # memoized: each round adds one history entry's work
                eps = committed_epsilons(privacy, task.batch_size, task.num_rounds, task.dp_epochs, counts[h])[-1]
            except ValueError as exc:
                fails.append(
                    Finding(CHECK, False, f"{view.label(h)} committed {c.sample_count} samples: {exc}", rv.round, h)
                )
                broken.add(h)
                continue
            recomputed.setdefault(h, {})[rv.round] = eps
            floor_micro = math.floor(eps * (1.0 - EPSILON_REL_SLACK) * 1e6) - 1
            if c.epsilon_micro < floor_micro:
                fails.append(
                    Finding(
                        CHECK,
                        False,
                        f"{view.label(h)} committed epsilon {c.epsilon_micro / 1e6:.6f} after "
                        f"{len(counts[h])} round(s) of {c.sample_count} samples, below the {eps:.6f} the "
                        f"registered protocol gives (relative slack {EPSILON_REL_SLACK:g}): privacy spend "
                        "under-reported",
                        rv.round,
                        h,
                    )
                )
        findings += per_round(CHECK, rv.round, fails, "each committed epsilon is at least the recomputed one")
    return Accounting(findings, "checked", recomputed=recomputed, plans=_plans(privacy, task, counts, broken))


def _plans(privacy: PrivacyConfig, task: RoundTask, counts: dict[str, list[int]], broken: set[str]) -> dict[str, Any]:
    """What each hospital's accountant ran with at its last committed count (the report's delta/accountant/noise)."""
    from fedledger.dp.plan import dp_plan

    out: dict[str, Any] = {}
    for h, n in counts.items():
        if h in broken:
            continue
        plan = dp_plan(privacy, n[-1], task.batch_size, task.num_rounds, task.dp_epochs)
        out[h] = {
            "delta": plan.delta,
            "accountant": plan.accountant,
            "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate,
            "max_grad_norm": privacy.max_grad_norm,
        }
    return out
