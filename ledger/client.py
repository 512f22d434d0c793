"""web3.py client of the StudyLedger contract.

One class, :class:`LedgerClient`. Transactions are signed locally with
eth_account ``LocalAccount`` keys (the node never holds a key), nonces are
managed locally per sender, every transaction waits for its receipt, and
transport errors (connection refused, timeouts) are retried with exponential
backoff. A signed transaction is re-sent byte for byte on retry, so a retry
can never produce a second, different transaction. A revert raises
:class:`LedgerRevert` naming the contract's custom error, decoded from the
4-byte selector against the ABI.
"""

from __future__ import annotations

import ast
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError, TransactionNotFound
from web3.logs import DISCARD

from fedledger.commitment import Domain, RoundCommitment, domain
from fedledger.hashing import as_bytes, as_bytes32, to_hex
from ledger.abi import abi_type as _abi_type
from ledger.compile import load_artifact

try:  # eth-tester (py-evm in-process) raises its own type instead of web3's
    from eth_tester.exceptions import TransactionFailed as _TesterFailed
except ImportError:  # pragma: no cover - eth-tester is a dependency, but optional at runtime

    class _TesterFailed(Exception):  # type: ignore[no-redef]
        pass


REVERT_ERRORS: tuple[type[BaseException], ...] = (ContractLogicError, _TesterFailed)


log = logging.getLogger("fedledger.ledger.client")

HOSPITAL_STATUS = ("none", "registered", "consented", "withdrawn")
MODE_SIGNED = 1  # RoundRecord.mode: every commitment verified on-chain (recordRound)
MODE_MERKLE = 2  # RoundRecord.mode: Merkle root of the commitments only (recordRoundMerkle)

T = TypeVar("T")

#: Exceptions treated as "the chain is (temporarily) unreachable".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


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


class _NonceRejected(Exception):
    pass


