"""What travels in a Flower message: the one place that encodes a global model or an update.

A model travels either as plaintext arrays or as CKKS ciphertext blobs. Both
ride in an ArrayRecord so the Flower Strategy interface stays unchanged:
ciphertexts become uint8 arrays named ``ckks/00000``... plus a
``ckks/total_weight`` scalar (the sum of sample counts the hospitals divide by).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord

from fedledger.hashing import ciphertexts_hash, model_hash

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
        """The public hash: model_hash for plaintext, ciphertexts_hash when encrypted."""
        return ciphertexts_hash(self.ciphertexts) if self.encrypted else model_hash(self.arrays)

    def nbytes(self) -> int:
        if self.encrypted:
            return sum(len(b) for b in self.ciphertexts)
        return sum(int(a.nbytes) for a in self.arrays.values())


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
