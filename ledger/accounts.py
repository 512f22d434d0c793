"""A hospital's Ethereum identity: the key that signs its round commitments and its consent.

Simulation writes a fresh key per hospital as an owner-only hex file.
Deployment uses an encrypted keystore (JSON, scrypt) whose password the
hospital keeps in ``FEDLEDGER_HOSPITAL_KEY_PASSWORD``; the key is never logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.files import write_secret

PASSWORD_ENV = "FEDLEDGER_HOSPITAL_KEY_PASSWORD"


def generate_eth_key(path: Path, password: str | None = None) -> LocalAccount:
    """New random key; plain hex file (simulation) or encrypted keystore when a password is given."""
    account = Account.create()
    if password is None:
        write_secret(Path(path), account.key.hex().encode())
    else:
        write_secret(Path(path), json.dumps(Account.encrypt(account.key, password)).encode())
    return account


def load_eth_account(path: str | Path) -> LocalAccount:
    """Load a hospital key from a hex file or an encrypted keystore (password from the environment)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"hospital Ethereum key {path} not found")
    raw = path.read_text().strip()
    if raw.startswith("{"):
        password = os.environ.get(PASSWORD_ENV)
        if password is None:
            raise ValueError(f"{path} is an encrypted keystore; set {PASSWORD_ENV} to its password")
        try:
            return Account.from_key(Account.decrypt(json.loads(raw), password))
        except ValueError as exc:
            raise ValueError(f"cannot decrypt keystore {path}: wrong password or corrupt file") from exc
    try:
        return Account.from_key(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} holds neither a hex private key nor a keystore") from exc