def _show(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return to_hex(v)
    return str(v)


_b32 = as_bytes32


# ------------------------------------------------------------- read models


@dataclass(frozen=True)
class RecordReceipt:
    tx_hash: str
    block: int
    gas_used: int


@dataclass(frozen=True)
class StudyInfo:
    study_id: bytes
    config_hash: bytes
    initial_model_hash: bytes
    context_hash: bytes
    code_version: str
    aggregator: str
    expiry: int
    last_round: int
    registered_at: int
    hospitals: tuple[str, ...]


@dataclass(frozen=True)
class HospitalInfo:
    address: str
    budget_micro: int
    last_epsilon_micro: int
    last_round: int
    status: str  # none | registered | consented | withdrawn

    @property
    def consented(self) -> bool:
        return self.status == "consented"


@dataclass(frozen=True)
class RoundInfo:
    round: int
    prev_global_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    commitments_hash: bytes
    participants: int
    timestamp: int
    block_number: int
    mode: int


@dataclass(frozen=True)
class CommitmentEvent:
    hospital: str
    commitment: RoundCommitment
    signature: bytes
    log_index: int


@dataclass(frozen=True)
class RoundEvent:
    study_id: bytes
    round: int
    prev_global_hash: bytes
    aggregate_hash: bytes
    total_samples: int
    commitments_hash: bytes
    participants: int
    block: int
    tx_hash: str
    commitments: tuple[CommitmentEvent, ...] = field(default=())
    #: 1: per-hospital (commitments verified on-chain, listed in ``commitments``);
    #: 2: Merkle (``commitments_hash`` is the root, ``commitments`` is empty: the
    #: leaves are in the round manifest of the artifact store)
    mode: int = 1
    max_epsilon_micro: int | None = None  # Merkle mode: the aggregator's claim, from the calldata

    @property
    def commitments_root(self) -> bytes | None:
        """The Merkle root of a mode-2 round (None for a per-hospital round)."""
        return self.commitments_hash if self.mode == MODE_MERKLE else None


# ------------------------------------------------------------------ client


class LedgerClient:
    """Client of one deployed StudyLedger.

    ``account`` is the default sender (the admin after :meth:`deploy`, the
    aggregator on a server); every transaction method takes ``sender=`` to
    override it.
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        account: LocalAccount | None = None,
        *,
        abi: list | None = None,
        max_attempts: int = 6,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        receipt_timeout_s: float = 120.0,
        deploy_block: int = 0,
        gas_limit: int | None = None,
    ) -> None:
        self.w3 = w3
        # A fixed gas limit skips eth_estimateGas (a preflight eth_call still
        # names any revert). eth-tester's estimate is a ~15-run bisection in
        # pure Python, so the in-process backend uses a fixed limit.
        if gas_limit is None and isinstance(w3.provider, EthereumTesterProvider):
            gas_limit = 10_000_000
        self.gas_limit = gas_limit
        self.address = to_checksum_address(address)
        self.account = account
        self.abi = abi if abi is not None else load_artifact()["abi"]
        self.contract = w3.eth.contract(address=self.address, abi=self.abi)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.receipt_timeout_s = receipt_timeout_s
        self.deploy_block = deploy_block
        self._nonces: dict[str, int] = {}
        self._errors = _error_table(self.abi)

    # -------------------------------------------------------------- deploy

    @classmethod
    def deploy(cls, w3: Web3, admin_account: LocalAccount, **kwargs: Any) -> "LedgerClient":
        """Deploy a new StudyLedger with ``admin_account`` as DEFAULT_ADMIN_ROLE."""
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tmp = cls.__new__(cls)
        LedgerClient.__init__(tmp, w3, "0x" + "00" * 20, admin_account, abi=artifact["abi"], **kwargs)
        receipt = tmp._transact(factory.constructor(admin_account.address), admin_account, "deploy StudyLedger")
        client = cls(
            w3,
            receipt["contractAddress"],
            admin_account,
            abi=artifact["abi"],
            deploy_block=receipt["blockNumber"],
            **kwargs,
        )
        client._nonces = tmp._nonces
        log.info("StudyLedger deployed at %s (block %d)", client.address, receipt["blockNumber"])
        return client

    @classmethod
    def at(cls, w3: Web3, address: str, account: LocalAccount | None = None, **kwargs: Any) -> "LedgerClient":
        return cls(w3, address, account, **kwargs)

    def with_account(self, account: LocalAccount) -> "LedgerClient":
        """Same contract and nonce book, different default sender."""
        other = LedgerClient(
            self.w3,
            self.address,
            account,
            abi=self.abi,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            max_backoff_s=self.max_backoff_s,
            receipt_timeout_s=self.receipt_timeout_s,
            deploy_block=self.deploy_block,
            gas_limit=self.gas_limit,
        )
        other._nonces = self._nonces
        return other

    def with_options(self, **options: Any) -> "LedgerClient":
        """Same contract, sender and nonce book; other retry/timeout settings."""
        settings = {
            "max_attempts": self.max_attempts,
            "backoff_s": self.backoff_s,
            "max_backoff_s": self.max_backoff_s,
            "receipt_timeout_s": self.receipt_timeout_s,
        }
        settings.update(options)
        other = LedgerClient(
            self.w3,
            self.address,
            self.account,
            abi=self.abi,
            deploy_block=self.deploy_block,
            gas_limit=self.gas_limit,
            **settings,
        )
        other._nonces = self._nonces
        return other

    def reset_nonces(self) -> None:
        """Forget cached nonces; the next transaction of each sender asks the chain."""
        self._nonces.clear()

    def deployment_info(self) -> dict[str, Any]:
        return {"address": self.address, "chain_id": self.chain_id, "deploy_block": self.deploy_block}

    @cached_property
    def chain_id(self) -> int:
        return self._call(lambda: self.w3.eth.chain_id, "chain id")

    def domain(self) -> Domain:
        """EIP-712 domain hospitals sign under for this deployment."""
        return domain(self.chain_id, self.address)

    # -------------------------------------------------------- transactions

    def grant_study_admin(self, account: str, sender: LocalAccount | None = None) -> RecordReceipt:
        role = self._call(lambda: self.contract.functions.STUDY_ADMIN_ROLE().call(), "read role")
        return self._receipt(
            self._transact(
                self.contract.functions.grantRole(role, to_checksum_address(account)), sender, "grant STUDY_ADMIN_ROLE"
            )
        )

    def register_study(
        self,
        study_id: bytes | str,
        config_hash: bytes | str,
        initial_model_hash: bytes | str,
        context_hash: bytes | str,
        code_version: str,
        aggregator: str,
        expiry: int,
        hospitals: Sequence[str],
        epsilon_budgets_micro: Sequence[int],
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        fn = self.contract.functions.registerStudy(
            _b32(study_id),
            _b32(config_hash),
            _b32(initial_model_hash),
            _b32(context_hash),
            code_version,
            to_checksum_address(aggregator),
            int(expiry),
            [to_checksum_address(h) for h in hospitals],
            [int(b) for b in epsilon_budgets_micro],
        )
        return self._receipt(self._transact(fn, sender, "registerStudy"))

    def add_hospitals(
        self,
        study_id: bytes | str,
        hospitals: Sequence[str],
        epsilon_budgets_micro: Sequence[int],
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        """Register more hospitals for an existing study (large consortia register in batches)."""
        fn = self.contract.functions.addHospitals(
            _b32(study_id), [to_checksum_address(h) for h in hospitals], [int(b) for b in epsilon_budgets_micro]
        )
        return self._receipt(self._transact(fn, sender, f"addHospitals({len(hospitals)})"))

    def consent(self, study_id: bytes | str, hospital_account: LocalAccount) -> RecordReceipt:
        return self._receipt(
            self._transact(self.contract.functions.consent(_b32(study_id)), hospital_account, "consent")
        )

    def withdraw(self, study_id: bytes | str, hospital_account: LocalAccount) -> RecordReceipt:
        return self._receipt(
            self._transact(self.contract.functions.withdraw(_b32(study_id)), hospital_account, "withdraw")
        )

    def record_round(
        self,
        study_id: bytes | str,
        round: int,
        prev_global_hash: bytes | str,
        aggregate_hash: bytes | str,
        total_samples: int,
        commitments: Sequence[RoundCommitment],
        signatures: Sequence[bytes],
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        fn = self.contract.functions.recordRound(
            _b32(study_id),
            int(round),
            _b32(prev_global_hash),
            _b32(aggregate_hash),
            int(total_samples),
            [c.as_abi_tuple() for c in commitments],
            [bytes(s) for s in signatures],
        )
        return self._receipt(self._transact(fn, sender, f"recordRound(round={round})"))

    def record_round_merkle(
        self,
        study_id: bytes | str,
        round: int,
        prev_global_hash: bytes | str,
        aggregate_hash: bytes | str,
        total_samples: int,
        commitments_root: bytes | str,
        participants: int,
        max_epsilon_micro: int,
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        """Record a round by the Merkle root of its commitments (mode 2; ``fedledger.merkle``).

        Only the aggregator, ordering, previous-hash and expiry checks run
        on-chain; signatures, consent and budgets are the auditor's job.
        """
        fn = self.contract.functions.recordRoundMerkle(
            _b32(study_id),
            int(round),
            _b32(prev_global_hash),
            _b32(aggregate_hash),
            int(total_samples),
            _b32(commitments_root),
            int(participants),
            int(max_epsilon_micro),
        )
        return self._receipt(self._transact(fn, sender, f"recordRoundMerkle(round={round})"))

    def onchain_leaf(self, hospital: str, commitment: RoundCommitment) -> bytes:
        """``StudyLedger.commitmentLeaf``: the Merkle leaf the contract computes."""
        return bytes(
            self._view(
                self.contract.functions.commitmentLeaf(to_checksum_address(hospital), commitment.as_abi_tuple()),
                "commitmentLeaf",
            )
        )

    def merkle_member(
        self, study_id: bytes | str, round: int, commitment: RoundCommitment, signature: bytes, proof: Sequence[bytes]
    ) -> str | None:
        """The hospital the contract finds under a Merkle round's root (None: not a member)."""
        a = self._view(
            self.contract.functions.merkleMember(
                _b32(study_id), int(round), commitment.as_abi_tuple(), bytes(signature), [_b32(p) for p in proof]
            ),
            "merkleMember",
        )
        return None if int(a, 16) == 0 else to_checksum_address(a)

    def release_model(
        self, study_id: bytes | str, round: int, model_hash: bytes | str, sender: LocalAccount | None = None
    ) -> RecordReceipt:
        fn = self.contract.functions.releaseModel(_b32(study_id), int(round), _b32(model_hash))
        return self._receipt(self._transact(fn, sender, f"releaseModel(round={round})"))

    # --------------------------------------------------------------- views

    def read_study(self, study_id: bytes | str) -> StudyInfo:
        sid = _b32(study_id)
        r = self._view(self.contract.functions.getStudy(sid), "getStudy")
        return StudyInfo(sid, bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6], r[7], tuple(r[8]))

    def read_hospital(self, study_id: bytes | str, hospital: str) -> HospitalInfo:
        addr = to_checksum_address(hospital)
        r = self._view(self.contract.functions.getHospital(_b32(study_id), addr), "getHospital")
        return HospitalInfo(addr, r[0], r[1], r[2], HOSPITAL_STATUS[r[3]])

    def last_round(self, study_id: bytes | str) -> int:
        return self._view(self.contract.functions.lastRound(_b32(study_id)), "lastRound")

    def read_round(self, study_id: bytes | str, r: int) -> RoundInfo:
        x = self._view(self.contract.functions.getRound(_b32(study_id), int(r)), "getRound")
        return RoundInfo(int(r), bytes(x[0]), bytes(x[1]), x[2], bytes(x[3]), x[4], x[5], x[6], x[7])

    def released_model(self, study_id: bytes | str, r: int) -> bytes | None:
        h = bytes(self._view(self.contract.functions.releasedModel(_b32(study_id), int(r)), "releasedModel"))
        return None if h == b"\x00" * 32 else h

    def onchain_recover(self, commitment: RoundCommitment, signature: bytes) -> str:
        """The signer the contract itself recovers (used to cross-check the Python side)."""
        return self._view(
            self.contract.functions.recoverCommitmentSigner(commitment.as_abi_tuple(), bytes(signature)),
            "recoverCommitmentSigner",
        )

    def onchain_digest(self, commitment: RoundCommitment) -> bytes:
        return bytes(
            self._view(self.contract.functions.commitmentDigest(commitment.as_abi_tuple()), "commitmentDigest")
        )

    # -------------------------------------------------------------- events

    def round_events(self, study_id: bytes | str, from_block: int | None = None) -> list[RoundEvent]:
        """Every recorded round of a study, with each commitment and its signature, from the chain.

        Merkle-mode rounds (``mode == 2``) come back with their root in
        ``commitments_hash`` and no commitments (those are in the manifest).

        ``RoundRecorded`` logs are filtered by study; the ``CommitmentRecorded``
        logs of the same transaction give each hospital and its update hash,
        sample count and epsilon. Study, round, previous hash and signatures
        come from the calldata of that transaction (the contract does not
        re-emit them, to save gas), matched by position and checked field by
        field against the logs.
        """
        sid = _b32(study_id)
        start = self.deploy_block if from_block is None else from_block
        rounds = self._call(
            lambda: self.contract.events.RoundRecorded().get_logs(
                from_block=start, to_block="latest", argument_filters={"studyId": sid}
            ),
            "RoundRecorded logs",
        )
        out = []
        for ev in sorted(rounds, key=lambda e: (e["blockNumber"], e["logIndex"])):
            a = ev["args"]
            txh = ev["transactionHash"].to_0x_hex()
            tx = self._call(lambda: self.w3.eth.get_transaction(txh), "get transaction")
            _fn, params = self.contract.decode_function_input(tx["input"])
            if _fn.fn_name == "recordRoundMerkle":
                if (bytes(params["commitmentsRoot"]), params["round"], bytes(params["studyId"])) != (
                    bytes(a["commitmentsHash"]),
                    a["round"],
                    sid,
                ):
                    raise LedgerError(f"round {a['round']}: calldata of tx {txh} does not match its RoundRecorded log")
                out.append(
                    RoundEvent(
                        sid,
                        a["round"],
                        bytes(a["prevGlobalHash"]),
                        bytes(a["aggregateHash"]),
                        a["totalSamples"],
                        bytes(a["commitmentsHash"]),
                        a["participants"],
                        ev["blockNumber"],
                        txh,
                        (),
                        MODE_MERKLE,
                        int(params["maxEpsilonMicro"]),
                    )
                )
                continue
            call_commitments = [
                RoundCommitment.from_tuple(tuple(c.values()) if isinstance(c, dict) else c)
                for c in params["commitments"]
            ]
            sigs = [bytes(s) for s in params["signatures"]]
            for c in call_commitments:
                if c.study_id != sid or c.round != a["round"]:
                    raise LedgerError(f"round {a['round']}: calldata of tx {txh} does not match its RoundRecorded log")
            receipt = self._call(lambda: self.w3.eth.get_transaction_receipt(txh), "get receipt")
            logs = sorted(
                self.contract.events.CommitmentRecorded().process_receipt(receipt, errors=DISCARD),
                key=lambda e: e["logIndex"],
            )
            if len(logs) != len(call_commitments):
                raise LedgerError(
                    f"round {a['round']}: {len(logs)} commitment logs but "
                    f"{len(call_commitments)} commitments in tx {txh}"
                )
            items = []
            for log_ev, c, sig in zip(logs, call_commitments, sigs):
                la = log_ev["args"]
                if (bytes(la["updateHash"]), la["sampleCount"], la["epsilonMicro"]) != (
                    c.update_hash,
                    c.sample_count,
                    c.epsilon_micro,
                ):
                    raise LedgerError(f"round {a['round']}: log {log_ev['logIndex']} does not match calldata")
                items.append(CommitmentEvent(la["hospital"], c, sig, log_ev["logIndex"]))
            out.append(
                RoundEvent(
                    sid,
                    a["round"],
                    bytes(a["prevGlobalHash"]),
                    bytes(a["aggregateHash"]),
                    a["totalSamples"],
                    bytes(a["commitmentsHash"]),
                    a["participants"],
                    ev["blockNumber"],
                    txh,
                    tuple(items),
                )
            )
        return out

    def events(self, event_name: str, study_id: bytes | str | None = None, from_block: int | None = None) -> list:
        """Raw decoded logs of one event type (optionally for one study)."""
        filters = {} if study_id is None else {"studyId": _b32(study_id)}
        start = self.deploy_block if from_block is None else from_block
        return self._call(
            lambda: getattr(self.contract.events, event_name)().get_logs(
                from_block=start, to_block="latest", argument_filters=filters
            ),
            f"{event_name} logs",
        )

    # ------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` retrying transport errors with exponential backoff."""
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except TRANSPORT_ERRORS as exc:
                if attempt == self.max_attempts:
                    raise LedgerTransportError(
                        f"{what}: chain at {self._endpoint()} unreachable after {attempt} attempts "
                        f"({type(exc).__name__})"
                    ) from exc
                log.warning(
                    "%s: chain unreachable (%s), retry %d/%d in %.2fs",
                    what,
                    type(exc).__name__,
                    attempt,
                    self.max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    def _endpoint(self) -> str:
        return str(getattr(self.w3.provider, "endpoint_uri", None) or type(self.w3.provider).__name__)

    def _view(self, fn: Any, what: str) -> Any:
        try:
            return self._call(lambda: fn.call(), what)
        except REVERT_ERRORS as exc:
            raise self._decode_revert(exc, what) from None

    def _next_nonce(self, address: str) -> int:
        if address not in self._nonces:
            self._nonces[address] = self._call(lambda: self.w3.eth.get_transaction_count(address, "pending"), "nonce")
        return self._nonces[address]

    def _transact(self, fn: Any, sender: LocalAccount | None, what: str) -> dict:
        acct = sender or self.account
        if acct is None:
            raise LedgerError(f"{what}: no sender account")
        addr = acct.address
        for attempt in (1, 2):
            params = {"from": addr, "nonce": self._next_nonce(addr), "chainId": self.chain_id}
            if self.gas_limit is not None:
                params["gas"] = self.gas_limit
            try:
                tx = self._call(lambda: fn.build_transaction(params), what)
                if self.gas_limit is not None:  # no estimate ran: preflight to name a revert
                    self._call(
                        lambda: self.w3.eth.call({k: tx[k] for k in ("from", "to", "data", "value") if k in tx}), what
                    )
            except REVERT_ERRORS as exc:
                raise self._decode_revert(exc, what) from None
            if self.gas_limit is None:
                tx["gas"] = int(tx["gas"] * 1.25) + 20_000
            signed = acct.sign_transaction(tx)
            tx_hash = signed.hash
            try:
                self._send_raw(signed.raw_transaction, tx_hash, addr, what)
                break
            except LedgerTransportError:
                self._nonces.pop(addr, None)  # the chain may come back with another history
                raise
            except _NonceRejected:
                # someone else used this key (or the chain was reset): resync once
                self._nonces.pop(addr, None)
                if attempt == 2:
                    raise LedgerError(f"{what}: node keeps rejecting the nonce of {addr}") from None
        self._nonces[addr] = tx["nonce"] + 1
        try:
            receipt = self._wait_receipt(tx_hash, what)
        except LedgerTransportError:
            self._nonces.pop(addr, None)
            raise
        if receipt["status"] != 1:
            # Re-run the call at the mined block's parent state to name the error.
            try:
                self._call(
                    lambda: self.w3.eth.call(
                        {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}, receipt["blockNumber"] - 1
                    ),
                    what,
                )
            except REVERT_ERRORS as exc:
                raise self._decode_revert(exc, what) from None
            raise LedgerRevert("UnknownRevert", {"tx": tx_hash.to_0x_hex()}, action=what)
        return receipt

    def _send_raw(self, raw: bytes, tx_hash: Any, addr: str, what: str) -> None:
        def send() -> None:
            try:
                self.w3.eth.send_raw_transaction(raw)
            except TRANSPORT_ERRORS:
                raise
            except Exception as exc:  # node said no: already known / mined earlier is fine
                msg = str(exc).lower()
                if "already known" in msg or "known transaction" in msg or "already imported" in msg:
                    return
                if "nonce" in msg:
                    try:
                        self.w3.eth.get_transaction_receipt(tx_hash)
                        return  # this very transaction was mined before a retry
                    except TransactionNotFound:
                        raise _NonceRejected(str(exc)) from exc
                raise LedgerError(f"{what}: node rejected transaction: {exc}") from exc

        self._call(send, what)

    def _wait_receipt(self, tx_hash: Any, what: str) -> dict:
        deadline = time.monotonic() + self.receipt_timeout_s
        delay = 0.02
        while True:
            try:
                return self._call(lambda: self.w3.eth.get_transaction_receipt(tx_hash), what)
            except TransactionNotFound:
                if time.monotonic() > deadline:
                    raise LedgerTransportError(
                        f"{what}: no receipt for {tx_hash.to_0x_hex()} after {self.receipt_timeout_s:.0f}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @staticmethod
    def _receipt(receipt: dict) -> RecordReceipt:
        return RecordReceipt(receipt["transactionHash"].to_0x_hex(), receipt["blockNumber"], receipt["gasUsed"])

    def _decode_revert(self, exc: BaseException, what: str) -> LedgerRevert:
        return decode_revert(self._errors, _revert_data(exc), what, fallback=str(exc))


# ---------------------------------------------------------------- errors


def _revert_data(exc: BaseException) -> bytes | str | None:
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


def _error_table(abi: list) -> dict[bytes, tuple[str, list[str], list[str]]]:
    table = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [_abi_type(i) for i in item["inputs"]]
        sig = f"{item['name']}({','.join(types)})"
        table[keccak(text=sig)[:4]] = (item["name"], [i["name"] for i in item["inputs"]], types)
    return table


def decode_revert(table: dict, data: str | bytes | None, action: str = "", fallback: str = "") -> LedgerRevert:
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
