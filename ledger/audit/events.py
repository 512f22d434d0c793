"""Turn a study's events, ``recordRound`` calldata and block times into a :class:`ChainView`.

Nothing is taken from the aggregator here: the view is what the chain says.
Commitments come from the ``CommitmentRecorded`` logs of each round's
transaction (the signer the contract recovered), their full fields and
signatures from that transaction's calldata.
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from fedledger.commitment import RoundCommitment
from fedledger.hashing import as_bytes, to_hex
from ledger.audit.queries import read_queries
from ledger.audit.records import ChainView, CommitmentView, HospitalView, RoundView
from ledger.audit.rpc_reader import ChainReader, named_outputs, retry
from ledger.compile import load_artifact


def read_chain_view(
    w3: Any, contract: str, study_id: bytes | str, from_block: int = 0, abi: list | None = None
) -> ChainView:
    """Everything the chain records about ``study_id``: events, recordRound calldata, block times.

    A reader of its own (web3/eth_abi and the contract ABI from
    ledger/artifacts/StudyLedger.json only), so the auditor does not depend on
    the aggregator's client code.
    """
    abi = abi or load_artifact()["abi"]
    c = w3.eth.contract(address=to_checksum_address(contract), abi=abi)
    rd = ChainReader(w3, c, from_block)
    sid = as_bytes(study_id)

    info = named_outputs(c, "getStudy", retry(lambda: c.functions.getStudy(sid).call(), "getStudy"))
    notices: list[str] = []
    hospitals = _hospitals(rd, sid, notices)
    rounds = _rounds(rd, sid, notices)
    released, release_signers = {}, {}
    for ev in rd.logs("ModelReleased", sid):
        released[int(ev["args"]["round"])] = bytes(ev["args"]["modelHash"])
        release_signers[int(ev["args"]["round"])] = tuple(to_checksum_address(a) for a in ev["args"]["signers"])
    try:
        last_round = int(retry(lambda: c.functions.lastRound(sid).call(), "lastRound"))
    except Exception:
        last_round = int(info.get("lastRound", max([r.round for r in rounds], default=0)))
    return ChainView(
        study_id=sid,
        chain_id=int(retry(lambda: w3.eth.chain_id, "chain id")),
        contract=c.address,
        initial_model_hash=bytes(info["initialModelHash"]),
        context_hash=bytes(info["contextHash"]),
        config_hash=bytes(info["configHash"]),
        aggregator=to_checksum_address(info["aggregator"]),
        expiry=int(info["expiry"]),
        last_round=last_round,
        hospitals=hospitals,
        rounds=rounds,
        released=released,
        release_signers=release_signers,
        release_quorum=int(info.get("releaseQuorum", 0)),
        code_version=str(info.get("codeVersion", "")),
        registered_at=int(info.get("registeredAt", 0)),
        notices=notices,
        head_block=int(retry(lambda: w3.eth.block_number, "block number")),
        queries=read_queries(rd, sid),
    )


def _hospitals(rd: ChainReader, sid: bytes, notices: list[str]) -> dict[str, HospitalView]:
    """Registered hospitals with their registration, consent and withdrawal events in chain order."""
    hospitals: dict[str, HospitalView] = {}
    for ev in rd.logs("HospitalRegistered", sid):
        a = to_checksum_address(ev["args"]["hospital"])
        hospitals[a] = HospitalView(a, int(ev["args"]["budgetMicro"]))
        hospitals[a].events.append((ev["block"], ev["log_index"], "registered"))
    for name, kind in (("HospitalConsented", "consented"), ("HospitalWithdrew", "withdrawn")):
        for ev in rd.logs(name, sid):
            a = to_checksum_address(ev["args"]["hospital"])
            if a in hospitals:
                hospitals[a].events.append((ev["block"], ev["log_index"], kind))
                if kind == "consented":
                    hospitals[a].max_samples = int(ev["args"]["maxSamples"])
            else:
                notices.append(f"block {ev['block']}: {name} by unregistered {a}")
            if kind == "withdrawn":
                notices.append(f"block {ev['block']}: hospital {a} withdrew from the study")
    return hospitals


def _rounds(rd: ChainReader, sid: bytes, notices: list[str]) -> list[RoundView]:
    round_logs = rd.logs("RoundRecorded", sid)
    commit_by_tx: dict[bytes, list] = {}
    if round_logs:
        for ev in rd.logs("CommitmentRecorded"):
            commit_by_tx.setdefault(ev["tx"], []).append(ev)
    inputs = rd.tx_inputs([ev["tx"] for ev in round_logs])
    times = rd.block_times([ev["block"] for ev in round_logs])
    rounds = []
    for ev in round_logs:
        a = ev["args"]
        params = rd.decode_record_round(inputs[ev["tx"]])
        if params["_function"] == "recordRoundMerkle":
            if bytes(params["commitmentsRoot"]) != bytes(a["commitmentsHash"]) or commit_by_tx.get(ev["tx"]):
                notices.append(f"round {a['round']}: recordRoundMerkle calldata does not match its logs")
            rounds.append(
                _round_view(ev, times, [], mode=2, max_epsilon_micro=int(params["maxEpsilonMicro"])),
            )
        else:
            commitments = _commitments(ev, params, commit_by_tx.get(ev["tx"], []), notices)
            rounds.append(_round_view(ev, times, commitments))
    return rounds


def _round_view(ev: dict[str, Any], times: dict[int, int], commitments: list[CommitmentView], **kw: Any) -> RoundView:
    a = ev["args"]
    return RoundView(
        round=int(a["round"]),
        prev_hash=bytes(a["prevGlobalHash"]),
        aggregate_hash=bytes(a["aggregateHash"]),
        total_samples=int(a["totalSamples"]),
        participants=int(a["participants"]),
        block=ev["block"],
        timestamp=times[ev["block"]],
        commitments=commitments,
        commitments_hash=bytes(a["commitmentsHash"]),
        tx_hash=to_hex(ev["tx"]),
        log_index=ev["log_index"],
        **kw,
    )


def _commitments(
    ev: dict[str, Any], params: dict[str, Any], clogs: list[dict[str, Any]], notices: list[str]
) -> list[CommitmentView]:
    """A recordRound's commitments: fields and signatures from calldata, signers from its logs."""
    a = ev["args"]
    call_cs = [
        RoundCommitment.from_tuple(tuple(x.values()) if isinstance(x, dict) else tuple(x))
        for x in params["commitments"]
    ]
    sigs = [bytes(x) for x in params["signatures"]]
    if len(clogs) != len(call_cs):
        notices.append(f"round {a['round']}: {len(clogs)} CommitmentRecorded logs for {len(call_cs)} commitments")
    commitments = []
    for i, cm in enumerate(call_cs):
        lg = clogs[i] if i < len(clogs) else None
        hospital = to_checksum_address(lg["args"]["hospital"]) if lg is not None else "0x" + "00" * 20
        if lg is not None and (
            bytes(lg["args"]["updateHash"]),
            int(lg["args"]["sampleCount"]),
            int(lg["args"]["epsilonMicro"]),
        ) != (cm.update_hash, cm.sample_count, cm.epsilon_micro):
            notices.append(
                f"round {a['round']}: CommitmentRecorded log {lg['log_index']} does not match the "
                "calldata of its transaction"
            )
        commitments.append(
            CommitmentView(
                hospital,
                cm,
                sigs[i] if i < len(sigs) else b"",
                lg["log_index"] if lg is not None else ev["log_index"],
            )
        )
    return commitments
