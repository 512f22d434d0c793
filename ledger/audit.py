"""The auditor: verify a study's entire history from the chain, with no secret key.

Two halves:

* **reading** (:func:`read_chain_view`, :func:`load_public_context`): turn the
  chain (StudyLedger events, the calldata of each ``recordRound`` transaction,
  block timestamps) into a plain :class:`ChainView`. Nothing is trusted from
  the aggregator here; the view is what the chain says.
* **checking** (every ``check_*`` function and :func:`audit`): pure functions
  over a :class:`ChainView` and, optionally, the run's artifact store. Each
  returns :class:`Finding` objects, one per (round, check) when the check
  holds, one per failing (round, hospital, check) when it does not, so a
  report can name exactly what broke.

Checks (docs/AUDIT.md has the full list):

``hash_chain``    rounds 1..R contiguous and ordered, round 1 links to the
                  registered initial model, round r to round r-1's aggregate.
``signature``     every commitment re-verified OFF-CHAIN: the recovered signer
                  equals the hospital the chain says took part.
``binding``       commitment fields bind this study, round and previous hash.
``registered`` / ``consent`` / ``expiry`` / ``budget`` / ``samples``
                  registration, consent at that block, round time within the
                  study expiry, epsilon within the hospital budget, sample
                  counts sum to the recorded total, commitments hash matches.
``merkle``        Merkle-mode rounds (mode 2, only a root on chain): every leaf in
                  the round manifest is recomputed from its commitment and signer,
                  its proof verifies against the on-chain root, the leaves rebuild
                  the root, their number is the recorded participant count, the
                  max-epsilon claim holds, and each leaf is the update stored and
                  summed. The leaves then go through every per-hospital check
                  above (signature, binding, registration, consent, budget, samples)
                  and ``privacy``, exactly like on-chain commitments.
``privacy``       each hospital's cumulative epsilon never decreases, within budget.
``context``       the public CKKS context used for the re-sum is the registered one.
``manifest`` / ``participants`` / ``blobs`` / ``update_hash`` / ``resum``
                  the artifact store agrees with the chain; stored updates
                  re-sum (public context only) to the recorded aggregate hash.
``checkpoint``    released checkpoints hash to the on-chain ModelReleased hash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address

from fedledger.commitment import (
    EIP712_TYPES,
    CommitmentError,
    Domain,
    RoundCommitment,
    recover_signer,
)
from fedledger.commitment import (
    domain as make_domain,
)
from fedledger.files import load_npz
from fedledger.hashing import as_bytes, ciphertexts_hash, model_hash, sha256, to_hex

ZERO32 = b"\x00" * 32
FORMAT = "fedledger-audit-v1"
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0

#: Every check name, in report order.
CHECKS = (
    "study",
    "hash_chain",
    "signature",
    "binding",
    "registered",
    "consent",
    "expiry",
    "budget",
    "samples",
    "merkle",
    "privacy",
    "context",
    "manifest",
    "participants",
    "blobs",
    "update_hash",
    "resum",
    "checkpoint",
)


# ====================================================================== data


@dataclass
class Finding:
    """One check's verdict; ``round``/``hospital`` are None for study-wide checks."""

    check: str
    ok: bool
    message: str
    round: int | None = None
    hospital: str | None = None  # checksum address, or a manifest's hospital name
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("pass" if self.ok else "fail")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        return d


@dataclass(frozen=True)
class CommitmentView:
    hospital: str  # the signer the contract recovered (CommitmentRecorded.hospital)
    commitment: RoundCommitment
    signature: bytes
    log_index: int = 0


@dataclass
class RoundView:
    round: int
    prev_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    participants: int
    block: int
    timestamp: int
    commitments: list[CommitmentView]
    commitments_hash: bytes | None = None  # mode 2: the Merkle root of the commitments
    tx_hash: str = ""
    log_index: int = 0
    mode: int = 1  # 1: commitments on chain (recordRound); 2: Merkle root only (recordRoundMerkle)
    max_epsilon_micro: int | None = None  # mode 2: the aggregator's claim in the calldata
    leaves_loaded: bool = False  # mode 2: commitments were filled in from the manifest's leaves


@dataclass
class HospitalView:
    address: str
    budget_micro: int
    #: (block, log_index, kind) with kind in registered | consented | withdrawn, in chain order
    events: list[tuple[int, int, str]] = field(default_factory=list)

    def status_at(self, block: int, log_index: int) -> str:
        status = "none"
        cached = self.__dict__.get("_sorted")
        if cached is None or cached[0] != len(self.events):
            cached = (len(self.events), sorted(self.events))
            self.__dict__["_sorted"] = cached
        for b, li, kind in cached[1]:
            if (b, li) < (block, log_index):
                status = kind
        return status


@dataclass
class ChainView:
    """What the chain says about one study (no aggregator input)."""

    study_id: bytes
    chain_id: int
    contract: str
    initial_model_hash: bytes
    context_hash: bytes
    config_hash: bytes
    aggregator: str
    expiry: int
    last_round: int
    hospitals: dict[str, HospitalView]
    rounds: list[RoundView]
    released: dict[int, bytes] = field(default_factory=dict)
    code_version: str = ""
    registered_at: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # address -> human name (from manifests)
    notices: list[str] = field(default_factory=list)  # events outside the normal flow
    head_block: int = 0

    @property
    def domain(self) -> Domain:
        return make_domain(self.chain_id, self.contract)

    def label(self, address: str | None) -> str | None:
        if address is None:
            return None
        name = self.labels.get(address)
        return f"{name} ({address})" if name else address


# ============================================================== signatures


def _domain_separator(dom: Domain) -> bytes:
    t = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        t
        + keccak(text=dom.name)
        + keccak(text=dom.version)
        + dom.chain_id.to_bytes(32, "big")
        + bytes(12)
        + as_bytes(dom.verifying_contract)
    )


_TYPEHASH = keccak(
    text="RoundCommitment(" + ",".join(f"{f['type']} {f['name']}" for f in EIP712_TYPES["RoundCommitment"]) + ")"
)


def commitment_digest_independent(separator: bytes, c: RoundCommitment) -> bytes:
    """EIP-712 digest written out from docs/HASHES.md (a second implementation, keccak only)."""
    struct = keccak(
        _TYPEHASH
        + c.study_id
        + c.round.to_bytes(32, "big")
        + c.prev_global_hash
        + c.update_hash
        + c.sample_count.to_bytes(32, "big")
        + c.epsilon_micro.to_bytes(32, "big")
    )
    return keccak(b"\x19\x01" + separator + struct)


