"""Ethereum identities: a hospital's or a study role's key, and the public development keys no deployment may use.

Simulation writes a fresh key per hospital, and a fresh study admin and
aggregator key per study, as owner-only hex files outside the artifact store.
Deployment uses an encrypted keystore (JSON, scrypt) whose password the
hospital keeps in ``FEDLEDGER_HOSPITAL_KEY_PASSWORD``; the key is never logged.

Anvil's default mnemonic is public: anyone can sign as its accounts. Tests
use them; a deployment refuses any of its first :data:`DEV_ACCOUNTS` addresses
in a study role (:func:`refuse_dev_addresses`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from fedledger.files import write_secret

PASSWORD_ENV = "FEDLEDGER_HOSPITAL_KEY_PASSWORD"
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS = 20


class DevKeyError(ValueError):
    """A deployment was given a key derived from the public development mnemonic."""


def dev_accounts(n: int = DEV_ACCOUNTS) -> list[LocalAccount]:
    """The development accounts of anvil's default mnemonic (public keys: tests and local funding only)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(n)]


@lru_cache(maxsize=1)
def _dev_addresses() -> dict[str, int]:
    return {a.address.lower(): i for i, a in enumerate(dev_accounts(DEV_ACCOUNTS))}


def dev_index(address: str) -> int | None:
    """The index of ``address`` under the public development mnemonic, or ``None``."""
    return _dev_addresses().get(str(address).lower())


def refuse_dev_addresses(roles: Mapping[str, str | None]) -> None:
    """Raise :class:`DevKeyError` naming every role whose address comes from the public mnemonic."""
    bad = [(role, addr, dev_index(addr)) for role, addr in roles.items() if addr and dev_index(addr) is not None]
    if bad:
        named = "; ".join(f"{role} {addr} is account {i}" for role, addr, i in bad)
        raise DevKeyError(
            f"{named} of the public development mnemonic ({DEV_MNEMONIC!r}): anyone can sign as it. "
            "A deployment needs keys of its own: omit the key for a fresh one, or give key_env / keystore a new key"
        )


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
