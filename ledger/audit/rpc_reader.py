"""Read StudyLedger logs, calldata and block times from a chain with the contract ABI alone.

Over HTTP (anvil, any JSON-RPC node) raw JSON-RPC answers are decoded with
eth_abi and the per-round requests are batched, because web3's result
formatters cost more than the request itself; other providers (eth_tester,
in-process) go through web3's API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from eth_abi import decode

from fedledger.hashing import as_bytes, to_hex
from ledger.abi import abi_type, selector_hash
from ledger.rpc import TRANSPORT_ERRORS

T = TypeVar("T")


def retry(fn: Callable[[], T], what: str, attempts: int = 4) -> T:
    """``fn()``, retried with backoff while the node is unreachable."""
    delay = 0.25
    for i in range(attempts):
        try:
            return fn()
        except TRANSPORT_ERRORS:
            if i == attempts - 1:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError(what)


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def named_outputs(contract: Any, fn_name: str, values: Any) -> dict[str, Any]:
    """A view function's return values by output name (``_i`` for unnamed outputs)."""
    abi = next(x for x in contract.abi if x.get("type") == "function" and x.get("name") == fn_name)
    names = [o["name"] or f"_{i}" for i, o in enumerate(abi["outputs"])]
    values = values if isinstance(values, (list, tuple)) else [values]
    return dict(zip(names, values))


class ChainReader:
    """Logs, transaction inputs and block times of one contract, from ``from_block`` on."""

    BATCH = 200

    def __init__(self, w3: Any, contract: Any, from_block: int):
        self.w3, self.c, self.start = w3, contract, int(from_block)
        self.http = hasattr(w3.provider, "make_batch_request") and hasattr(w3.provider, "endpoint_uri")
        self.events = {x["name"]: x for x in contract.abi if x.get("type") == "event"}

    def _request(self, method: str, params: list) -> Any:
        resp = retry(lambda: self.w3.provider.make_request(method, params), method)
        if "error" in resp:
            raise RuntimeError(f"{method}: {resp['error']}")
        return resp["result"]

    def _batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        out = []
        for i in range(0, len(calls), self.BATCH):
            chunk = calls[i : i + self.BATCH]
            resps = retry(lambda: self.w3.provider.make_batch_request(chunk), "batch")
            if isinstance(resps, dict):  # a node that refuses batches answers with one error
                return [self._request(m, p) for m, p in calls]
            resps = sorted(resps, key=lambda r: r.get("id", 0))
            for r in resps:
                if "error" in r:
                    raise RuntimeError(f"batch request: {r['error']}")
                out.append(r["result"])
        return out

    def logs(self, name: str, study_id: bytes | None = None) -> list[dict[str, Any]]:
        """[{block, log_index, tx, args}] in chain order; ``study_id`` filters the indexed studyId."""
        out = self._http_logs(name, study_id) if self.http else self._web3_logs(name, study_id)
        return sorted(out, key=lambda e: (e["block"], e["log_index"]))

    def _web3_logs(self, name: str, study_id: bytes | None) -> list[dict[str, Any]]:
        ev = getattr(self.c.events, name)
        filters = {"studyId": study_id} if study_id is not None else None
        raw = retry(
            lambda: ev().get_logs(from_block=self.start, to_block="latest", argument_filters=filters),
            f"{name} logs",
        )
        return [
            {
                "block": int(e["blockNumber"]),
                "log_index": int(e["logIndex"]),
                "tx": bytes(e["transactionHash"]),
                "args": dict(e["args"]),
            }
            for e in raw
        ]

    def _http_logs(self, name: str, study_id: bytes | None) -> list[dict[str, Any]]:
        abi = self.events[name]
        topics: list[Any] = [to_hex(selector_hash(abi))]
        if study_id is not None:
            topics.append(to_hex(study_id))
        raw = self._request(
            "eth_getLogs",
            [{"address": self.c.address, "fromBlock": hex(self.start), "toBlock": "latest", "topics": topics}],
        )
        indexed = [i for i in abi["inputs"] if i["indexed"]]
        plain = [i for i in abi["inputs"] if not i["indexed"]]
        out = []
        for e in raw:
            args = {}
            for inp, topic in zip(indexed, e["topics"][1:]):
                (args[inp["name"]],) = decode([abi_type(inp)], as_bytes(topic))
            for inp, val in zip(plain, decode([abi_type(i) for i in plain], as_bytes(e["data"]))):
                args[inp["name"]] = val
            out.append(
                {
                    "block": _int(e["blockNumber"]),
                    "log_index": _int(e["logIndex"]),
                    "tx": as_bytes(e["transactionHash"]),
                    "args": args,
                }
            )
        return out

    def tx_inputs(self, txs: list[bytes]) -> dict[bytes, bytes]:
        if not self.http:
            return {t: bytes(retry(lambda: self.w3.eth.get_transaction(t), "get transaction")["input"]) for t in txs}
        res = self._batch([("eth_getTransactionByHash", [to_hex(t)]) for t in txs])
        return {t: as_bytes(r["input"]) for t, r in zip(txs, res)}

    def block_times(self, blocks: list[int]) -> dict[int, int]:
        blocks = sorted(set(blocks))
        if not self.http:
            return {b: int(retry(lambda: self.w3.eth.get_block(b)["timestamp"], "get block")) for b in blocks}
        res = self._batch([("eth_getBlockByNumber", [hex(b), False]) for b in blocks])
        return {b: _int(r["timestamp"]) for b, r in zip(blocks, res)}

    def decode_record_round(self, data: bytes) -> dict[str, Any]:
        """Arguments of a recordRound or recordRoundMerkle call; ``_function`` names which."""
        for name in ("recordRound", "recordRoundMerkle"):
            abi = next((x for x in self.c.abi if x.get("type") == "function" and x.get("name") == name), None)
            if abi is None:
                continue
            if data[:4] == selector_hash(abi)[:4]:
                values = decode([abi_type(i) for i in abi["inputs"]], data[4:])
                out = dict(zip([i["name"] for i in abi["inputs"]], values))
                out["_function"] = name
                return out
        raise ValueError("transaction is not a recordRound or recordRoundMerkle call")