def _ecrecover(digest: bytes, signature: bytes) -> str:
    from eth_keys import keys

    if len(signature) != 65:
        raise CommitmentError(f"signature must be 65 bytes, got {len(signature)}")
    r, s, v = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big"), signature[64]
    if s > SECP256K1_HALF_N:
        raise CommitmentError("signature has a high s value (malleable)")
    if v not in (27, 28):
        raise CommitmentError(f"signature v must be 27 or 28, got {v}")
    if _coincurve is not None:
        try:
            pub = _coincurve.PublicKey.from_signature_and_message(signature[:64] + bytes([v - 27]), digest, hasher=None)
        except Exception as exc:
            raise CommitmentError(f"invalid signature: {exc}") from exc
        return to_hex(keccak(pub.format(compressed=False)[1:])[-20:])  # lowercase; compared case-insensitively
    try:
        pub = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except Exception as exc:  # eth_keys raises several types
        raise CommitmentError(f"invalid signature: {exc}") from exc
    return pub.to_checksum_address()


try:  # libsecp256k1 when installed (eth_keys uses it too); the pure-Python curve otherwise
    import coincurve as _coincurve
except ImportError:  # pragma: no cover
    _coincurve = None


class SignerVerifier:
    """Recover commitment signers off-chain.

    ``reference=True``: every signature through :func:`fedledger.commitment.recover_signer`.
    Default: an independent digest (docs/HASHES.md) + ecrecover, cross-checked
    against ``recover_signer`` on the first commitment of every hospital and on
    every signature that fails, so each failure is confirmed by the reference
    implementation. Both paths reject high-s and malformed signatures.
    """

    def __init__(self, dom: Domain, reference: bool = False):
        self.dom = dom
        self.reference = reference
        self.separator = _domain_separator(dom)
        self._crosschecked: set[str] = set()

    def recover(self, c: RoundCommitment, signature: bytes, claimed: str, digest: bytes | None = None) -> str:
        if self.reference:
            return recover_signer(self.dom, c, signature)
        try:
            fast = _ecrecover(digest or commitment_digest_independent(self.separator, c), signature)
            if fast.lower() == claimed.lower():
                fast = claimed
        except CommitmentError:
            fast = None
        if fast is None or fast != claimed or claimed not in self._crosschecked:
            ref = recover_signer(self.dom, c, signature)  # raises CommitmentError like the fast path
            if fast is not None and ref.lower() != fast.lower():
                raise CommitmentError(f"independent digest disagrees with fedledger.commitment ({fast} vs {ref})")
            self._crosschecked.add(ref)
            return ref
        return fast


# ================================================================== reading


def _retry(fn, what: str, attempts: int = 4):
    import requests

    delay = 0.25
    for i in range(attempts):
        try:
            return fn()
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError, TimeoutError):
            if i == attempts - 1:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError(what)


def _named_outputs(contract: Any, fn_name: str, values: Any) -> dict[str, Any]:
    abi = next(x for x in contract.abi if x.get("type") == "function" and x.get("name") == fn_name)
    names = [o["name"] or f"_{i}" for i, o in enumerate(abi["outputs"])]
    values = values if isinstance(values, (list, tuple)) else [values]
    return dict(zip(names, values))


def _abi_type(inp: dict) -> str:
    if inp["type"].startswith("tuple"):
        return "(" + ",".join(_abi_type(x) for x in inp["components"]) + ")" + inp["type"][5:]
    return inp["type"]


def _int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


class _ChainReader:
    """Reads logs, calldata and block times from the StudyLedger ABI alone.

    Over HTTP (anvil, any JSON-RPC node) it decodes raw JSON-RPC answers with
    eth_abi and batches the per-round requests (web3's formatters cost ~2 ms a
    call); other providers (eth_tester, in-process) go through web3's API.
    """

    BATCH = 200

    def __init__(self, w3: Any, contract: Any, from_block: int):
        self.w3, self.c, self.start = w3, contract, int(from_block)
        self.http = hasattr(w3.provider, "make_batch_request") and hasattr(w3.provider, "endpoint_uri")
        self.events = {x["name"]: x for x in contract.abi if x.get("type") == "event"}

    def _request(self, method: str, params: list) -> Any:
        resp = _retry(lambda: self.w3.provider.make_request(method, params), method)
        if "error" in resp:
            raise RuntimeError(f"{method}: {resp['error']}")
        return resp["result"]

    def _batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        out = []
        for i in range(0, len(calls), self.BATCH):
            chunk = calls[i : i + self.BATCH]
            resps = _retry(lambda: self.w3.provider.make_batch_request(chunk), "batch")
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
        if not self.http:
            ev = getattr(self.c.events, name)
            filters = {"studyId": study_id} if study_id is not None else None
            raw = _retry(
                lambda: ev().get_logs(from_block=self.start, to_block="latest", argument_filters=filters),
                f"{name} logs",
            )
            out = [
                {
                    "block": int(e["blockNumber"]),
                    "log_index": int(e["logIndex"]),
                    "tx": bytes(e["transactionHash"]),
                    "args": dict(e["args"]),
                }
                for e in raw
            ]
        else:
            from eth_abi import decode

            abi = self.events[name]
            sig = keccak(text=f"{name}({','.join(_abi_type(i) for i in abi['inputs'])})")
            topics: list[Any] = [to_hex(sig)]
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
                    (args[inp["name"]],) = decode([_abi_type(inp)], as_bytes(topic))
                for inp, val in zip(plain, decode([_abi_type(i) for i in plain], as_bytes(e["data"]))):
                    args[inp["name"]] = val
                out.append(
                    {
                        "block": _int(e["blockNumber"]),
                        "log_index": _int(e["logIndex"]),
                        "tx": as_bytes(e["transactionHash"]),
                        "args": args,
                    }
                )
        return sorted(out, key=lambda e: (e["block"], e["log_index"]))

    def tx_inputs(self, txs: list[bytes]) -> dict[bytes, bytes]:
        if not self.http:
            return {t: bytes(_retry(lambda: self.w3.eth.get_transaction(t), "get transaction")["input"]) for t in txs}
        res = self._batch([("eth_getTransactionByHash", [to_hex(t)]) for t in txs])
        return {t: as_bytes(r["input"]) for t, r in zip(txs, res)}

    def block_times(self, blocks: list[int]) -> dict[int, int]:
        blocks = sorted(set(blocks))
        if not self.http:
            return {b: int(_retry(lambda: self.w3.eth.get_block(b)["timestamp"], "get block")) for b in blocks}
        res = self._batch([("eth_getBlockByNumber", [hex(b), False]) for b in blocks])
        return {b: _int(r["timestamp"]) for b, r in zip(blocks, res)}

    def decode_record_round(self, data: bytes) -> dict[str, Any]:
        """Arguments of a recordRound or recordRoundMerkle call; ``_function`` names which."""
        from eth_abi import decode

        for name in ("recordRound", "recordRoundMerkle"):
            abi = next((x for x in self.c.abi if x.get("type") == "function" and x.get("name") == name), None)
            if abi is None:
                continue
            types = [_abi_type(i) for i in abi["inputs"]]
            if data[:4] == keccak(text=f"{name}({','.join(types)})")[:4]:
                out = dict(zip([i["name"] for i in abi["inputs"]], decode(types, data[4:])))
                out["_function"] = name
                return out
        raise ValueError("transaction is not a recordRound or recordRoundMerkle call")


