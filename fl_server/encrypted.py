"""Encrypted aggregation: wraps a strategy so it sums CKKS ciphertexts it cannot read.

The aggregator holds only the public evaluation context (refused at start-up
if it carries a secret key). Each hospital sends Enc(n_k * w_k); this wrapper
validates every reply's ciphertexts (size cap before parsing, structure,
parameters, count), sums them, and sends back Enc(sum n_k w_k) with the
plaintext total weight sum n_k; hospitals decrypt and divide.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fedledger import ckks
from fedledger.hashing import to_hex
from fedledger.wire import ModelPayload
from fl_server.strategy import RoundStrategy, StrategyWrapper, TrainResult
from fl_server.validation import ValidationOutcome

log = logging.getLogger("fedledger.server")


class EncryptedAggregation(StrategyWrapper):
    """Sum-of-ciphertexts FedAvg around an inner strategy (sampling, evaluation stay the inner's)."""

    def __init__(self, inner: RoundStrategy, aggregator_context: Path, n_params: int, max_update_bytes: int) -> None:
        super().__init__(inner)
        self.context_path = Path(aggregator_context)
        data = self.context_path.read_bytes()
        self.context = ckks.aggregator_context_from_bytes(data, origin=str(self.context_path))  # refuses a secret key
        self.params = ckks.context_params(self.context)
        self.n_params = n_params
        self.n_ct = ckks.n_ciphertexts(n_params, self.params)
        self.max_update_bytes = max_update_bytes
        self.fingerprint = to_hex(ckks.context_fingerprint(data))
        self.aggregate_seconds: list[float] = []

    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        t0 = time.perf_counter()
        vectors, kept = [], []
        for reply in outcome.accepted:
            try:
                if not reply.payload.encrypted:
                    raise ckks.CiphertextError("plaintext update sent to an encrypted study")
                used = reply.report.context_fingerprint
                if used != self.fingerprint:
                    raise ckks.CiphertextError(
                        f"encrypted under a different CKKS key (context fingerprint {used}, "
                        f"the study's is {self.fingerprint})"
                    )
                vectors.append(
                    ckks.validate_ciphertexts(
                        self.context,
                        reply.payload.ciphertexts,
                        self.n_ct,
                        self.max_update_bytes,
                        n_params=self.n_params,
                    )
                )
                kept.append(reply)
            except ckks.CiphertextError as exc:
                outcome.reject(reply.node_id, reply.hospital, "invalid", f"ciphertext rejected: {exc}")
        outcome.accepted = kept
        if not kept:
            return TrainResult.of(outcome, None)
        blobs = ckks.sum_vectors(vectors)
        total = sum(r.num_examples for r in kept)
        self.aggregate_seconds.append(time.perf_counter() - t0)
        return TrainResult.of(outcome, ModelPayload(ciphertexts=blobs, total_weight=float(total)))

    def encryption_report(self, outcomes: list[Any]) -> dict[str, Any]:
        sizes = [o.bytes_per_hospital for o in outcomes]
        per_hospital = sum(sizes) / len(sizes) if sizes else 0.0
        return {
            "scheme": "ckks",
            "poly_modulus_degree": self.params.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.params.coeff_mod_bit_sizes),
            "global_scale_bits": self.params.global_scale_bits,
            "context_fingerprint": self.fingerprint,
            "ciphertexts_per_update": self.n_ct,
            "bytes_per_hospital_per_round": per_hospital,
            "expansion_vs_float32": per_hospital / (4 * self.n_params) if self.n_params else None,
            "aggregate_seconds_per_round": (sum(self.aggregate_seconds) / len(self.aggregate_seconds))
            if self.aggregate_seconds
            else None,
        }

    def summary(self) -> None:
        log.info("EncryptedAggregation: %d ciphertext(s) per update, context %s", self.n_ct, self.context_path)
