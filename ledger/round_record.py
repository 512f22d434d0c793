"""A recorded round read back for a receipt, and a receipt held against the chain (docs/HASHES.md section 7).

One reader for the hospital that signs receipts (fl_client/receipts.py) and
the auditor that checks them (ledger/audit/receipt_checks.py): ``getRound``
by a plain ``eth_call`` with the ABI alone, the block at the height the
record names, and the ``RoundRecorded`` log of that block for the recording
transaction. Standard JSON-RPC methods only, so it works through the RPC
guard (ledger/rpc_guard.py).
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address
from web3.exceptions import BlockNotFound, ContractLogicError

from fedledger.hashing import as_bytes, as_bytes32, to_hex
from fedledger.receipt import RoundReceipt, RoundRecord, SignedReceipt

GET_ROUND_SELECTOR = keccak(text="getRound(bytes32,uint64)")[:4]
GET_ROUND_OUTPUTS = ["bytes32", "bytes32", "uint64", "bytes32", "uint32", "uint64", "uint64", "uint8"]
ROUND_RECORDED_TOPIC = keccak(text="RoundRecorded(bytes32,uint64,bytes32,bytes32,uint64,bytes32,uint32)")


def block_hash_at(w3: Any, number: int) -> bytes | None:
    """The hash of block ``number``, or None when the chain has no such block."""
    try:
        block = w3.eth.get_block(int(number))
    except BlockNotFound:
        return None
    return bytes(block["hash"])


def _recording_tx(w3: Any, contract: str, sid: bytes, server_round: int, block: int, block_hash: bytes) -> bytes | None:
    """The transaction of the round's ``RoundRecorded`` log in block ``block`` (None: no such log there)."""
    topics = [to_hex(ROUND_RECORDED_TOPIC), to_hex(sid), to_hex(int(server_round).to_bytes(32, "big"))]
    logs = w3.eth.get_logs(
        {"address": to_checksum_address(contract), "fromBlock": block, "toBlock": block, "topics": topics}
    )
    for log in logs:
        if as_bytes(log["blockHash"]) == block_hash:
            return as_bytes(log["transactionHash"])
    return None


def read_round_record(
    w3: Any, contract: str, study_id: bytes | str, server_round: int
) -> tuple[RoundRecord, bytes] | None:
    """Round ``server_round`` as the chain records it now, with the hash of the block that holds it.

    None when ``getRound`` reverts (not recorded, unknown study) or the block or its log is gone.
    """
    sid = as_bytes32(study_id)
    data = GET_ROUND_SELECTOR + encode(["bytes32", "uint64"], [sid, int(server_round)])
    try:
        raw = w3.eth.call({"to": to_checksum_address(contract), "data": to_hex(data)})
    except ContractLogicError:  # RoundNotRecorded, UnknownStudy: the chain records no such round
        return None
    outputs = decode(GET_ROUND_OUTPUTS, bytes(raw))
    block = int(outputs[6])
    block_hash = block_hash_at(w3, block)
    tx = None if block_hash is None else _recording_tx(w3, contract, sid, server_round, block, block_hash)
    if tx is None:
        return None
    return RoundRecord.from_get_round(sid, server_round, outputs, tx), block_hash


def receipt_for(w3: Any, contract: str, study_id: bytes | str, server_round: int) -> RoundReceipt | None:
    """The receipt a hospital signs for a round the chain records now (None: not recorded)."""
    read = read_round_record(w3, contract, study_id, server_round)
    if read is None:
        return None
    record, block_hash = read
    return RoundReceipt(record.study_id, record.round, record.block_number, block_hash, record.hash())


class ChainReads:
    """A node's answers, each asked once: an auditor holds many hospitals' receipts of the same rounds."""

    def __init__(self, w3: Any):
        self.w3 = w3
        self._blocks: dict[int, bytes | None] = {}
        self._records: dict[tuple[str, bytes, int], tuple[RoundRecord, bytes] | None] = {}

    def block_hash(self, number: int) -> bytes | None:
        if number not in self._blocks:
            self._blocks[number] = block_hash_at(self.w3, number)
        return self._blocks[number]

    def record(self, contract: str, study_id: bytes, server_round: int) -> tuple[RoundRecord, bytes] | None:
        key = (contract.lower(), study_id, server_round)
        if key not in self._records:
            self._records[key] = read_round_record(self.w3, contract, study_id, server_round)
        return self._records[key]


def contradiction(w3: Any, signed: SignedReceipt) -> str | None:
    """What the chain says against a receipt, in words; None when the chain still agrees with it.

    ``w3``: a web3 instance (every answer asked afresh), or a :class:`ChainReads` shared across receipts.
    """
    reads = w3 if isinstance(w3, ChainReads) else ChainReads(w3)
    r = signed.receipt
    now = reads.block_hash(r.block_number)
    if now is None:
        return f"the chain has no block {r.block_number}, where the receipt saw round {r.round} recorded"
    if now != r.block_hash:
        return f"block {r.block_number} hashes to {to_hex(now)}, the receipt saw {to_hex(r.block_hash)}"
    read = reads.record(signed.contract, r.study_id, r.round)
    if read is None:
        return f"round {r.round} is not recorded on this chain, the receipt saw it in block {r.block_number}"
    record = read[0]
    if record.hash() != r.round_record_hash:
        return (
            f"round {r.round}'s record hashes to {to_hex(record.hash())} (block {record.block_number}), "
            f"the receipt saw {to_hex(r.round_record_hash)} (block {r.block_number})"
        )
    return None
