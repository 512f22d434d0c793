"""What a hospital reads from the chain before it trusts a model: the hash recorded for it.

This is the defence against the inconsistent-model attack: the aggregator
cannot send one hospital a different model than the one it recorded.
"""

from __future__ import annotations

from functools import lru_cache

from fedledger.hashing import to_hex


@lru_cache(maxsize=4)
def _client(rpc_url: str, contract: str):  # noqa: ANN202 - cached web3 client per chain
    from ledger.chains import _http_w3
    from ledger.client import LedgerClient

    return LedgerClient.at(_http_w3(rpc_url), contract)


def recorded_global_hash(rpc_url: str, contract: str, study_id: str, server_round: int) -> str:
    """Round 0: the registered initial model; round r: the aggregate recorded for round r."""
    client = _client(rpc_url, contract)
    if server_round <= 0:
        return to_hex(client.read_study(study_id).initial_model_hash)
    info = client.read_round(study_id, server_round)
    return to_hex(info.aggregate_hash)