def read_chain_view(
    w3: Any, contract: str, study_id: bytes | str, from_block: int = 0, client: Any = None, abi: list | None = None
) -> ChainView:
    """Everything the chain records about ``study_id``: events, recordRound calldata, block times.

    A reader of its own (web3/eth_abi and the contract ABI from
    ledger/artifacts/StudyLedger.json only), so the auditor does not depend on
    the aggregator's client code. Commitments come from the
    ``CommitmentRecorded`` logs of each round's transaction (the signer the
    contract recovered), their full fields and signatures from that
    transaction's calldata.
    """
    from ledger.compile import load_artifact

    abi = abi or load_artifact()["abi"]
    c = w3.eth.contract(address=to_checksum_address(contract), abi=abi)
    rd = _ChainReader(w3, c, from_block)
    sid = as_bytes(study_id)

    info = _named_outputs(c, "getStudy", _retry(lambda: c.functions.getStudy(sid).call(), "getStudy"))
    hospitals: dict[str, HospitalView] = {}
    for ev in rd.logs("HospitalRegistered", sid):
        a = to_checksum_address(ev["args"]["hospital"])
        hospitals[a] = HospitalView(a, int(ev["args"]["budgetMicro"]))
        hospitals[a].events.append((ev["block"], ev["log_index"], "registered"))
    notices = []
    for name, kind in (("HospitalConsented", "consented"), ("HospitalWithdrew", "withdrawn")):
        for ev in rd.logs(name, sid):
            a = to_checksum_address(ev["args"]["hospital"])
            if a in hospitals:
                hospitals[a].events.append((ev["block"], ev["log_index"], kind))
            else:
                notices.append(f"block {ev['block']}: {name} by unregistered {a}")
            if kind == "withdrawn":
                notices.append(f"block {ev['block']}: hospital {a} withdrew from the study")

    round_logs = rd.logs("RoundRecorded", sid)
    commit_by_tx: dict[bytes, list] = {}
    if round_logs:
        for ev in rd.logs("CommitmentRecorded"):
            commit_by_tx.setdefault(ev["tx"], []).append(ev)
    inputs = rd.tx_inputs([ev["tx"] for ev in round_logs])
    times = rd.block_times([ev["block"] for ev in round_logs])
    rounds = []
    for ev in round_logs:
        a = ev["args"]
        params = rd.decode_record_round(inputs[ev["tx"]])
        if params["_function"] == "recordRoundMerkle":
            if bytes(params["commitmentsRoot"]) != bytes(a["commitmentsHash"]) or commit_by_tx.get(ev["tx"]):
                notices.append(f"round {a['round']}: recordRoundMerkle calldata does not match its logs")
            rounds.append(
                RoundView(
                    round=int(a["round"]),
                    prev_hash=bytes(a["prevGlobalHash"]),
                    aggregate_hash=bytes(a["aggregateHash"]),
                    total_samples=int(a["totalSamples"]),
                    participants=int(a["participants"]),
                    block=ev["block"],
                    timestamp=times[ev["block"]],
                    commitments=[],
                    commitments_hash=bytes(a["commitmentsHash"]),
                    tx_hash=to_hex(ev["tx"]),
                    log_index=ev["log_index"],
                    mode=2,
                    max_epsilon_micro=int(params["maxEpsilonMicro"]),
                )
            )
            continue
        call_cs = [
            RoundCommitment.from_tuple(tuple(x.values()) if isinstance(x, dict) else tuple(x))
            for x in params["commitments"]
        ]
        sigs = [bytes(x) for x in params["signatures"]]
        clogs = commit_by_tx.get(ev["tx"], [])
        if len(clogs) != len(call_cs):
            notices.append(f"round {a['round']}: {len(clogs)} CommitmentRecorded logs for {len(call_cs)} commitments")
        commitments = []
        for i, cm in enumerate(call_cs):
            lg = clogs[i] if i < len(clogs) else None
            hospital = to_checksum_address(lg["args"]["hospital"]) if lg is not None else "0x" + "00" * 20
            if lg is not None and (
                bytes(lg["args"]["updateHash"]),
                int(lg["args"]["sampleCount"]),
                int(lg["args"]["epsilonMicro"]),
            ) != (cm.update_hash, cm.sample_count, cm.epsilon_micro):
                notices.append(
                    f"round {a['round']}: CommitmentRecorded log {lg['log_index']} does not match the "
                    "calldata of its transaction"
                )
            commitments.append(
                CommitmentView(
                    hospital,
                    cm,
                    sigs[i] if i < len(sigs) else b"",
                    lg["log_index"] if lg is not None else ev["log_index"],
                )
            )
        rounds.append(
            RoundView(
                round=int(a["round"]),
                prev_hash=bytes(a["prevGlobalHash"]),
                aggregate_hash=bytes(a["aggregateHash"]),
                total_samples=int(a["totalSamples"]),
                participants=int(a["participants"]),
                block=ev["block"],
                timestamp=times[ev["block"]],
                commitments=commitments,
                commitments_hash=bytes(a["commitmentsHash"]),
                tx_hash=to_hex(ev["tx"]),
                log_index=ev["log_index"],
            )
        )
    released = {}
    for ev in rd.logs("ModelReleased", sid):
        released[int(ev["args"]["round"])] = bytes(ev["args"]["modelHash"])
    try:
        last_round = int(_retry(lambda: c.functions.lastRound(sid).call(), "lastRound"))
    except Exception:
        last_round = int(info.get("lastRound", max([r.round for r in rounds], default=0)))
    return ChainView(
        study_id=sid,
        chain_id=int(_retry(lambda: w3.eth.chain_id, "chain id")),
        contract=c.address,
        initial_model_hash=bytes(info["initialModelHash"]),
        context_hash=bytes(info["contextHash"]),
        config_hash=bytes(info["configHash"]),
        aggregator=to_checksum_address(info["aggregator"]),
        expiry=int(info["expiry"]),
        last_round=last_round,
        hospitals=hospitals,
        rounds=rounds,
        released=released,
        code_version=str(info.get("codeVersion", "")),
        registered_at=int(info.get("registeredAt", 0)),
        notices=notices,
        head_block=int(_retry(lambda: w3.eth.block_number, "block number")),
    )


def load_public_context(data: bytes):
    """Load the aggregator's PUBLIC CKKS context; refuses any context carrying a secret key."""
    from fedledger.ckks import aggregator_context_from_bytes

    return aggregator_context_from_bytes(data, origin="aggregator context")


# =================================================================== checks


