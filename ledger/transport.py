"""Calls and transactions against one chain that survive a flaky node: retries, local nonces, idempotent re-sends.

Transport errors (connection refused, timeouts) are retried with exponential
backoff. Transactions are signed locally with eth_account ``LocalAccount``
keys (the node never holds a key), nonces are kept locally per sender and
resynchronised from the chain after a transport failure or a nonce rejection,
and a signed transaction is re-sent byte for byte on retry, so a retry can
never produce a second, different transaction. Every transaction waits for
its receipt; a revert raises :class:`ledger.reverts.LedgerRevert`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import TransactionNotFound

from ledger.reverts import (
    REVERT_ERRORS,
    ErrorTable,
    LedgerError,
    LedgerRevert,
    LedgerTransportError,
    decode_revert,
    error_table,
    revert_data,
)
from ledger.rpc import TRANSPORT_ERRORS

# The client's logger name, kept from before the client was split: operators filter on it.
log = logging.getLogger("fedledger.ledger.client")

T = TypeVar("T")

#: The keyword arguments of :class:`ContractTransport` that set retries and timeouts.
RETRY_OPTIONS = ("max_attempts", "backoff_s", "max_backoff_s", "receipt_timeout_s")


class _NonceRejected(Exception):
    pass


def _call_fields(tx: dict) -> dict:
    """The fields of a built transaction an ``eth_call`` replays."""
    return {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}


class ContractTransport:
    """Retrying reads and locally signed transactions for one contract's ABI; ``account`` is the default sender."""

    def __init__(
        self,
        w3: Web3,
        abi: list,
        account: LocalAccount | None = None,
        *,
        max_attempts: int = 6,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        receipt_timeout_s: float = 120.0,
        gas_limit: int | None = None,
    ) -> None:
        self.w3 = w3
        # A fixed gas limit skips eth_estimateGas (a preflight eth_call still
        # names any revert). eth-tester's estimate is a ~15-run bisection in
        # pure Python, so the in-process backend uses a fixed limit.
        if gas_limit is None and isinstance(w3.provider, EthereumTesterProvider):
            gas_limit = 10_000_000
        self.gas_limit = gas_limit
        self.account = account
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.receipt_timeout_s = receipt_timeout_s
        self._nonces: dict[str, int] = {}
        self._errors: ErrorTable = error_table(abi)

    def retry_options(self) -> dict[str, Any]:
        """The retry and timeout settings, as keyword arguments (to copy them)."""
        return {name: getattr(self, name) for name in RETRY_OPTIONS}

    def reset_nonces(self) -> None:
        """Forget cached nonces; the next transaction of each sender asks the chain."""
        self._nonces.clear()

    @cached_property
    def chain_id(self) -> int:
        return self._call(lambda: self.w3.eth.chain_id, "chain id")

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` retrying transport errors with exponential backoff."""
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except TRANSPORT_ERRORS as exc:
                if attempt == self.max_attempts:
                    raise LedgerTransportError(
                        f"{what}: chain at {self._endpoint()} unreachable after {attempt} attempts "
                        f"({type(exc).__name__})"
                    ) from exc
                log.warning(
                    "%s: chain unreachable (%s), retry %d/%d in %.2fs",
                    what,
                    type(exc).__name__,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    def _endpoint(self) -> str:
        return str(getattr(self.w3.provider, "endpoint_uri", None) or type(self.w3.provider).__name__)

    def _view(self, fn: Any, what: str) -> Any:
        try:
            return self._call(lambda: fn.call(), what)
        except REVERT_ERRORS as exc:
            raise self._decode_revert(exc, what) from None

    def _next_nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._nonces[address] = self._call(lambda: self.w3.eth.get_transaction_count(address, "pending"), "nonce")
        return self._nonces[address]

    def _transact(self, fn: Any, sender: LocalAccount | None, what: str) -> dict:
        acct = sender or self.account
        if acct is None:
            raise LedgerError(f"{what}: no sender account")
        addr = acct.address
        for attempt in (1, 2):
            params = {"from": addr, "nonce": self._next_nonce(addr), "chainId": self.chain_id}
            if self.gas_limit is not None:
                params["gas"] = self.gas_limit
            try:
                tx = self._call(lambda: fn.build_transaction(params), what)
                if self.gas_limit is not None:  # no estimate ran: preflight to name a revert
                    self._call(lambda: self.w3.eth.call(_call_fields(tx)), what)
            except REVERT_ERRORS as exc:
                raise self._decode_revert(exc, what) from None
            if self.gas_limit is None:
                tx["gas"] = int(tx["gas"] * 1.25) + 20_000
            signed = acct.sign_transaction(tx)
            tx_hash = signed.hash
            try:
                self._send_raw(signed.raw_transaction, tx_hash, addr, what)
                break
            except LedgerTransportError:
                self._nonces.pop(addr, None)  # the chain may come back with another history
                raise
            except _NonceRejected:
                # someone else used this key (or the chain was reset): resync once
                self._nonces.pop(addr, None)
                if attempt == 2:
                    raise LedgerError(f"{what}: node keeps rejecting the nonce of {addr}") from None
        self._nonces[addr] = tx["nonce"] + 1
        try:
            receipt = self._wait_receipt(tx_hash, what)
        except LedgerTransportError:
            self._nonces.pop(addr, None)
            raise
        if receipt["status"] != 1:
            # Re-run the call at the mined block's parent state to name the error.
            try:
                self._call(lambda: self.w3.eth.call(_call_fields(tx), receipt["blockNumber"] - 1), what)
            except REVERT_ERRORS as exc:
                raise self._decode_revert(exc, what) from None
            raise LedgerRevert("UnknownRevert", {"tx": tx_hash.to_0x_hex()}, action=what)
        return receipt

    def _send_raw(self, raw: bytes, tx_hash: Any, addr: str, what: str) -> None:
        def send() -> None:
            try:
                self.w3.eth.send_raw_transaction(raw)
            except TRANSPORT_ERRORS:
                raise
            except Exception as exc:  # node said no: already known / mined earlier is fine
                msg = str(exc).lower()
                if "already known" in msg or "known transaction" in msg or "already imported" in msg:
                    return
                if "nonce" in msg:
                    try:
                        self.w3.eth.get_transaction_receipt(tx_hash)
                        return  # this very transaction was mined before a retry
                    except TransactionNotFound:
                        raise _NonceRejected(str(exc)) from exc
                raise LedgerError(f"{what}: node rejected transaction: {exc}") from exc

        self._call(send, what)

    def _wait_receipt(self, tx_hash: Any, what: str) -> dict:
        deadline = time.monotonic() + self.receipt_timeout_s
        delay = 0.02
        while True:
            try:
                return self._call(lambda: self.w3.eth.get_transaction_receipt(tx_hash), what)
            except TransactionNotFound:
                if time.monotonic() > deadline:
                    raise LedgerTransportError(
                        f"{what}: no receipt for {tx_hash.to_0x_hex()} after {self.receipt_timeout_s:.0f}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _decode_revert(self, exc: BaseException, what: str) -> LedgerRevert:
        return decode_revert(self._errors, revert_data(exc), what, fallback=str(exc))
