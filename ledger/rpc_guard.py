"""A JSON-RPC guard in front of a chain used as evidence: standard read and send methods only.

Anvil answers cheat methods (``anvil_*``, ``evm_*``, ``hardhat_*``:
impersonation, balance and storage overrides, snapshots and reverts) and
signs ``eth_sendTransaction`` for accounts it holds or impersonates. A
coordinator who can call them can rewrite the study's chain. The guard
forwards only :data:`ALLOWED`, reads and raw signed transactions, and
answers anything else with JSON-RPC error ``-32601`` naming the method::

    python -m ledger.rpc_guard --upstream http://127.0.0.1:8546 --listen 127.0.0.1:8545

The node behind it listens on loopback only (deploy/run_chain.sh); hospitals,
the aggregator and auditors reach the chain through the guard.
"""

from __future__ import annotations

import argparse
import json
import logging
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("fedledger.rpc_guard")

#: What a hospital, the aggregator, the coordinator's setup and the auditor use: reads and signed sends.
ALLOWED = frozenset(
    {
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getBlockReceipts",
        "eth_getCode",
        "eth_getLogs",
        "eth_getStorageAt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "eth_sendRawTransaction",
        "eth_syncing",
        "net_listening",
        "net_version",
        "web3_clientVersion",
    }
)
METHOD_NOT_ALLOWED = -32601
INVALID_REQUEST = -32600
MAX_BODY = 8 * 1024 * 1024


def refusal(request_id: Any, method: object) -> dict[str, Any]:
    """The JSON-RPC error a refused method gets."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": METHOD_NOT_ALLOWED,
            "message": f"method {method!r} is not allowed through the fedledger RPC guard (ledger/rpc_guard.py)",
        },
    }


def screen(body: Any) -> tuple[list[Any], dict[int, dict[str, Any]]]:
    """Split a request (one call or a batch) into the calls to forward and refusals by position."""
    calls = body if isinstance(body, list) else [body]
    forward: list[Any] = []
    refused: dict[int, dict[str, Any]] = {}
    for i, call in enumerate(calls):
        method = call.get("method") if isinstance(call, dict) else None
        if isinstance(method, str) and method in ALLOWED:
            forward.append(call)
        else:
            refused[i] = refusal(call.get("id") if isinstance(call, dict) else None, method)
    return forward, refused


class Guard:
    """Forward allowed calls to ``upstream``; refuse the rest."""

    def __init__(self, upstream: str, timeout_s: float = 60.0):
        self.upstream, self.timeout_s = upstream, timeout_s

    def _post(self, payload: Any) -> Any:
        req = urllib.request.Request(
            self.upstream, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return json.loads(resp.read())

    def handle(self, body: Any) -> Any:
        """The answer to one HTTP request's JSON body, in the request's shape and order."""
        if not isinstance(body, (dict, list)) or body == []:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "invalid request"}}
        forward, refused = screen(body)
        for r in refused.values():
            log.warning("rpc guard refused %s", r["error"]["message"])
        if not isinstance(body, list):
            return refused[0] if refused else self._post(body)
        answers = self._post(forward) if forward else []
        by_id = {json.dumps(a.get("id")): a for a in answers if isinstance(a, dict)}
        out, k = [], 0
        for i in range(len(body)):
            if i in refused:
                out.append(refused[i])
            else:
                out.append(by_id.get(json.dumps(forward[k].get("id")), answers[k] if k < len(answers) else None))
                k += 1
        return out


def make_server(upstream: str, host: str, port: int) -> ThreadingHTTPServer:
    """The guard's HTTP server (not started); ``server_address`` says the port when ``port`` is 0."""
    guard = Guard(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a hospital's web3 session reuses its connection

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413, "request too large")
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                body = None
            try:
                answer = guard.handle(body)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.send_error(502, f"upstream chain: {exc}")
                return
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledger.rpc_guard", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="the chain node's JSON-RPC URL (keep it on loopback)")
    p.add_argument("--listen", required=True, help="HOST:PORT the guard serves on")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        p.error(f"--listen must be HOST:PORT, got {args.listen!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = make_server(args.upstream, host, int(port))
    log.info("rpc guard on %s:%s -> %s (%d methods allowed)", host, port, args.upstream, len(ALLOWED))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