def _per_round(check: str, r: int, failures: list[Finding], ok_message: str) -> list[Finding]:
    return failures or [Finding(check, True, ok_message, r)]


def check_hash_chain(view: ChainView) -> list[Finding]:
    """Rounds 1..R contiguous and ordered; prev hashes link to the initial model and previous aggregates."""
    out: list[Finding] = []
    by_round: dict[int, list[RoundView]] = {}
    for rv in view.rounds:
        by_round.setdefault(rv.round, []).append(rv)
    last = max([view.last_round] + list(by_round))
    prev_block = -1
    for r in range(1, last + 1):
        if r not in by_round:
            out.append(
                Finding(
                    "hash_chain", False, f"round {r} is missing from the chain record (rounds 1..{last} expected)", r
                )
            )
            continue
        recs = by_round[r]
        fails = []
        if len(recs) > 1:
            fails.append(Finding("hash_chain", False, f"round {r} recorded {len(recs)} times", r))
        rv = recs[0]
        if rv.block < prev_block:
            fails.append(
                Finding(
                    "hash_chain",
                    False,
                    f"round {r} was recorded in block {rv.block}, before round {r - 1} (block {prev_block})",
                    r,
                )
            )
        prev_block = rv.block
        if r == 1:
            expected, what = view.initial_model_hash, "the registered initial model hash"
        elif r - 1 in by_round:
            expected, what = by_round[r - 1][0].aggregate_hash, f"round {r - 1}'s aggregate hash"
        else:
            expected, what = None, ""
            fails.append(Finding("hash_chain", False, f"round {r} cannot be linked: round {r - 1} is missing", r))
        if expected is not None and rv.prev_hash != expected:
            fails.append(
                Finding("hash_chain", False, f"prev hash {to_hex(rv.prev_hash)} != {what} {to_hex(expected)}", r)
            )
        out += _per_round("hash_chain", r, fails, "linked to " + ("the initial model" if r == 1 else f"round {r - 1}"))
    extra = sorted(r for r in by_round if r < 1)
    for r in extra:
        out.append(Finding("hash_chain", False, f"round number {r} is not a valid round", r))
    return out


def check_participants(view: ChainView, reference_signatures: bool = False) -> list[Finding]:
    """Signer, binding, registration, consent, expiry, budget and sample counts of every commitment."""
    from fedledger.commitment import commitments_hash

    verifier = SignerVerifier(view.domain, reference=reference_signatures)
    out: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        r = rv.round
        if rv.mode == 2 and not rv.leaves_loaded:
            for k in ("signature", "binding", "registered", "consent", "budget", "samples"):
                out.append(
                    Finding(
                        k,
                        True,
                        f"Merkle round: its {rv.participants} commitments are in the artifact "
                        "store, not on chain (audit with the artifact store)",
                        r,
                        skipped=True,
                    )
                )
            out += _per_round(
                "expiry",
                r,
                []
                if rv.timestamp <= view.expiry
                else [
                    Finding(
                        "expiry",
                        False,
                        f"round {r} recorded at t={rv.timestamp}, after the study expiry t={view.expiry}",
                        r,
                    )
                ],
                "recorded before the study expiry",
            )
            continue
        fails: dict[str, list[Finding]] = {
            k: [] for k in ("signature", "binding", "registered", "consent", "expiry", "budget", "samples")
        }
        seen: set[str] = set()
        digests = []
        for cv in rv.commitments:
            c, h = cv.commitment, cv.hospital
            name = view.label(h)
            digest = commitment_digest_independent(verifier.separator, c)
            digests.append(digest)
            try:
                signer = verifier.recover(c, cv.signature, h, digest)
                if signer != h:
                    fails["signature"].append(
                        Finding("signature", False, f"commitment of {name} was signed by {signer}", r, h)
                    )
            except CommitmentError as exc:
                fails["signature"].append(
                    Finding("signature", False, f"signature of {name} does not verify: {exc}", r, h)
                )
            bad = [
                f
                for f, ok in (
                    ("studyId", c.study_id == view.study_id),
                    ("round", c.round == r),
                    ("prevGlobalHash", c.prev_global_hash == rv.prev_hash),
                )
                if not ok
            ]
            if bad:
                fails["binding"].append(
                    Finding(
                        "binding",
                        False,
                        f"commitment of {name} does not bind this study/round/prev hash: {', '.join(bad)} differ",
                        r,
                        h,
                    )
                )
            if h in seen:
                fails["binding"].append(Finding("binding", False, f"{name} committed twice in round {r}", r, h))
            seen.add(h)
            hv = view.hospitals.get(h)
            if hv is None:
                fails["registered"].append(
                    Finding("registered", False, f"{name} is not registered for this study", r, h)
                )
                continue
            status = hv.status_at(rv.block, cv.log_index)
            if status != "consented":
                fails["consent"].append(
                    Finding(
                        "consent",
                        False,
                        f"{name} was '{status}' (not consenting) when round {r} was recorded in block {rv.block}",
                        r,
                        h,
                    )
                )
            if c.epsilon_micro > hv.budget_micro:
                fails["budget"].append(
                    Finding(
                        "budget",
                        False,
                        f"{name} epsilon {c.epsilon_micro / 1e6:.6f} exceeds its budget {hv.budget_micro / 1e6:.6f}",
                        r,
                        h,
                    )
                )
        if rv.timestamp > view.expiry:
            fails["expiry"].append(
                Finding(
                    "expiry",
                    False,
                    f"round {r} recorded at t={rv.timestamp}, after the study expiry t={view.expiry}",
                    r,
                )
            )
        total = sum(cv.commitment.sample_count for cv in rv.commitments)
        if total != rv.total_samples:
            fails["samples"].append(
                Finding("samples", False, f"sample counts sum to {total}, the round records {rv.total_samples}", r)
            )
        if len(rv.commitments) != rv.participants or not rv.commitments:
            fails["samples"].append(
                Finding(
                    "samples",
                    False,
                    f"{len(rv.commitments)} commitments but the round records {rv.participants} participants",
                    r,
                )
            )
        if rv.mode != 2 and rv.commitments_hash is not None and commitments_hash(digests) != rv.commitments_hash:
            fails["samples"].append(
                Finding("samples", False, "the commitments do not hash to the round's on-chain commitmentsHash", r)
            )
        oks = {
            "signature": f"{len(rv.commitments)} signatures verified off-chain"
            + (" (Merkle leaves)" if rv.mode == 2 else ""),
            "binding": "commitments bind study, round and prev hash",
            "registered": "all participants registered",
            "consent": "all participants consenting",
            "expiry": "recorded before the study expiry",
            "budget": "all epsilons within budget",
            "samples": f"{rv.participants} participants, {rv.total_samples} samples add up",
        }
        for k, fs in fails.items():
            out += _per_round(k, r, fs, oks[k])
    return out


