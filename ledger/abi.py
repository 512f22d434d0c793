"""Canonical ABI signatures from the contract's JSON ABI (the client's revert table, the auditor's log reader)."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak


def abi_type(inp: dict[str, Any]) -> str:
    """The canonical type of one ABI input: tuples spelled out, ``tuple[]`` as ``(...)[]``."""
    if inp["type"].startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in inp["components"]) + ")" + inp["type"][5:]
    return str(inp["type"])


def signature(item: dict[str, Any]) -> str:
    """``name(type,...)`` of an ABI function, event or error: what selectors and topics hash."""
    return f"{item['name']}({','.join(abi_type(i) for i in item['inputs'])})"


def selector_hash(item: dict[str, Any]) -> bytes:
    """keccak256 of the signature: an event's topic 0; its first 4 bytes a function's selector."""
    return keccak(text=signature(item))
