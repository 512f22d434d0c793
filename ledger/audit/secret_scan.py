"""Secret keys in the evidence: the auditor refuses an artifact store or run directory that holds one.

The store is handed to auditors and regulators. A key in it gives them what
no auditor may hold: the hospitals' CKKS secret context decrypts every
update, an Ethereum key signs as a study party, a TLS or SuperNode key
impersonates a server or a hospital. Keys belong in ``<run dir>.secrets/``
(docs/AUDIT.md "What to hand the auditor"). Every file is looked at; each
key found is a failing ``secrets`` finding that names the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ledger.audit.result import Finding

CHECK = "secrets"
HEX_KEY = re.compile(rb"\s*(0x)?[0-9a-fA-F]{64}\s*")
PEM_KEY = re.compile(rb"(?m)^-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----\r?$")  # a line of its own, not a mention
HASH_SUFFIXES = (".sha256",)  # a file of this name holds a public hash, written as 64 hex digits
SMALL = 64 * 1024  # a hex key or a keystore is far smaller
MAX_CONTEXT = 512 * 1024 * 1024
PROTOBUF_START = b"\n"  # a serialised TenSEAL context: protobuf field 1, length-delimited


def _files(root: Path) -> Iterator[Path]:
    for here, dirs, names in os.walk(root):  # symlinked directories are not followed
        dirs.sort()
        for name in sorted(names):
            path = Path(here) / name
            if path.is_file():
                yield path


def _is_keystore(head: bytes) -> bool:
    try:
        doc = json.loads(head)
    except ValueError:
        return False
    crypto = doc.get("crypto") or doc.get("Crypto") if isinstance(doc, dict) else None
    return isinstance(crypto, dict) and "ciphertext" in crypto


def _is_secret_context(path: Path) -> bool:
    import tenseal as ts

    try:
        ctx = ts.context_from(path.read_bytes(), n_threads=1)
    except Exception:  # not a TenSEAL context at all
        return False
    return bool(ctx.is_private() or ctx.has_secret_key())


def secret_kind(path: Path) -> str | None:
    """What secret key ``path`` holds, in words, or ``None``."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(SMALL)
    if PEM_KEY.search(head[:4096]):
        return "a PEM/OpenSSH private key"
    if size <= SMALL and head.lstrip().startswith(b"{") and _is_keystore(head):
        return "an Ethereum keystore (encrypted private key)"
    if size <= 256 and HEX_KEY.fullmatch(head) and not path.name.endswith(HASH_SUFFIXES):
        return "an Ethereum private key (hex)"
    if head.startswith(PROTOBUF_START) and size <= MAX_CONTEXT and _is_secret_context(path):
        return "a TenSEAL context with the secret key"
    return None


def check_secrets(store_dir: Path) -> list[Finding]:
    """One failing finding per secret key under ``store_dir``; one passing finding when there is none."""
    store_dir = Path(store_dir)
    failures, scanned = [], 0
    for path in _files(store_dir):
        scanned += 1
        kind = secret_kind(path)
        if kind is not None:
            rel = path.relative_to(store_dir)
            failures.append(
                Finding(
                    CHECK,
                    False,
                    f"{rel} is {kind}: the evidence handed to an auditor must hold no key; "
                    f"move it out of {store_dir} (keys belong in {store_dir.name}.secrets/) and audit again",
                )
            )
    return failures or [Finding(CHECK, True, f"no secret key among the {scanned} files of the store")]