def attach_merkle_leaves(view: ChainView, store_dir: Path) -> list[Finding]:
    """Check the leaves of every Merkle-mode round against its on-chain root, and fill in its commitments.

    The leaves come from the round manifest (``updates[i].merkle``: the signer's
    address, the full commitment, the leaf and its proof; the signature is
    ``updates[i].commitment.signature``). Each leaf is recomputed from the
    commitment (independent EIP-712 digest) and the address, its proof is
    verified against the on-chain root, all leaves must rebuild that root and
    number exactly the recorded participants, and each leaf's update hash and
    sample count must be those of the stored update it sits in (the update
    that was summed). The commitments are then attached to the round so that
    the per-hospital checks (signature recovers to the address, binding,
    registration, consent, budget, samples, privacy) run on them.
    """
    from fedledger.merkle import MerkleError, MerkleTree, commitment_leaf, verify_proof

    store = _Store(store_dir)
    separator = _domain_separator(view.domain)
    out: list[Finding] = []
    for rv in sorted(view.rounds, key=lambda x: x.round):
        if rv.mode != 2:
            continue
        r, root = rv.round, rv.commitments_hash or ZERO32
        try:
            m = store.manifest(r)
        except (OSError, ValueError) as exc:
            m, problem = None, f"manifest of round {r} is unreadable: {exc}"
        else:
            problem = (
                f"round {r} is a Merkle round but has no manifest: its {rv.participants} commitments cannot be checked"
            )
        if not isinstance(m, dict):
            out.append(Finding("merkle", False, problem, r))
            continue
        fails: list[Finding] = []
        leaves: list[bytes] = []
        commitments: list[CommitmentView] = []
        for u in [u for u in m.get("updates", []) if isinstance(u, dict)]:
            name = str(u.get("hospital"))
            entry = u.get("merkle")
            signed = u.get("commitment") if isinstance(u.get("commitment"), dict) else {}
            if not isinstance(entry, dict):
                fails.append(
                    Finding(
                        "merkle",
                        False,
                        f"update of {name!r} has no Merkle leaf (an update that is not under the on-chain root)",
                        r,
                        name,
                    )
                )
                continue
            try:
                address = to_checksum_address(str(entry["address"]))
                c = RoundCommitment.from_json(entry["commitment"])
                stored_leaf = _hex32(entry.get("leaf"))
                proof = [as_bytes(str(p)) for p in entry.get("proof", [])]
                signature = as_bytes(str(signed.get("signature", "")))
            except (KeyError, ValueError, TypeError) as exc:
                fails.append(Finding("merkle", False, f"Merkle leaf of {name!r} is malformed: {exc}", r, name))
                continue
            who = f"{name} ({address})"
            leaf = commitment_leaf(address, commitment_digest_independent(separator, c))
            leaves.append(leaf)
            if stored_leaf != leaf:
                fails.append(
                    Finding("merkle", False, f"leaf of {who} does not match its commitment (altered leaf)", r, address)
                )
            if not verify_proof(proof, root, leaf):
                fails.append(
                    Finding(
                        "merkle",
                        False,
                        f"commitment of {who} is not under the on-chain root "
                        f"{to_hex(root)[:18]}.. (its proof does not verify: leaf added or altered)",
                        r,
                        address,
                    )
                )
            if (_hex32(u.get("update_hash")), u.get("num_examples")) != (c.update_hash, c.sample_count):
                fails.append(
                    Finding(
                        "merkle",
                        False,
                        f"leaf of {who} commits to update "
                        f"{to_hex(c.update_hash)[:18]}.. / {c.sample_count} samples, the manifest stores "
                        f"{str(u.get('update_hash'))[:18]}.. / {u.get('num_examples')}",
                        r,
                        address,
                    )
                )
            commitments.append(CommitmentView(address, c, signature, rv.log_index))
        if len(leaves) != rv.participants:
            missing = _missing_leaves(m, leaves)
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"the manifest has {len(leaves)} leaves, the chain records "
                    f"{rv.participants} participants (leaf dropped or added)"
                    + (f"; leaves named in proofs but absent: {', '.join(missing)}" if missing else ""),
                    r,
                )
            )
        try:
            rebuilt = MerkleTree(leaves).root if leaves else None
        except MerkleError as exc:
            rebuilt = None
            fails.append(Finding("merkle", False, f"the leaves do not form a tree: {exc}", r))
        if leaves and rebuilt is not None and rebuilt != root:
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"the {len(leaves)} leaves rebuild root {to_hex(rebuilt)[:18]}.., "
                    f"the chain records {to_hex(root)[:18]}..",
                    r,
                )
            )
        max_eps = max((cv.commitment.epsilon_micro for cv in commitments), default=0)
        if rv.max_epsilon_micro is not None and commitments and max_eps != rv.max_epsilon_micro:
            fails.append(
                Finding(
                    "merkle",
                    False,
                    f"the leaves' largest epsilon is {max_eps / 1e6:.6f}, the "
                    f"aggregator declared {rv.max_epsilon_micro / 1e6:.6f} on chain",
                    r,
                )
            )
        rv.commitments = commitments
        rv.leaves_loaded = True
        out += _per_round("merkle", r, fails, f"{len(leaves)} leaves verify against the on-chain root")
    return out


def _missing_leaves(manifest: dict[str, Any], leaves: list[bytes]) -> list[str]:
    """First-level siblings in the manifest's proofs that are not themselves leaves (a dropped leaf's hash)."""
    have = set(leaves)
    out = []
    for u in manifest.get("updates", []):
        proof = ((u or {}).get("merkle") or {}).get("proof") or []
        if proof:
            sib = _hex32(proof[0])
            if sib is not None and sib not in have and to_hex(sib) not in out:
                # a first-level sibling is a leaf, unless it is an inner node of a promoted subtree: report candidates
                out.append(to_hex(sib))
    return [x[:18] + ".." for x in out]


def epsilon_table(view: ChainView) -> dict[str, dict[int, float]]:
    """Cumulative epsilon each hospital committed, per round (hospital address -> round -> epsilon)."""
    table: dict[str, dict[int, float]] = {a: {} for a in view.hospitals}
    for rv in sorted(view.rounds, key=lambda x: x.round):
        for cv in rv.commitments:
            table.setdefault(cv.hospital, {})[rv.round] = cv.commitment.epsilon_micro / 1e6
    return table


