"""Statistics queries on the chain: read them back (logs and calldata) and check each record.

A query record is a ``QueryRecorded`` log (hash, requester, purpose, the
canonical query spec), one ``QueryCharged`` log per hospital (its address as
the contract recovered it, its charge and composed total) and the
``recordQuery`` calldata (the signed ``QueryCharge`` structs and
signatures). Check ``query``: the spec parses as a query and hashes to the
recorded hash; every signature recovers, off-chain, to the logged hospital;
the requester's signature over the query and its purpose recovers to the
logged requester; the hospital had consented; its total is within its budget, never falls
from one query to the next, and is not below the training epsilon it had
committed before the query; a Laplace charge is the query's epsilon.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address

from fedledger.commitment import CommitmentError
from fedledger.hashing import to_hex
from fedledger.query_charge import EpsilonCharge, recover_charge_signer, recover_requester
from fedledger.stats.query import QueryError, StatsQuery
from ledger.abi import abi_type, selector_hash
from ledger.audit.records import ChainView
from ledger.audit.result import Finding
from ledger.audit.rpc_reader import ChainReader


@dataclass(frozen=True)
class ChargeView:
    hospital: str  # the signer the contract recovered (QueryCharged.hospital)
    charge: EpsilonCharge
    signature: bytes


@dataclass
class QueryView:
    query_hash: bytes
    requester: str
    purpose: str
    spec: str
    block: int
    log_index: int
    tx_hash: str
    charges: list[ChargeView] = field(default_factory=list)
    requester_signature: bytes = b""  # the requester's QueryRequest signature (calldata)

    def query(self) -> StatsQuery | None:
        """The parsed query, or None when the spec is not one."""
        try:
            return StatsQuery.from_mapping(json.loads(self.spec))
        except (QueryError, ValueError, TypeError, AttributeError):
            return None


def _decode_record_query(c: Any, data: bytes) -> dict[str, Any]:
    abi = next(x for x in c.abi if x.get("type") == "function" and x.get("name") == "recordQuery")
    if data[:4] != selector_hash(abi)[:4]:
        raise ValueError("transaction is not a recordQuery call")
    values = decode([abi_type(i) for i in abi["inputs"]], data[4:])
    return dict(zip([i["name"] for i in abi["inputs"]], values))


def read_queries(rd: ChainReader, sid: bytes) -> list[QueryView]:
    """Every query recorded for ``sid``, in chain order, with its charges and signatures."""
    logs = rd.logs("QueryRecorded", sid)
    if not logs:
        return []
    charged: dict[bytes, list[dict[str, Any]]] = {}
    for ev in rd.logs("QueryCharged", sid):
        charged.setdefault(ev["tx"], []).append(ev)
    inputs = rd.tx_inputs([ev["tx"] for ev in logs])
    out = []
    for ev in logs:
        a = ev["args"]
        q = QueryView(
            bytes(a["queryHash"]),
            to_checksum_address(a["requester"]),
            str(a["purpose"]),
            str(a["querySpec"]),
            ev["block"],
            ev["log_index"],
            to_hex(ev["tx"]),
        )
        params = _decode_record_query(rd.c, inputs[ev["tx"]])
        q.requester_signature = bytes(params["requesterSignature"])
        logs_here = charged.get(ev["tx"], [])
        for i, (raw, sig) in enumerate(zip(params["charges"], params["signatures"])):
            hospital = to_checksum_address(logs_here[i]["args"]["hospital"]) if i < len(logs_here) else "0x" + "00" * 20
            q.charges.append(ChargeView(hospital, EpsilonCharge(*tuple(raw)), bytes(sig)))
        out.append(q)
    return out


def _check_one(view: ChainView, q: QueryView, last_total: dict[str, int]) -> list[str]:
    problems = []
    parsed = q.query()
    if parsed is None:
        problems.append("the recorded query spec does not parse as a statistics query")
    elif parsed.hash() != q.query_hash or parsed.canonical_json().decode() != q.spec:
        problems.append(f"the recorded spec hashes to {to_hex(parsed.hash())}, not the recorded {to_hex(q.query_hash)}")
    try:
        asked_by = recover_requester(view.domain, view.study_id, q.query_hash, q.purpose, q.requester_signature)
    except CommitmentError as exc:
        asked_by = f"nobody ({exc})"
    if asked_by != q.requester:
        problems.append(
            f"the requester's signature over the query and purpose recovers to {asked_by}, not {q.requester}"
        )
    for cv in q.charges:
        who, c = view.label(cv.hospital), cv.charge
        try:
            signer = recover_charge_signer(view.domain, c, cv.signature)
        except CommitmentError as exc:
            signer = f"nobody ({exc})"
        if signer != cv.hospital:
            problems.append(f"{who}: charge signature recovers to {signer}")
        if c.query_hash != q.query_hash or c.study_id != view.study_id:
            problems.append(f"{who}: the signed charge names another query or study")
        hv = view.hospitals.get(cv.hospital)
        if hv is None or hv.status_at(q.block, q.log_index) != "consented":
            problems.append(f"{who}: answered without a standing consent")
        elif c.total_epsilon_micro > hv.budget_micro:
            problems.append(f"{who}: total epsilon {c.total_epsilon_micro / 1e6:.6f} over its budget")
        if c.total_epsilon_micro < last_total.get(cv.hospital, 0):
            problems.append(f"{who}: total epsilon {c.total_epsilon_micro / 1e6:.6f} is below its earlier spend")
        last_total[cv.hospital] = max(last_total.get(cv.hospital, 0), c.total_epsilon_micro)
        if (
            parsed is not None
            and parsed.mechanism == "laplace"
            and abs(c.epsilon_micro - round(parsed.epsilon * 1e6)) > 1
        ):
            problems.append(
                f"{who}: charged {c.epsilon_micro / 1e6:.6f} for a Laplace query of epsilon {parsed.epsilon:g}"
            )
    return problems


def check_queries(view: ChainView) -> list[Finding]:
    """Check ``query`` for every recorded query (module docstring); nothing when none was recorded."""
    out: list[Finding] = []
    last_total: dict[str, int] = {}
    for i, q in enumerate(view.queries):
        for rv in view.rounds:  # the training epsilon committed before a query is a floor for its total
            if (rv.block, rv.log_index) < (q.block, q.log_index):
                for cm in rv.commitments:
                    last_total[cm.hospital] = max(last_total.get(cm.hospital, 0), cm.commitment.epsilon_micro)
        problems = _check_one(view, q, last_total)
        label = f"query {i + 1} ({to_hex(q.query_hash)[:18]}..)"
        if problems:
            out += [Finding("query", False, f"{label}: {p}") for p in problems]
        else:
            out.append(Finding("query", True, f"{label}: spec, {len(q.charges)} signed charges and budgets verified"))
    return out
