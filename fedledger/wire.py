"""What travels in a Flower message: the one place that encodes a global model or an update.

A model travels either as plaintext arrays or as CKKS ciphertext blobs. Both
ride in an ArrayRecord so the Flower Strategy interface stays unchanged:
ciphertexts become uint8 arrays named ``ckks/00000``... plus a
``ckks/total_weight`` scalar (the sum of sample counts the hospitals divide by).
An encrypted aggregate's hash covers that weight (``aggregate_hash``, docs/HASHES.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord

from fedledger.hashing import aggregate_hash, ciphertexts_hash, model_hash

CKKS_PREFIX = "ckks/"
TOTAL_WEIGHT_KEY = "ckks/total_weight"


@dataclass
class ModelPayload:
    """A global model or an update, plaintext or encrypted."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ciphertexts: list[bytes] = field(default_factory=list)
    total_weight: float = 0.0

    @property
    def encrypted(self) -> bool:
        return bool(self.ciphertexts)

    def digest(self) -> bytes:
        """The public hash: model_hash for plaintext; for ciphertexts, aggregate_hash when the payload
        carries a total weight (an aggregate), else ciphertexts_hash (an update).

        Raises ValueError for an aggregate whose weight is not a positive integer.
        """
        if not self.encrypted:
            return model_hash(self.arrays)
        if self.total_weight == 0:
            return ciphertexts_hash(self.ciphertexts)
        return aggregate_hash(self.ciphertexts, checked_weight(self.total_weight))

    def nbytes(self) -> int:
        if self.encrypted:
            return sum(len(b) for b in self.ciphertexts)
        return sum(int(a.nbytes) for a in self.arrays.values())


def checked_weight(weight: float) -> int:
    """The total weight as the integer sample count it must be; ValueError naming the value otherwise."""
    w = float(weight)
    if not math.isfinite(w) or w <= 0 or not w.is_integer():
        raise ValueError(f"the total weight must be a positive whole number of samples, got {weight!r}")
    return int(w)


def encode(payload: ModelPayload) -> ArrayRecord:
    """Put a payload into an ArrayRecord (no pickling, only raw arrays)."""
    if payload.encrypted:
        arrays = {
            f"{CKKS_PREFIX}{i:05d}": Array(np.frombuffer(blob, dtype=np.uint8))
            for i, blob in enumerate(payload.ciphertexts)
        }
        arrays[TOTAL_WEIGHT_KEY] = Array(np.array([payload.total_weight], dtype=np.float64))
        return ArrayRecord(array_dict=arrays)
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in payload.arrays.items()})


def decode(record: ArrayRecord) -> ModelPayload:
    """Inverse of encode; raises ValueError on a record that mixes both kinds."""
    keys = list(record.keys())
    ct_keys = sorted(k for k in keys if k.startswith(CKKS_PREFIX) and k != TOTAL_WEIGHT_KEY)
    if ct_keys:
        if len(ct_keys) + (TOTAL_WEIGHT_KEY in keys) != len(keys):
            raise ValueError("record mixes ciphertexts and plaintext arrays")
        blobs = []
        for k in ct_keys:
            arr = record[k]
            if arr.dtype != "uint8" or len(arr.shape) != 1:
                raise ValueError(f"ciphertext entry {k} is not a flat uint8 array")
            blobs.append(arr.numpy().tobytes())
        total = float(record[TOTAL_WEIGHT_KEY].numpy()[0]) if TOTAL_WEIGHT_KEY in keys else 0.0
        return ModelPayload(ciphertexts=blobs, total_weight=total)
    return ModelPayload(arrays={k: record[k].numpy() for k in keys})
