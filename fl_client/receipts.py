"""A hospital's receipts of recorded rounds: signed when it reads a round, re-checked on every later read.

Each time a hospital checks a model against the chain (before training
round r+1 it reads round r, before evaluating round r it reads round r) it
keeps a signed receipt of that round (fedledger/receipt.py) in its state
directory, next to its DP accountant's state: ``round_receipts.jsonl``,
append-only, one JSON object a line. Before it trusts a later read it holds
its latest receipt, and any earlier one for the round it reads, against the
chain: a missing round, another block hash at the receipted height or
another round record is a rewritten chain, and the task is refused with
``chain-rewritten``. The chain is hash-linked, so the latest receipt's block
vouches for every earlier block; the auditor checks every receipt
(``fedledger audit --receipts``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fedledger.hashing import as_bytes32
from fedledger.receipt import SignedReceipt, read_receipts
from fl_client.settings import HospitalSettings

log = logging.getLogger("fedledger.client")

RECEIPTS_FILE = "round_receipts.jsonl"
CHAIN_REWRITTEN = "chain-rewritten"


class ChainRewritten(RuntimeError):
    """The chain contradicts a receipt this hospital signed earlier (refusal code ``chain-rewritten``)."""


def receipts_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / RECEIPTS_FILE


def load_receipts(path: Path) -> list[SignedReceipt]:
    """Every well-formed receipt in a receipts file, in the order written (a malformed line is logged, skipped)."""
    if not path.exists():
        return []
    receipts, problems = read_receipts(path)
    for problem in problems:
        log.warning("receipts file: %s; skipped", problem)
    return receipts


def append_receipt(path: Path, signed: SignedReceipt) -> None:
    """One line appended and synced before the hospital goes on (the file is never rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(signed.to_json(), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ReceiptKeeper:
    """One hospital's receipts of one study on one chain and contract."""

    w3: Any
    path: Path
    account: Any  # the hospital's LocalAccount (the key that signs its commitments)
    chain_id: int
    contract: str
    study_id: bytes
    hospital: str = ""

    def mine(self) -> list[SignedReceipt]:
        """This study's receipts on this chain and contract, from the file."""
        return [
            s
            for s in load_receipts(self.path)
            if s.chain_id == self.chain_id
            and s.contract.lower() == self.contract.lower()
            and s.receipt.study_id == self.study_id
        ]

    def check_and_keep(self, server_round: int) -> SignedReceipt | None:
        """Re-check the latest receipt (and round ``server_round``'s, if held), then receipt that round.

        Raises :class:`ChainRewritten` naming the round and block on a
        contradiction. Returns the new receipt, or None when the round already
        has one or is not on chain (the caller's own read said so).
        """
        from ledger.round_record import contradiction, receipt_for  # defers web3 to hospitals that read a chain

        held = self.mine()
        to_check = [max(held, key=lambda s: (s.receipt.block_number, s.receipt.round))] if held else []
        to_check += [s for s in held if s.receipt.round == server_round]
        for signed in {s.receipt: s for s in to_check}.values():
            problem = contradiction(self.w3, signed)
            if problem is not None:
                raise ChainRewritten(
                    f"the chain contradicts this hospital's receipt of round {signed.receipt.round} "
                    f"(block {signed.receipt.block_number}): {problem}"
                )
        if any(s.receipt.round == server_round for s in held) or server_round <= 0:
            return None
        receipt = receipt_for(self.w3, self.contract, self.study_id, server_round)
        if receipt is None:
            return None
        signed = SignedReceipt.sign(self.account, self.chain_id, self.contract, receipt, self.hospital)
        append_receipt(self.path, signed)
        return signed


@lru_cache(maxsize=4)
def _w3(rpc_url: str) -> Any:
    from ledger.rpc import http_w3

    return http_w3(rpc_url)


@lru_cache(maxsize=4)
def _account(eth_key: str) -> Any:
    from ledger.accounts import load_eth_account

    return load_eth_account(eth_key)


def keeper_for(settings: HospitalSettings, study_id: str) -> ReceiptKeeper | None:
    """The hospital's keeper; None when it reads no chain, signs with no key or keeps no state directory.

    The chain id is the hospital's own node's answer, never the task's.
    """
    if not (settings.chain_rpc and settings.contract and settings.eth_key and settings.state_dir):
        return None
    w3 = _w3(settings.chain_rpc)
    return ReceiptKeeper(
        w3,
        receipts_path(settings.state_dir),
        _account(settings.eth_key),
        int(w3.eth.chain_id),
        settings.contract,
        as_bytes32(study_id),
        settings.hospital_id,
    )


def check_task_round(settings: HospitalSettings, study_id: str, read_round: int) -> None:
    """After a task's model matched the chain's record of ``read_round``: the receipts, checked and kept.

    Raises :class:`ChainRewritten` when the chain contradicts one.
    """
    if read_round <= 0:
        return
    keeper = keeper_for(settings, study_id)
    if keeper is not None:
        keeper.check_and_keep(read_round)
