"""In-process chains (eth_tester) by contract address, so the ServerApp thread reuses the launcher's EVM.

An eth_tester chain exists only inside one Python process; a simulated
study's ServerApp runs in a thread of that process and finds it here. Hospital
clients in Ray workers cannot reach it, so with eth_tester they skip the
on-chain model check (documented in docs/LEDGER.md); use anvil for that.
"""

from __future__ import annotations

from typing import Any

_CHAINS: dict[str, Any] = {}


def register(contract: str, chain: Any) -> None:
    _CHAINS[contract.lower()] = chain


def lookup(contract: str) -> Any | None:
    return _CHAINS.get(contract.lower())