def check_privacy(view: ChainView) -> list[Finding]:
    """Each hospital's cumulative epsilon never decreases across rounds and stays within its budget."""
    out: list[Finding] = []
    last: dict[str, tuple[int, int]] = {}
    for rv in sorted(view.rounds, key=lambda x: x.round):
        fails = []
        for cv in rv.commitments:
            h, eps = cv.hospital, cv.commitment.epsilon_micro
            if h in last and eps < last[h][1]:
                fails.append(
                    Finding(
                        "privacy",
                        False,
                        f"{view.label(h)} epsilon decreased from "
                        f"{last[h][1] / 1e6:.6f} (round {last[h][0]}) to {eps / 1e6:.6f}",
                        rv.round,
                        h,
                    )
                )
            hv = view.hospitals.get(h)
            if hv is not None and eps > hv.budget_micro:
                fails.append(
                    Finding(
                        "privacy",
                        False,
                        f"{view.label(h)} cumulative epsilon {eps / 1e6:.6f} is over "
                        f"budget {hv.budget_micro / 1e6:.6f}",
                        rv.round,
                        h,
                    )
                )
            last[h] = (rv.round, max(eps, last.get(h, (0, 0))[1]))
        out += _per_round("privacy", rv.round, fails, "cumulative epsilon non-decreasing and within budget")
    return out


def check_study(view: ChainView) -> list[Finding]:
    fails = []
    if not view.hospitals:
        fails.append(Finding("study", False, "no hospital is registered for the study"))
    if view.last_round != len({rv.round for rv in view.rounds}):
        fails.append(
            Finding(
                "study",
                False,
                f"the contract's last round is {view.last_round} but "
                f"{len(view.rounds)} RoundRecorded events were found",
            )
        )
    return fails or [
        Finding(
            "study",
            True,
            f"study {to_hex(view.study_id)} registered with {len(view.hospitals)} hospitals, {view.last_round} rounds",
        )
    ]


# --------------------------------------------------------- artifact store


class _Store:
    """Read-only view of a run's artifact store (layout in docs/HASHES.md)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.rounds_dir = self.root / "artifacts" / "rounds"
        self.blobs_dir = self.root / "artifacts" / "blobs"
        self.checkpoints = self.root / "checkpoints"
        self._cache: dict[str, tuple[bytes | None, str | None]] = {}

    def round_numbers(self) -> list[int]:
        if not self.rounds_dir.exists():
            return []
        out = []
        for p in self.rounds_dir.glob("round_*.json"):
            try:
                out.append(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(out)

    def manifest(self, r: int) -> dict[str, Any] | None:
        p = self.rounds_dir / f"round_{r:05d}.json"
        return json.loads(p.read_text()) if p.exists() else None

    def blob(self, digest: str) -> tuple[bytes | None, str | None]:
        """(content, problem): the blob's bytes and why they cannot be trusted, if so."""
        if digest not in self._cache:
            p = self.blobs_dir / str(digest)
            if not p.is_file():
                self._cache[digest] = (None, f"blob {digest[:16]}.. is missing from the artifact store")
            else:
                data = p.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
                problem = (
                    None
                    if actual == digest
                    else (f"blob {digest[:16]}.. does not hash to its content address (sha256 {actual[:16]}..)")
                )
                self._cache[digest] = (data, problem)
        return self._cache[digest]


def _hex32(value: Any) -> bytes | None:
    try:
        raw = as_bytes(str(value))
        return raw if len(raw) == 32 else None
    except ValueError:
        return None


def learn_labels(view: ChainView, store_dir: Path) -> None:
    """Name hospitals from the manifests (address in the signed commitment, or the matching update hash)."""
    store = _Store(store_dir)
    by_update = {(rv.round, cv.commitment.update_hash): cv.hospital for rv in view.rounds for cv in rv.commitments}
    for r in store.round_numbers():
        try:
            m = store.manifest(r) or {}
        except (OSError, ValueError):
            continue
        for u in m.get("updates", []) if isinstance(m, dict) else []:
            name = u.get("hospital")
            addr = (u.get("commitment") or {}).get("address") if isinstance(u.get("commitment"), dict) else None
            if not addr:
                addr = by_update.get((r, _hex32(u.get("update_hash"))))
            if name and addr:
                try:
                    view.labels.setdefault(to_checksum_address(addr), str(name))
                except ValueError:
                    pass


def check_context(view: ChainView, context_bytes: bytes | None, encrypted: bool) -> list[Finding]:
    if view.context_hash == ZERO32:
        return [Finding("context", True, "study registered without encryption (context hash zero)", skipped=True)]
    if context_bytes is None:
        return (
            [
                Finding(
                    "context",
                    False,
                    "the aggregator's public CKKS context was not found; the stored ciphertexts cannot be re-summed",
                )
            ]
            if encrypted
            else [Finding("context", True, "no public context given", skipped=True)]
        )
    fp = sha256(context_bytes)
    if fp != view.context_hash:
        return [
            Finding(
                "context",
                False,
                f"public context fingerprint {to_hex(fp)} does not match the registered "
                f"context hash {to_hex(view.context_hash)} (artifacts from a different study?)",
            )
        ]
    return [Finding("context", True, f"public context matches the registered hash {to_hex(fp)[:18]}..")]


def _update_digest(blobs: list[bytes], encrypted: bool) -> bytes:
    return ciphertexts_hash(blobs) if encrypted else (sha256(blobs[0]) if len(blobs) == 1 else ciphertexts_hash(blobs))


def check_artifacts(view: ChainView, store_dir: Path, public_ctx: Any = None, resum: bool = True) -> list[Finding]:
    """The artifact store agrees with the chain, round by round; re-sum the stored ciphertexts."""
    store = _Store(store_dir)
    out: list[Finding] = []
    chain_rounds = {rv.round: rv for rv in view.rounds}
    stored = store.round_numbers()
    for r in sorted(set(stored) - set(chain_rounds)):
        out.append(Finding("manifest", False, f"round {r} is in the artifact store but was never recorded on chain", r))
    for r, rv in sorted(chain_rounds.items()):
        try:
            m = store.manifest(r)
        except (OSError, ValueError) as exc:
            out.append(Finding("manifest", False, f"manifest of round {r} is unreadable: {exc}", r))
            continue
        if m is None:
            out.append(
                Finding("manifest", False, f"round {r} is on chain but has no manifest in the artifact store", r)
            )
            continue
        out += _check_round_artifacts(view, rv, m, store, public_ctx, resum)
    return out


