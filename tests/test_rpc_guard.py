"""The JSON-RPC guard (ledger/rpc_guard.py) and the auditor's cheat-method probe (ledger/audit/cheat_probe.py).

The upstream here is a tiny JSON-RPC server that answers every method with
its own name, the way anvil answers its cheat methods: what reaches it shows
what the guard let through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
import requests

from ledger.audit.cheat_probe import check_evidence_chain
from ledger.audit.records import ChainView
from ledger.rpc import http_w3
from ledger.rpc_guard import METHOD_NOT_ALLOWED, make_server


class _AnswersEverything(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        calls = body if isinstance(body, list) else [body]
        answers = [{"jsonrpc": "2.0", "id": c["id"], "result": c["method"]} for c in calls]
        self.seen.extend(c["method"] for c in calls)
        data = json.dumps(answers if isinstance(body, list) else answers[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture
def upstream() -> Iterator[str]:
    _AnswersEverything.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersEverything)
    yield _serve(server)
    server.shutdown()
    server.server_close()


@pytest.fixture
def guard(upstream: str) -> Iterator[str]:
    server = make_server(upstream, "127.0.0.1", 0)
    yield _serve(server)
    server.shutdown()
    server.server_close()


def _call(url: str, body: Any) -> Any:
    return requests.post(url, json=body, timeout=5).json()


def test_guard_forwards_standard_methods(guard: str) -> None:
    answer = _call(guard, {"jsonrpc": "2.0", "id": 7, "method": "eth_getBlockByNumber", "params": ["0x1", False]})

    assert answer == {"jsonrpc": "2.0", "id": 7, "result": "eth_getBlockByNumber"}
    assert _AnswersEverything.seen == ["eth_getBlockByNumber"]


@pytest.mark.parametrize(
    "method",
    ["anvil_impersonateAccount", "evm_snapshot", "evm_revert", "hardhat_setStorageAt", "eth_sendTransaction", "x"],
)
def test_guard_refuses_cheat_methods_without_forwarding(guard: str, method: str) -> None:
    answer = _call(guard, {"jsonrpc": "2.0", "id": 1, "method": method, "params": []})

    assert answer["error"]["code"] == METHOD_NOT_ALLOWED
    assert method in answer["error"]["message"]
    assert _AnswersEverything.seen == []


def test_guard_batch_keeps_order_and_forwards_only_allowed(guard: str) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "anvil_setBalance", "params": ["0x00", "0x1"]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_call", "params": [{}, "latest"]},
    ]

    answers = _call(guard, batch)

    assert [a["id"] for a in answers] == [1, 2, 3]
    assert [a.get("result") for a in answers] == ["eth_chainId", None, "eth_call"]
    assert answers[1]["error"]["code"] == METHOD_NOT_ALLOWED
    assert _AnswersEverything.seen == ["eth_chainId", "eth_call"]


def test_guard_answers_garbage_with_an_error(guard: str) -> None:
    assert _call(guard, [])["error"]["code"] == -32600
    assert _call(guard, ["eth_chainId"])[0]["error"]["code"] == METHOD_NOT_ALLOWED


def _view() -> ChainView:
    return ChainView(b"\x00" * 32, 1, "0x" + "00" * 20, b"", b"", b"", "", 0, 0, {}, [])


def test_probe_fails_a_required_evidence_chain_that_answers_cheat_methods(upstream: str) -> None:
    view = _view()

    findings = check_evidence_chain(http_w3(upstream), view, required=True)

    assert [f.ok for f in findings] == [False]
    assert "anvil_nodeInfo" in findings[0].message
    assert _AnswersEverything.seen == ["anvil_nodeInfo", "hardhat_metadata"]


def test_probe_only_notices_by_default_and_passes_through_the_guard(upstream: str, guard: str) -> None:
    view = _view()

    direct = check_evidence_chain(http_w3(upstream), view, required=False)
    guarded = check_evidence_chain(http_w3(guard), _view(), required=True)

    assert direct == [] and "anvil_nodeInfo" in view.notices[0]
    assert [f.ok for f in guarded] == [True]


def test_guard_answers_502_when_the_chain_is_down() -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersEverything)
    dead_url = _serve(closed)
    closed.shutdown()
    closed.server_close()
    server = make_server(dead_url, "127.0.0.1", 0)
    url = _serve(server)
    try:
        resp = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=5)
    finally:
        server.shutdown()
        server.server_close()

    assert resp.status_code == 502 and "upstream chain" in resp.text
