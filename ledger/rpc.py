"""JSON-RPC plumbing shared by everyone who reads a chain: the web3 HTTP builder, a liveness probe, transport errors."""

from __future__ import annotations

import requests
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

#: Exceptions treated as "the chain is (temporarily) unreachable": retried, never a verdict.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


def http_w3(url: str, timeout: float = 10.0) -> Web3:
    # Retries are the ledger client's job (with its own backoff and limits). web3's validation asks
    # eth_chainId before every call; an endpoint's chain id does not change, so that one answer is cached.
    return Web3(
        HTTPProvider(
            url,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
    )


def rpc_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=timeout)
        return r.ok and "result" in r.json()
    except (requests.RequestException, ValueError):
        return False
