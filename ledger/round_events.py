"""A study's recorded rounds, read back from the chain: each ``RoundRecorded`` log joined with its transaction.

The contract does not re-emit what the calldata already holds (gas): study,
round, previous hash and signatures come from the recording transaction's
calldata, hospital and commitment fields from its ``CommitmentRecorded`` logs,
checked against each other field by field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from web3.contract import Contract
from web3.logs import DISCARD

from fedledger.commitment import RoundCommitment
from ledger.records import MODE_MERKLE, MODE_SIGNED, CommitmentEvent, RoundEvent
from ledger.reverts import LedgerError

#: Runs a chain read with the client's retries: ``call(fn, what)``.
Retrying = Callable[[Callable[[], Any], str], Any]


def read_round_events(contract: Contract, call: Retrying, sid: bytes, start: int) -> list[RoundEvent]:
    """Every round of study ``sid`` recorded from block ``start`` on (see :meth:`ledger.client.LedgerClient.round_events`)."""
    rounds = call(
        lambda: contract.events.RoundRecorded().get_logs(
            from_block=start, to_block="latest", argument_filters={"studyId": sid}
        ),
        "RoundRecorded logs",
    )
    out = []
    for ev in sorted(rounds, key=lambda e: (e["blockNumber"], e["logIndex"])):
        a = ev["args"]
        txh = ev["transactionHash"].to_0x_hex()
        tx = call(lambda: contract.w3.eth.get_transaction(txh), "get transaction")
        _fn, params = contract.decode_function_input(tx["input"])
        if _fn.fn_name == "recordRoundMerkle":
            if (bytes(params["commitmentsRoot"]), params["round"], bytes(params["studyId"])) != (
                bytes(a["commitmentsHash"]),
                a["round"],
                sid,
            ):
                raise LedgerError(f"round {a['round']}: calldata of tx {txh} does not match its RoundRecorded log")
            out.append(_round_event(sid, ev, (), MODE_MERKLE, int(params["maxEpsilonMicro"])))
            continue
        call_commitments = [
            RoundCommitment.from_tuple(tuple(c.values()) if isinstance(c, dict) else c) for c in params["commitments"]
        ]
        sigs = [bytes(s) for s in params["signatures"]]
        for c in call_commitments:
            if c.study_id != sid or c.round != a["round"]:
                raise LedgerError(f"round {a['round']}: calldata of tx {txh} does not match its RoundRecorded log")
        receipt = call(lambda: contract.w3.eth.get_transaction_receipt(txh), "get receipt")
        logs = sorted(
            contract.events.CommitmentRecorded().process_receipt(receipt, errors=DISCARD),
            key=lambda e: e["logIndex"],
        )
        if len(logs) != len(call_commitments):
            raise LedgerError(
                f"round {a['round']}: {len(logs)} commitment logs but {len(call_commitments)} commitments in tx {txh}"
            )
        items = []
        for log_ev, c, sig in zip(logs, call_commitments, sigs):
            la = log_ev["args"]
            if (bytes(la["updateHash"]), la["sampleCount"], la["epsilonMicro"]) != (
                c.update_hash,
                c.sample_count,
                c.epsilon_micro,
            ):
                raise LedgerError(f"round {a['round']}: log {log_ev['logIndex']} does not match calldata")
            items.append(CommitmentEvent(la["hospital"], c, sig, log_ev["logIndex"]))
        out.append(_round_event(sid, ev, tuple(items)))
    return out


def _round_event(
    sid: bytes,
    ev: Any,
    commitments: tuple[CommitmentEvent, ...],
    mode: int = MODE_SIGNED,
    max_epsilon_micro: int | None = None,
) -> RoundEvent:
    """A ``RoundRecorded`` log as a :class:`RoundEvent`."""
    a = ev["args"]
    return RoundEvent(
        round=a["round"],
        prev_global_hash=bytes(a["prevGlobalHash"]),
        aggregate_hash=bytes(a["aggregateHash"]),
        total_samples=a["totalSamples"],
        commitments_hash=bytes(a["commitmentsHash"]),
        participants=a["participants"],
        study_id=sid,
        block=ev["blockNumber"],
        tx_hash=ev["transactionHash"].to_0x_hex(),
        commitments=commitments,
        mode=mode,
        max_epsilon_micro=max_epsilon_micro,
    )