def _check_round_artifacts(
    view: ChainView, rv: RoundView, m: dict[str, Any], store: _Store, public_ctx: Any, resum: bool
) -> list[Finding]:
    r = rv.round
    out: list[Finding] = []
    mf: list[Finding] = []
    if _hex32(m.get("study_id")) != view.study_id:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest belongs to study {m.get('study_id')}, not "
                f"{to_hex(view.study_id)} (artifact store from a different study?)",
                r,
            )
        )
    if int(m.get("round", -1)) != r:
        mf.append(Finding("manifest", False, f"manifest file of round {r} says round {m.get('round')}", r))
    if _hex32(m.get("prev_hash")) != rv.prev_hash:
        mf.append(
            Finding("manifest", False, f"manifest prev hash {m.get('prev_hash')} != on-chain {to_hex(rv.prev_hash)}", r)
        )
    agg = m.get("aggregate") or {}
    if _hex32(agg.get("hash")) != rv.aggregate_hash:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest aggregate hash {agg.get('hash')} != on-chain {to_hex(rv.aggregate_hash)}",
                r,
            )
        )
    if agg.get("total_weight") is not None and int(agg["total_weight"]) != rv.total_samples:
        mf.append(
            Finding(
                "manifest",
                False,
                f"manifest total weight {agg['total_weight']} != on-chain total samples {rv.total_samples}",
                r,
            )
        )
    out += _per_round("manifest", r, mf, "manifest matches the chain record")
    encrypted = bool(m.get("encrypted", True))

    # participants: chain commitments <-> manifest updates, by update hash (and signed address when given)
    pf: list[Finding] = []
    updates = [u for u in m.get("updates", []) if isinstance(u, dict)]
    unmatched = list(range(len(updates)))
    matched: list[tuple[CommitmentView, dict[str, Any]]] = []
    for cv in rv.commitments:
        hit = None
        for i in unmatched:
            u = updates[i]
            addr = (u.get("commitment") or {}).get("address") if isinstance(u.get("commitment"), dict) else None
            if _hex32(u.get("update_hash")) == cv.commitment.update_hash and (
                not addr or str(addr).lower() == cv.hospital.lower()
            ):
                hit = i
                break
        if hit is None:
            pf.append(
                Finding(
                    "participants",
                    False,
                    f"update committed on chain by {view.label(cv.hospital)} "
                    f"({to_hex(cv.commitment.update_hash)[:18]}..) is not in the manifest",
                    r,
                    cv.hospital,
                )
            )
        else:
            unmatched.remove(hit)
            matched.append((cv, updates[hit]))
    extras = [updates[i] for i in unmatched]
    for u in extras:
        pf.append(
            Finding(
                "participants",
                False,
                f"manifest lists an update of {u.get('hospital')!r} "
                f"({str(u.get('update_hash'))[:18]}..) that no hospital committed on chain (extra update)",
                r,
                str(u.get("hospital")),
            )
        )
    out += _per_round("participants", r, pf, f"{len(matched)} stored updates match the on-chain participants")

    # blobs and update hashes
    bf: list[Finding] = []
    uf: list[Finding] = []

    def load(digests: Sequence[str], who: str | None) -> list[bytes] | None:
        blobs, ok = [], True
        for d in digests:
            data, problem = store.blob(str(d))
            if problem:
                bf.append(Finding("blobs", False, f"{who or 'aggregate'}: {problem}", r, who))
            if data is None:
                ok = False
            else:
                blobs.append(data)
        return blobs if ok else None

    update_blobs: dict[str, list[bytes] | None] = {}
    for cv, u in matched:
        blobs = load(u.get("blobs", []), cv.hospital)
        update_blobs[cv.hospital] = blobs
        if blobs is not None and _update_digest(blobs, encrypted) != cv.commitment.update_hash:
            uf.append(
                Finding(
                    "update_hash",
                    False,
                    f"stored update of {view.label(cv.hospital)} hashes to "
                    f"{to_hex(_update_digest(blobs, encrypted))[:18]}.., its signed on-chain updateHash is "
                    f"{to_hex(cv.commitment.update_hash)[:18]}..",
                    r,
                    cv.hospital,
                )
            )
    extra_blobs = [(str(u.get("hospital")), load(u.get("blobs", []), str(u.get("hospital")))) for u in extras]
    agg_blobs = load(agg.get("blobs", []), None)
    if agg_blobs is not None and encrypted and ciphertexts_hash(agg_blobs) != rv.aggregate_hash:
        uf.append(
            Finding("update_hash", False, "stored aggregate ciphertexts do not hash to the on-chain aggregate hash", r)
        )
    out += _per_round("blobs", r, bf, "every blob hashes to its content address")
    out += _per_round("update_hash", r, uf, "every stored update hashes to its on-chain updateHash")

    # re-sum with the public context
    if not encrypted:
        out.append(Finding("resum", True, "plaintext round: nothing to re-sum", r, skipped=True))
    elif not resum:
        out.append(Finding("resum", True, "re-sum not requested", r, skipped=True))
    elif public_ctx is None:
        out.append(Finding("resum", False, "cannot re-sum: no public CKKS context", r))
    elif any(update_blobs.get(cv.hospital) is None for cv in rv.commitments):
        missing = [cv.hospital for cv in rv.commitments if update_blobs.get(cv.hospital) is None]
        for h in missing:
            out.append(
                Finding(
                    "resum",
                    False,
                    f"cannot re-sum: the update of {view.label(h)} is not (fully) in the artifact store",
                    r,
                    h,
                )
            )
    else:
        out += _resum(
            view,
            rv,
            [(cv.hospital, update_blobs[cv.hospital]) for cv in rv.commitments],
            [(n, b) for n, b in extra_blobs if b is not None],
            public_ctx,
        )
    return out


def _sum_hash(ctx: Any, parts: list[list[bytes]]) -> bytes:
    from fedledger.ckks import sum_ciphertexts

    return ciphertexts_hash(sum_ciphertexts(ctx, parts))


def _resum(
    view: ChainView,
    rv: RoundView,
    parts: list[tuple[str, list[bytes]]],
    extras: list[tuple[str, list[bytes]]],
    ctx: Any,
) -> list[Finding]:
    r = rv.round
    try:
        got = _sum_hash(ctx, [b for _, b in parts])
    except Exception as exc:  # CiphertextError and anything SEAL raises on hostile bytes
        bad = []
        for h, blobs in parts:
            try:
                _sum_hash(ctx, [blobs])
            except Exception:
                bad.append(h)
        if bad:
            return [
                Finding(
                    "resum",
                    False,
                    f"stored update of {view.label(h)} does not parse as a ciphertext under the public context: {exc}",
                    r,
                    h,
                )
                for h in bad
            ]
        return [Finding("resum", False, f"re-summing the stored updates failed: {exc}", r)]
    if got == rv.aggregate_hash:
        return [Finding("resum", True, f"re-sum of {len(parts)} stored updates reproduces the recorded aggregate", r)]
    # Diagnose: extra updates in the sum, or one committed update left out.
    if extras:
        try:
            if _sum_hash(ctx, [b for _, b in parts] + [b for _, b in extras]) == rv.aggregate_hash:
                return [
                    Finding(
                        "resum",
                        False,
                        f"the recorded aggregate includes update(s) of {n!r} that were not "
                        "committed on chain (extra update added)",
                        r,
                        n,
                    )
                    for n, _ in extras
                ]
        except Exception:
            pass
    if len(parts) > 1:
        for i, (h, _) in enumerate(parts):
            rest = [b for j, (_, b) in enumerate(parts) if j != i]
            try:
                if _sum_hash(ctx, rest) == rv.aggregate_hash:
                    return [
                        Finding(
                            "resum",
                            False,
                            f"the recorded aggregate leaves out the committed update of "
                            f"{view.label(h)} (update left out of the sum)",
                            r,
                            h,
                        )
                    ]
            except Exception:
                continue
    return [
        Finding(
            "resum",
            False,
            f"re-sum of the {len(parts)} committed updates hashes to {to_hex(got)[:18]}.., "
            f"the chain records {to_hex(rv.aggregate_hash)[:18]}.. (an update was dropped, added or altered)",
            r,
        )
    ]


