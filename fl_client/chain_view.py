"""What a hospital reads from the chain before it trusts a task: the model hash recorded, the protocol registered.

This is the defence against the inconsistent-model attack: the aggregator
cannot send one hospital a different model than the one it recorded.

Every hospital reads the chain twice a round (before training, before
evaluating), so the common case is one bare ``eth_call`` of
``getRound(bytes32,uint64)`` with the calldata built here; web3's contract
machinery (ABI lookup, validation, formatting) cost more than the call itself.
Anything unusual (a revert such as ``RoundNotRecorded``, a transport error)
is asked again through :class:`ledger.client.LedgerClient`, which names the
error and retries with backoff. The study's registered ``configHash`` (its
protocol hash, fedledger/protocol.py) is read the same way, by one bare
``getStudy(bytes32)``, once per study; the round's ``totalSamples`` (the weight
an encrypted aggregate is divided by) by the same ``getRound`` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

from eth_abi import encode
from eth_utils import keccak

from fedledger.hashing import as_bytes, as_bytes32, to_hex
from ledger.client import LedgerClient
from ledger.reverts import LedgerRevert
from ledger.rpc import http_w3

GET_ROUND_SELECTOR = keccak(text="getRound(bytes32,uint64)")[:4]
GET_STUDY_SELECTOR = keccak(text="getStudy(bytes32)")[:4]


@lru_cache(maxsize=4)
def _client(rpc_url: str, contract: str) -> LedgerClient:
    return LedgerClient.at(http_w3(rpc_url), contract)


def get_round_calldata(study_id: str | bytes, server_round: int) -> bytes:
    """ABI calldata of ``getRound(studyId, round)`` (pinned in tests/test_chain_view.py)."""
    return GET_ROUND_SELECTOR + encode(["bytes32", "uint64"], [as_bytes32(study_id), int(server_round)])


def get_study_calldata(study_id: str | bytes) -> bytes:
    """ABI calldata of ``getStudy(studyId)`` (pinned in tests/test_chain_view.py)."""
    return GET_STUDY_SELECTOR + encode(["bytes32"], [as_bytes32(study_id)])


def _bare_call(rpc_url: str, contract: str, data: bytes) -> bytes | None:
    """One bare eth_call's result, or None when the answer is not a plain result (asked again by the client)."""
    w3 = _client(rpc_url, contract).w3
    try:
        resp = w3.provider.make_request("eth_call", [{"to": contract, "data": to_hex(data)}, "latest"])
    except Exception:
        return None
    result = resp.get("result") if isinstance(resp, dict) else None
    if not isinstance(result, str) or "error" in resp:
        return None
    return as_bytes(result)


@lru_cache(maxsize=16)
def registered_config_hash(rpc_url: str, contract: str, study_id: str) -> str:
    """The study's registered ``configHash`` (its protocol hash, docs/HASHES.md); cached: it never changes."""
    raw = _bare_call(rpc_url, contract, get_study_calldata(study_id))
    if raw is not None and len(raw) >= 9 * 32 and any(raw[:32]):  # configHash is getStudy's first word
        return to_hex(raw[:32])
    return to_hex(_client(rpc_url, contract).read_study(study_id).config_hash)


def _aggregate_hash_fast(rpc_url: str, contract: str, study_id: str, server_round: int) -> bytes | None:
    """The recorded aggregate hash by one bare eth_call, or None when the answer is not a plain result."""
    raw = _bare_call(rpc_url, contract, get_round_calldata(study_id, server_round))
    if raw is None:
        return None
    return raw[32:64] if len(raw) >= 8 * 32 else None  # getRound returns 8 words; aggregateHash is the second


@lru_cache(maxsize=64)
def recorded_global_hash(rpc_url: str, contract: str, study_id: str, server_round: int) -> str:
    """Round 0: the registered initial model; round r: the aggregate recorded for round r.

    Cached: the contract never rewrites a recorded round (RoundAlreadyRecorded), so the hash read
    before evaluating round r is still the one to check before training round r+1. Errors (a round
    not recorded yet) are not cached.
    """
    client = _client(rpc_url, contract)
    if server_round <= 0:
        return to_hex(client.read_study(study_id).initial_model_hash)
    fast = _aggregate_hash_fast(rpc_url, contract, study_id, server_round)
    if fast is not None:
        return to_hex(fast)
    return to_hex(client.read_round(study_id, server_round).aggregate_hash)


@lru_cache(maxsize=64)
def recorded_total_samples(rpc_url: str, contract: str, study_id: str, server_round: int) -> int:
    """The round's recorded ``totalSamples``: the weight its aggregate must be divided by (getRound's third word).

    Cached like :func:`recorded_global_hash`: a recorded round is never rewritten.
    """
    raw = _bare_call(rpc_url, contract, get_round_calldata(study_id, server_round))
    if raw is not None and len(raw) >= 8 * 32 and any(raw[32:64]):
        return int.from_bytes(raw[64:96], "big")
    return int(_client(rpc_url, contract).read_round(study_id, server_round).total_samples)


def wait_for_recorded_hash(
    rpc_url: str,
    contract: str,
    study_id: str,
    server_round: int,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """:func:`recorded_global_hash`, waiting up to ``wait_s`` for a round that is not on chain yet.

    The aggregator sends the evaluation task while its record of the round is
    being mined (the round protocol overlaps the two), and a hospital's own
    RPC node may be a block behind the aggregator's: a ``RoundNotRecorded``
    is asked again, with backoff, until the deadline; any other error, or the
    deadline, raises as before.
    """
    deadline = clock() + max(0.0, float(wait_s))
    delay = 0.01
    while True:
        try:
            return recorded_global_hash(rpc_url, contract, study_id, server_round)
        except LedgerRevert as exc:
            left = deadline - clock()
            if exc.error != "RoundNotRecorded" or left <= 0:
                raise
        sleep(min(delay, left))
        delay = min(delay * 2, 0.25)  # a worker waiting here holds its task slot: notice the record soon
