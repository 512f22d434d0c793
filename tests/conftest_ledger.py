"""Pytest fixtures for the study ledger (registered from tests/conftest.py).

- ``ledger_backend``: "eth_tester" always, "anvil" when the pinned anvil is
  installed (module scope, so each test module deploys once per backend).
- ``ledger_chain`` / ``ledger``: a started chain and a deployed LedgerClient
  (admin as default sender).
- ``make_study``: registers a fresh study (random id) with N hospitals from the
  funded dev accounts, all consenting unless told otherwise, and returns a
  :class:`StudyHarness` that builds signed rounds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from fedledger.commitment import RoundCommitment, sign_commitment
from ledger.chains import Chain, ChainError, anvil_binary, start_chain
from ledger.client import LedgerClient
from ledger.records import RecordReceipt


def _anvil_available() -> bool:
    try:
        anvil_binary()
        return True
    except ChainError:
        return False


ANVIL_AVAILABLE = _anvil_available()
LEDGER_BACKENDS = [
    "eth_tester",
    pytest.param("anvil", marks=pytest.mark.skipif(not ANVIL_AVAILABLE, reason="anvil not installed (npm ci)")),
]


@pytest.fixture(scope="module", params=LEDGER_BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def ledger_chain(ledger_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    chain = start_chain(ledger_backend, tmp_path_factory.mktemp(f"chain-{ledger_backend}"))
    assert chain is not None
    try:
        yield chain
    finally:
        chain.stop()


@pytest.fixture(scope="module")
def ledger(ledger_chain: Chain) -> LedgerClient:
    return LedgerClient.deploy(ledger_chain.w3, ledger_chain.admin, backoff_s=0.05)


@dataclass
class StudyHarness:
    """A registered study and its hospitals; builds and records signed rounds."""

    chain: Chain
    client: LedgerClient
    aggregator: LocalAccount
    study_id: bytes
    initial_model_hash: bytes
    hospitals: list[LocalAccount]
    budgets_micro: list[int]
    expiry: int
    max_samples: int = 1_000
    aggregates: dict[int, bytes] = field(default_factory=dict)

    @property
    def agg_client(self) -> LedgerClient:
        return self.client.with_account(self.aggregator)

    def prev_hash(self, round: int) -> bytes:
        return self.initial_model_hash if round == 1 else self.aggregates[round - 1]

    def commitments(
        self,
        round: int,
        eps_micro: int | Sequence[int] = 1_000_000,
        hospitals: Sequence[LocalAccount] | None = None,
        prev: bytes | None = None,
        samples: int = 50,
    ) -> tuple[list[RoundCommitment], list[bytes]]:
        hs = list(self.hospitals if hospitals is None else hospitals)
        eps = [eps_micro] * len(hs) if isinstance(eps_micro, int) else list(eps_micro)
        prev = self.prev_hash(round) if prev is None else prev
        dom = self.client.domain()
        cs = [
            RoundCommitment(self.study_id, round, prev, os.urandom(32), samples + i, e, prev) for i, e in enumerate(eps)
        ]
        return cs, [sign_commitment(h, dom, c) for h, c in zip(hs, cs)]

    def record(
        self,
        round: int,
        commitments: Sequence[RoundCommitment] | None = None,
        signatures: Sequence[bytes] | None = None,
        *,
        eps_micro: int | Sequence[int] = 1_000_000,
        prev: bytes | None = None,
        total: int | None = None,
        aggregate: bytes | None = None,
        sender: LocalAccount | None = None,
    ) -> RecordReceipt:
        if commitments is None:
            commitments, signatures = self.commitments(round, eps_micro)
        aggregate = os.urandom(32) if aggregate is None else aggregate
        prev = self.prev_hash(round) if prev is None else prev
        total = sum(c.sample_count for c in commitments) if total is None else total
        receipt = self.client.record_round(
            self.study_id, round, prev, aggregate, total, commitments, signatures, sender=sender or self.aggregator
        )
        self.aggregates[round] = aggregate
        return receipt


@pytest.fixture
def make_study(ledger_chain: Chain, ledger: LedgerClient) -> Callable[..., StudyHarness]:
    """Factory: ``make_study(n=3, consent=True, budget_micro=5_000_000, ttl=3600, max_samples=1_000, quorum=1)``."""

    def make(
        n: int = 3,
        consent: bool | Sequence[bool] = True,
        budget_micro: int = 5_000_000,
        ttl: int = 3600,
        max_samples: int = 1_000,
        quorum: int = 1,
    ) -> StudyHarness:
        accounts = ledger_chain.funded_accounts
        hospitals = list(accounts[2 : 2 + n])
        assert len(hospitals) == n, "not enough funded dev accounts"
        study_id, init = os.urandom(32), os.urandom(32)
        now = ledger_chain.w3.eth.get_block("latest")["timestamp"]
        budgets = [budget_micro] * n
        ledger.register_study(
            study_id,
            os.urandom(32),
            init,
            os.urandom(32),
            "test-1.0",
            ledger_chain.aggregator.address,
            now + ttl,
            [h.address for h in hospitals],
            budgets,
            quorum,
        )
        flags = [consent] * n if isinstance(consent, bool) else list(consent)
        for h, ok in zip(hospitals, flags):
            if ok:
                ledger.consent(study_id, h, max_samples)
        return StudyHarness(
            ledger_chain, ledger, ledger_chain.aggregator, study_id, init, hospitals, budgets, now + ttl, max_samples
        )

    return make


@pytest.fixture
def ledger_run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