def check_checkpoints(view: ChainView, store_dir: Path) -> list[Finding]:
    """Every released model (ModelReleased) has a checkpoint that hashes to the released hash."""
    out: list[Finding] = []
    ckpt_dir = Path(store_dir) / "checkpoints"
    for r, released in sorted(view.released.items()):
        p = ckpt_dir / f"round_{r:05d}.npz"
        if not p.exists():
            out.append(
                Finding(
                    "checkpoint",
                    False,
                    f"round {r} model was released on chain but {p.name} is not in the artifact store",
                    r,
                )
            )
            continue
        try:
            got = model_hash(load_npz(p))
        except Exception as exc:  # corrupt zip, pickled object arrays, ...
            out.append(Finding("checkpoint", False, f"{p.name} cannot be read safely: {exc}", r))
            continue
        if got != released:
            out.append(
                Finding(
                    "checkpoint",
                    False,
                    f"{p.name} hashes to {to_hex(got)[:18]}.., the chain released "
                    f"{to_hex(released)[:18]}.. (altered checkpoint)",
                    r,
                )
            )
        else:
            out.append(Finding("checkpoint", True, f"{p.name} matches the released model hash", r))
    if ckpt_dir.exists():
        for p in sorted(ckpt_dir.glob("round_*.npz")):
            try:
                r = int(p.stem.split("_")[1])
            except (IndexError, ValueError):
                continue
            if r not in view.released:
                out.append(
                    Finding("checkpoint", True, f"{p.name} was never released on chain; not checked", r, skipped=True)
                )
    return out


# ==================================================================== audit


@dataclass
class AuditResult:
    view: ChainView
    findings: list[Finding]
    epsilon: dict[str, dict[int, float]]
    artifacts: bool
    duration_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def round_rows(self) -> list[dict[str, Any]]:
        rounds = sorted({rv.round for rv in self.view.rounds} | {f.round for f in self.findings if f.round})
        by_round = {rv.round: rv for rv in self.view.rounds}
        rows = []
        for r in rounds:
            fs = [f for f in self.findings if f.round == r]
            rv = by_round.get(r)
            rows.append(
                {
                    "round": r,
                    "ok": all(f.ok for f in fs),
                    "on_chain": rv is not None,
                    "block": rv.block if rv else None,
                    "timestamp": rv.timestamp if rv else None,
                    "participants": [self.view.label(c.hospital) for c in rv.commitments] if rv else [],
                    "n_participants": len(rv.commitments) if rv else 0,
                    "total_samples": rv.total_samples if rv else None,
                    "aggregate_hash": to_hex(rv.aggregate_hash) if rv else None,
                    "checks": {
                        c: _worst([f for f in fs if f.check == c]) for c in CHECKS if any(f.check == c for f in fs)
                    },
                    "failed": [f.to_json() for f in fs if not f.ok],
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        v = self.view
        counts = {c: {"pass": 0, "fail": 0, "skip": 0} for c in CHECKS}
        for f in self.findings:
            counts.setdefault(f.check, {"pass": 0, "fail": 0, "skip": 0})[f.status] += 1
        hospitals = {}
        for a, hv in v.hospitals.items():
            eps = self.epsilon.get(a, {})
            hospitals[a] = {
                "label": v.labels.get(a),
                "budget": None if hv.budget_micro >= 2**64 - 1 else hv.budget_micro / 1e6,
                "budget_micro": hv.budget_micro,
                "epsilon": {str(r): e for r, e in sorted(eps.items())},
                "final_epsilon": max(eps.values()) if eps else 0.0,
                "status_events": [{"block": b, "log_index": li, "kind": k} for b, li, k in sorted(hv.events)],
            }
        return {
            "format": FORMAT,
            "ok": self.ok,
            "study_id": to_hex(v.study_id),
            "chain_id": v.chain_id,
            "contract": v.contract,
            "aggregator": v.aggregator,
            "code_version": v.code_version,
            "initial_model_hash": to_hex(v.initial_model_hash),
            "context_hash": to_hex(v.context_hash),
            "expiry": v.expiry,
            "rounds_on_chain": len(v.rounds),
            "last_round": v.last_round,
            "artifacts_checked": self.artifacts,
            "duration_s": round(self.duration_s, 3),
            "checks": {k: c for k, c in counts.items() if sum(c.values())},
            "hospitals": hospitals,
            "rounds": self.round_rows(),
            "released": {str(r): to_hex(h) for r, h in sorted(v.released.items())},
            "failures": [f.to_json() for f in self.failures],
            "notices": list(v.notices),
            **self.meta,
        }


def _worst(fs: Iterable[Finding]) -> str:
    fs = list(fs)
    if any(not f.ok for f in fs):
        return "fail"
    if fs and all(f.skipped for f in fs):
        return "skip"
    return "pass"


def audit(
    view: ChainView,
    store_dir: Path | None = None,
    context_bytes: bytes | None = None,
    resum: bool = True,
    reference_signatures: bool = False,
) -> AuditResult:
    """Run every check; artifact checks only when ``store_dir`` is given."""
    t0 = time.perf_counter()
    merkle_findings: list[Finding] = []
    if store_dir is not None:
        merkle_findings = attach_merkle_leaves(view, Path(store_dir))
        learn_labels(view, Path(store_dir))
    elif any(rv.mode == 2 for rv in view.rounds):
        view.notices.append(
            "Merkle-mode rounds: their commitments are only in the artifact store; without it "
            "signatures, consent and budgets of those rounds are not checked"
        )
    findings = (
        merkle_findings
        + check_study(view)
        + check_hash_chain(view)
        + check_participants(view, reference_signatures)
        + check_privacy(view)
    )
    if store_dir is not None:
        store_dir = Path(store_dir)
        encrypted = (
            any(
                bool((_Store(store_dir).manifest(r) or {}).get("encrypted"))
                for r in _Store(store_dir).round_numbers()[:1]
            )
            or view.context_hash != ZERO32
        )
        findings += check_context(view, context_bytes, encrypted)
        ctx = None
        if context_bytes is not None:
            try:
                ctx = load_public_context(context_bytes)
            except Exception as exc:
                findings.append(Finding("context", False, f"public context does not load: {exc}"))
        findings += check_artifacts(view, store_dir, ctx, resum)
        findings += check_checkpoints(view, store_dir)
    return AuditResult(view, findings, epsilon_table(view), store_dir is not None, time.perf_counter() - t0)
