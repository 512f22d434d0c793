"""Flatten / unflatten model arrays in one fixed, framework-independent layout.

Layout (a public format, shared by client, server and auditor):

* arrays are taken in ``sorted(name)`` order (Python string order of the
  names, the same order as ``fedledger.hashing.canonical_model_bytes``);
* each array is raveled in C (row-major) order;
* the pieces are concatenated into one 1-D vector.

``unflatten`` needs a *template* (name -> array or shape-carrying object) to
know the names, shapes and dtypes; it refuses a vector of the wrong length.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["flatten", "layout", "num_params", "unflatten"]


def layout(template: Mapping[str, np.ndarray]) -> list[tuple[str, tuple[int, ...], int, int]]:
    """The layout as ``[(name, shape, start, stop), ...]`` in vector order."""
    out = []
    offset = 0
    for name in sorted(template):
        shape = tuple(int(d) for d in np.shape(template[name]))
        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
        out.append((name, shape, offset, offset + size))
        offset += size
    return out


def num_params(template: Mapping[str, np.ndarray]) -> int:
    """Length of the flat vector for this template."""
    return sum(int(np.asarray(a).size) for a in template.values())


def flatten(arrays: Mapping[str, np.ndarray], dtype: DTypeLike = np.float64) -> np.ndarray:
    """Concatenate ``arrays`` sorted by name, each in C order, as one vector.

    The default dtype is float64 (what CKKS encodes); float32 model weights
    round-trip exactly through it.
    """
    if not arrays:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(
        [np.ravel(np.asarray(arrays[name]), order="C").astype(dtype, copy=False) for name in sorted(arrays)]
    ).astype(dtype, copy=False)


def unflatten(vector: np.ndarray, template: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten`: split ``vector`` back into arrays shaped like ``template``.

    Each array gets the template array's dtype (float32 for models).
    """
    vec = np.asarray(vector).reshape(-1)
    expected = num_params(template)
    if vec.size != expected:
        raise ValueError(f"flat vector has {vec.size} values, template needs {expected}")
    out: dict[str, np.ndarray] = {}
    for name, shape, start, stop in layout(template):
        dtype = getattr(template[name], "dtype", np.float32)
        out[name] = np.ascontiguousarray(vec[start:stop].reshape(shape), dtype=dtype)
    return out
