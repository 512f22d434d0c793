"""web3.py client of the StudyLedger contract: deploy, register, consent, record rounds and queries, read views and events.

One class, :class:`LedgerClient`, on :class:`ledger.transport.ContractTransport`
(retries, local nonces and signing, idempotent re-sends). What it returns is in
:mod:`ledger.records`; a revert raises :class:`ledger.reverts.LedgerRevert`
naming the contract's custom error, decoded from the 4-byte selector against
the ABI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import Web3

from fedledger.commitment import Domain, RoundCommitment, domain
from fedledger.hashing import as_bytes32
from fedledger.query_charge import EpsilonCharge
from ledger.compile import load_artifact
from ledger.records import HOSPITAL_STATUS, HospitalInfo, RecordReceipt, RoundEvent, RoundInfo, StudyInfo
from ledger.round_events import read_round_events
from ledger.transport import ContractTransport

log = logging.getLogger("fedledger.ledger.client")


class LedgerClient(ContractTransport):
    """Client of one deployed StudyLedger.

    ``account`` is the default sender (the admin after :meth:`deploy`, the
    aggregator on a server); every transaction method takes ``sender=`` to
    override it. ``options``: retries, timeouts and ``gas_limit``
    (:class:`ledger.transport.ContractTransport`).
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        account: LocalAccount | None = None,
        *,
        abi: list | None = None,
        deploy_block: int = 0,
        **options: Any,
    ) -> None:
        self.address = to_checksum_address(address)
        self.abi = abi if abi is not None else load_artifact()["abi"]
        super().__init__(w3, self.abi, account, **options)
        self.contract = w3.eth.contract(address=self.address, abi=self.abi)
        self.deploy_block = deploy_block

    # -------------------------------------------------------------- deploy

    @classmethod
    def deploy(cls, w3: Web3, admin_account: LocalAccount, **options: Any) -> LedgerClient:
        """Deploy a new StudyLedger with ``admin_account`` as DEFAULT_ADMIN_ROLE."""
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        deployer = ContractTransport(w3, artifact["abi"], admin_account, **options)
        receipt = deployer._transact(factory.constructor(admin_account.address), admin_account, "deploy StudyLedger")
        client = cls(
            w3,
            receipt["contractAddress"],
            admin_account,
            abi=artifact["abi"],
            deploy_block=receipt["blockNumber"],
            **options,
        )
        client._nonces = deployer._nonces
        log.info("StudyLedger deployed at %s (block %d)", client.address, receipt["blockNumber"])
        return client

    @classmethod
    def at(cls, w3: Web3, address: str, account: LocalAccount | None = None, **options: Any) -> LedgerClient:
        return cls(w3, address, account, **options)

    def with_account(self, account: LocalAccount) -> LedgerClient:
        """Same contract and nonce book, different default sender."""
        return self._copy(account, self.retry_options())

    def with_options(self, **options: Any) -> LedgerClient:
        """Same contract, sender and nonce book; other retry/timeout settings."""
        return self._copy(self.account, {**self.retry_options(), **options})

    def _copy(self, account: LocalAccount | None, options: dict[str, Any]) -> LedgerClient:
        other = LedgerClient(
            self.w3,
            self.address,
            account,
            abi=self.abi,
            deploy_block=self.deploy_block,
            gas_limit=self.gas_limit,
            **options,
        )
        other._nonces = self._nonces
        return other

    def deployment_info(self) -> dict[str, Any]:
        return {"address": self.address, "chain_id": self.chain_id, "deploy_block": self.deploy_block}

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
        release_quorum: int,
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        """``release_quorum``: distinct consented hospitals whose ModelRelease signatures a release needs (> 0)."""
        fn = self.contract.functions.registerStudy(
            as_bytes32(study_id),
            as_bytes32(config_hash),
            as_bytes32(initial_model_hash),
            as_bytes32(context_hash),
            code_version,
            to_checksum_address(aggregator),
            int(expiry),
            [to_checksum_address(h) for h in hospitals],
            [int(b) for b in epsilon_budgets_micro],
            int(release_quorum),
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
            as_bytes32(study_id), [to_checksum_address(h) for h in hospitals], [int(b) for b in epsilon_budgets_micro]
        )
        return self._receipt(self._transact(fn, sender, f"addHospitals({len(hospitals)})"))

    def consent(self, study_id: bytes | str, hospital_account: LocalAccount, max_samples: int) -> RecordReceipt:
        """The hospital's consent from its own key, with its registered cohort size (records it trains on, or
        an upper bound): the contract refuses its commitments above it."""
        fn = self.contract.functions.consent(as_bytes32(study_id), int(max_samples))
        return self._receipt(self._transact(fn, hospital_account, "consent"))

    def withdraw(self, study_id: bytes | str, hospital_account: LocalAccount) -> RecordReceipt:
        return self._receipt(
            self._transact(self.contract.functions.withdraw(as_bytes32(study_id)), hospital_account, "withdraw")
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
            as_bytes32(study_id),
            int(round),
            as_bytes32(prev_global_hash),
            as_bytes32(aggregate_hash),
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
            as_bytes32(study_id),
            int(round),
            as_bytes32(prev_global_hash),
            as_bytes32(aggregate_hash),
            int(total_samples),
            as_bytes32(commitments_root),
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
                as_bytes32(study_id),
                int(round),
                commitment.as_abi_tuple(),
                bytes(signature),
                [as_bytes32(p) for p in proof],
            ),
            "merkleMember",
        )
        return None if int(a, 16) == 0 else to_checksum_address(a)

    def release_model(
        self,
        study_id: bytes | str,
        round: int,
        model_hash: bytes | str,
        signatures: Sequence[bytes],
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        """Release a checkpoint's hash with the hospitals' ModelRelease signatures over it (at least the
        study's release quorum, distinct consented hospitals; ``fedledger.release_attestation``)."""
        fn = self.contract.functions.releaseModel(
            as_bytes32(study_id), int(round), as_bytes32(model_hash), [bytes(s) for s in signatures]
        )
        return self._receipt(self._transact(fn, sender, f"releaseModel(round={round})"))

    def record_query(
        self,
        study_id: bytes | str,
        query_hash: bytes | str,
        purpose: str,
        query_spec: str,
        charges: Sequence[EpsilonCharge],
        signatures: Sequence[bytes],
        requester_signature: bytes,
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        """Record a statistics query with each answering hospital's signed epsilon charge and the
        requester's signed ``QueryRequest`` (``fedledger.query_charge``); ``query_spec`` is the
        canonical query JSON the hash covers."""
        fn = self.contract.functions.recordQuery(
            as_bytes32(study_id),
            as_bytes32(query_hash),
            purpose,
            query_spec,
            [c.as_abi_tuple() for c in charges],
            [bytes(s) for s in signatures],
            bytes(requester_signature),
        )
        return self._receipt(self._transact(fn, sender, "recordQuery"))

    def onchain_query_charge_digest(self, charge: EpsilonCharge) -> bytes:
        """``StudyLedger.queryChargeDigest``: the QueryCharge digest the contract recovers a hospital from."""
        return bytes(self._view(self.contract.functions.queryChargeDigest(charge.as_abi_tuple()), "queryChargeDigest"))

    def onchain_release_digest(self, study_id: bytes | str, round: int, model_hash: bytes | str) -> bytes:
        """``StudyLedger.releaseDigest``: the ModelRelease digest the contract recovers signers from."""
        fn = self.contract.functions.releaseDigest(as_bytes32(study_id), int(round), as_bytes32(model_hash))
        return bytes(self._view(fn, "releaseDigest"))

    # --------------------------------------------------------------- views

    def read_study(self, study_id: bytes | str) -> StudyInfo:
        sid = as_bytes32(study_id)
        r = self._view(self.contract.functions.getStudy(sid), "getStudy")
        return StudyInfo(sid, bytes(r[0]), bytes(r[1]), bytes(r[2]), r[3], r[4], r[5], r[6], r[7], tuple(r[8]), r[9])

    def read_hospital(self, study_id: bytes | str, hospital: str) -> HospitalInfo:
        addr = to_checksum_address(hospital)
        r = self._view(self.contract.functions.getHospital(as_bytes32(study_id), addr), "getHospital")
        return HospitalInfo(addr, r[0], r[1], r[2], HOSPITAL_STATUS[r[3]], r[4])

    def last_round(self, study_id: bytes | str) -> int:
        return self._view(self.contract.functions.lastRound(as_bytes32(study_id)), "lastRound")

    def read_round(self, study_id: bytes | str, r: int) -> RoundInfo:
        x = self._view(self.contract.functions.getRound(as_bytes32(study_id), int(r)), "getRound")
        return RoundInfo(int(r), bytes(x[0]), bytes(x[1]), x[2], bytes(x[3]), x[4], x[5], x[6], x[7])

    def released_model(self, study_id: bytes | str, r: int) -> bytes | None:
        h = bytes(self._view(self.contract.functions.releasedModel(as_bytes32(study_id), int(r)), "releasedModel"))
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
        start = self.deploy_block if from_block is None else from_block
        return read_round_events(self.contract, self._call, as_bytes32(study_id), start)

    def events(self, event_name: str, study_id: bytes | str | None = None, from_block: int | None = None) -> list:
        """Raw decoded logs of one event type (optionally for one study)."""
        filters = {} if study_id is None else {"studyId": as_bytes32(study_id)}
        start = self.deploy_block if from_block is None else from_block
        return self._call(
            lambda: getattr(self.contract.events, event_name)().get_logs(
                from_block=start, to_block="latest", argument_filters=filters
            ),
            f"{event_name} logs",
        )

    @staticmethod
    def _receipt(receipt: dict) -> RecordReceipt:
        return RecordReceipt(receipt["transactionHash"].to_0x_hex(), receipt["blockNumber"], receipt["gasUsed"])
