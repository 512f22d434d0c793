"""How the project writes files: secrets owner-only, shared files atomically, models as npz.

Every side (hospital, aggregator, auditor, coordinator) writes through these
three helpers so that a key is never world-readable, a crash never leaves a
torn file, and a model file can never carry a pickle.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike[str]


def write_secret(path: PathLike, data: bytes, *, lock_dir: bool = True) -> None:
    """Owner-only file (0600), by default in an owner-only directory (0700): keys and other secrets.

    The mode is set on the open descriptor too, so an existing file with looser
    permissions is tightened before the secret lands in it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if lock_dir:
        os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write bytes so that readers see the old file or the new one, never a torn one.

    Temp file beside the target, fsync, rename, then fsync the directory so the
    rename itself survives a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # not every platform can fsync a directory
        pass


def save_npz(path: PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """A model (name -> array) as an uncompressed npz, written atomically."""
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    atomic_write(path, buf.getvalue())


def load_npz(path: PathLike) -> dict[str, np.ndarray]:
    """A model saved by save_npz (or np.savez); refuses pickled object arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
