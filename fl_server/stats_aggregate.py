"""The aggregator's side of a statistics query: sum the hospitals' encrypted noisy vectors, public context only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import tenseal as ts

from fedledger.ckks import n_ciphertexts, sum_ciphertexts
from fedledger.ckks.errors import CiphertextError


class _Answer(Protocol):
    hospital: str
    query_hash: bytes
    ciphertexts: list[bytes]


def sum_answers(public_context: ts.Context, answers: Sequence[_Answer], query_hash: bytes, cells: int) -> list[bytes]:
    """The encrypted pooled vector: every answer must be for ``query_hash`` and hold ``cells`` slots."""
    if not answers:
        raise CiphertextError("no hospital answered the query: nothing to sum")
    expected = n_ciphertexts(cells, public_context)
    for a in answers:
        if a.query_hash != query_hash:
            raise CiphertextError(f"{a.hospital} answered another query ({a.query_hash.hex()[:16]}...)")
        if len(a.ciphertexts) != expected:
            raise CiphertextError(f"{a.hospital} sent {len(a.ciphertexts)} ciphertexts, expected {expected}")
    return sum_ciphertexts(public_context, [a.ciphertexts for a in answers])
