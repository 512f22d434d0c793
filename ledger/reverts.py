"""Naming a StudyLedger revert: the client's exception types and the decoding of revert data.

A revert comes back from web3 (``ContractLogicError``) or from eth-tester's
in-process EVM (``TransactionFailed``) with its return data somewhere in the
exception; :func:`revert_data` finds it and :func:`decode_revert` turns its
4-byte selector into the contract's custom error (by the ABI's
:func:`error_table`), ``Error(string)`` or ``Panic(uint256)``.
"""

from __future__ import annotations

import ast
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak
from web3.exceptions import ContractLogicError

from fedledger.hashing import as_bytes, to_hex
from ledger.abi import abi_type, selector_hash

try:  # eth-tester (py-evm in-process) raises its own type instead of web3's
    from eth_tester.exceptions import TransactionFailed as _TesterFailed
except ImportError:  # pragma: no cover - eth-tester is a dependency, but optional at runtime

    class _TesterFailed(Exception):  # type: ignore[no-redef]
        pass


#: Exceptions a reverted call or transaction raises.
REVERT_ERRORS: tuple[type[BaseException], ...] = (ContractLogicError, _TesterFailed)

#: selector -> (error name, argument names, argument types)
ErrorTable = dict[bytes, tuple[str, list[str], list[str]]]


class LedgerError(RuntimeError):
    """Base class of ledger client errors."""


class LedgerRevert(LedgerError):
    """The contract reverted; ``error`` is the custom error's name."""

    def __init__(self, error: str, args: dict[str, Any] | None = None, data: str | None = None, action: str = ""):
        self.error = error
        self.error_args = dict(args or {})
        self.data = data
        self.action = action
        shown = ", ".join(f"{k}={_show(v)}" for k, v in self.error_args.items())
        super().__init__(f"{action + ': ' if action else ''}reverted with {error}({shown})")


class LedgerTransportError(LedgerError):
    """The chain could not be reached after all retries."""


def _show(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return to_hex(v)
    return str(v)


def revert_data(exc: BaseException) -> bytes | str | None:
    """Return data of a revert from web3's or eth-tester's exception (walks the cause chain)."""
    seen = exc
    while seen is not None:
        data = getattr(seen, "data", None)
        if isinstance(data, dict):
            data = data.get("data") or next(iter(data.values()), None)
        if isinstance(data, (str, bytes)) and data:
            return data
        if seen.args and isinstance(seen.args[0], (bytes, bytearray)):
            return bytes(seen.args[0])
        starts = (
            [i for i in (seen.args[0].find("b'"), seen.args[0].find('b"')) if i >= 0]
            if seen.args and isinstance(seen.args[0], str)
            else []
        )
        if starts:
            # eth-tester: "execution reverted: b'...'" (a Python bytes literal)
            literal = seen.args[0][min(starts) :]
            try:
                value = ast.literal_eval(literal)
                if isinstance(value, bytes) and value:
                    return value
            except (ValueError, SyntaxError):
                pass
        seen = seen.__cause__ or seen.__context__
    return None


def error_table(abi: list) -> ErrorTable:
    """The ABI's custom errors by selector."""
    table = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [abi_type(i) for i in item["inputs"]]
        table[selector_hash(item)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def decode_revert(table: ErrorTable, data: str | bytes | None, action: str = "", fallback: str = "") -> LedgerRevert:
    """Name a revert from its return data: custom error, Error(string) or Panic(uint256)."""
    if isinstance(data, str):
        raw = as_bytes(data) if data.startswith("0x") else b""
    else:
        raw = bytes(data or b"")
    if len(raw) < 4:
        return LedgerRevert("UnknownRevert", {"message": fallback} if fallback else {}, None, action)
    sel, body = raw[:4], raw[4:]
    hexdata = to_hex(raw)
    if sel in table:
        name, names, types = table[sel]
        values = abi_decode(types, body) if types else ()
        return LedgerRevert(name, dict(zip(names, values)), hexdata, action)
    if sel == keccak(text="Error(string)")[:4]:
        return LedgerRevert("Error", {"message": abi_decode(["string"], body)[0]}, hexdata, action)
    if sel == keccak(text="Panic(uint256)")[:4]:
        return LedgerRevert("Panic", {"code": abi_decode(["uint256"], body)[0]}, hexdata, action)
    return LedgerRevert("UnknownRevert", {"selector": to_hex(sel)}, hexdata, action)
