"""Where the study ledger lives: start or connect to an EVM chain.

``start_chain(backend, run_dir, ...)`` returns a :class:`Chain` (or ``None``
for backend ``none``):

- ``anvil``: the pinned anvil from ``node_modules/.bin`` (or PATH) on a free
  loopback port, with ``--state <run_dir>/chain/anvil_state.json`` so the chain
  is written on a clean stop and can be reopened later for audit
  (:func:`reopen_anvil`).
- ``eth_tester``: in-process py-evm through web3's EthereumTesterProvider
  (a real EVM; state lives only as long as the process).
- ``rpc``: an existing chain by URL (e.g. a consortium chain of hospitals and
  regulators). The aggregator key comes from an environment variable holding a
  hex private key, or from an encrypted keystore file whose password is in the
  environment variable ``FEDLEDGER_KEYSTORE_PASSWORD``; never from config and
  never logged.

Local backends fund the well-known development accounts of anvil's default
mnemonic (same addresses on both backends). Tests use them directly (index 0
as admin, 1 as aggregator); a study set up by the coordinator funds fresh keys
from them and gives them its roles instead (:meth:`Chain.assign_roles`), so
the public mnemonic holds no role in any study. On eth_tester the last
account is kept back to pay for :meth:`Chain.fund`, which tops up any address
(e.g. a hospital's own key). Anvil listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

from ledger.accounts import DEV_ACCOUNTS, DEV_MNEMONIC, DevKeyError, dev_accounts, refuse_dev_addresses
from ledger.rpc import http_w3, rpc_answers

log = logging.getLogger("fedledger.ledger.chains")

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_CHAIN_ID = 31337
KEYSTORE_PASSWORD_ENV = "FEDLEDGER_KEYSTORE_PASSWORD"
STATE_FILE = "anvil_state.json"
BACKENDS = ("anvil", "eth_tester", "rpc", "none")
__all__ = ["DEV_ACCOUNTS", "DEV_MNEMONIC", "Chain", "ChainError", "ChainUnavailable", "dev_accounts", "start_chain"]


class ChainError(RuntimeError):
    """A chain could not be started, reached or configured."""


class ChainUnavailable(ChainError):
    """The chain at a URL does not answer."""


@dataclass
class Chain:
    w3: Web3
    chain_id: int
    backend: str
    funded_accounts: list[LocalAccount]
    rpc_url: str | None = None
    run_dir: Path | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _port: int | None = field(default=None, repr=False)
    _roles: tuple[LocalAccount, LocalAccount] | None = field(default=None, repr=False)

    @property
    def admin(self) -> LocalAccount:
        if self._roles is not None:
            return self._roles[0]
        return self.funded_accounts[0]

    @property
    def aggregator(self) -> LocalAccount:
        if self._roles is not None:
            return self._roles[1]
        return self.funded_accounts[1] if len(self.funded_accounts) > 1 else self.funded_accounts[0]

    def assign_roles(self, admin: LocalAccount, aggregator: LocalAccount) -> None:
        """The study's own admin and aggregator keys, in place of the funded development accounts."""
        self._roles = (admin, aggregator)

    @property
    def state_file(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "chain" / STATE_FILE

    def fund(self, address: str, wei: int = 10**21) -> None:
        """Give ``address`` a balance of ``wei`` (local backends only)."""
        address = Web3.to_checksum_address(address)
        if self.backend == "anvil":
            self.w3.provider.make_request("anvil_setBalance", [address, hex(wei)])
        else:
            self.transfer_from_dev(address, wei)

    def transfer_from_dev(self, address: str, wei: int = 10**21) -> None:
        """A plain value transfer to ``address`` from the last development account (local backends only).

        That account is never a study's admin or aggregator; on eth_tester it is also the one
        kept back from :attr:`funded_accounts`, so no test's nonces collide with it.
        """
        if self.backend not in ("anvil", "eth_tester"):
            raise ChainError(f"cannot fund accounts on backend {self.backend!r}")
        funder = self.w3.eth.accounts[-1]  # not the admin: its nonces belong to the ledger client
        tx = self.w3.eth.send_transaction({"from": funder, "to": Web3.to_checksum_address(address), "value": wei})
        self.w3.eth.wait_for_transaction_receipt(tx)

    def increase_time(self, seconds: int) -> int:
        """Advance the chain clock and mine a block (local backends, tests)."""
        if self.backend == "anvil":
            self.w3.provider.make_request("evm_increaseTime", [int(seconds)])
            self.w3.provider.make_request("evm_mine", [])
        elif self.backend == "eth_tester":
            tester = self.w3.provider.ethereum_tester
            tester.time_travel(self.w3.eth.get_block("latest")["timestamp"] + int(seconds))
        else:
            raise ChainError(f"cannot move time on backend {self.backend!r}")
        return self.w3.eth.get_block("latest")["timestamp"]

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a local anvil cleanly (SIGINT) so it writes its state file."""
        proc = self._process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("anvil did not stop within %.0fs; terminating", timeout)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def restart(self, timeout: float = 15.0) -> None:
        """Start anvil again from its state file on the same port (same URL)."""
        if self.backend != "anvil" or self.run_dir is None or self._port is None:
            raise ChainError("only a local anvil chain can be restarted")
        self.stop()
        self._process = _spawn_anvil(self.run_dir, self._port, timeout)

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ------------------------------------------------------------------ anvil


def anvil_binary(repo_root: Path = REPO_ROOT) -> str:
    """The pinned anvil: the native binary npm installed for this platform.

    The ``node_modules/.bin/anvil`` node shim is only a fallback: it exits on
    SIGINT before the real anvil has finished writing its state file.
    """
    for native in sorted((repo_root / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if os.access(native, os.X_OK):
            return str(native)
    shim = repo_root / "node_modules" / ".bin" / "anvil"
    if shim.exists():
        return str(shim)
    found = shutil.which("anvil")
    if found:
        return found
    raise ChainError(f"anvil not found in {shim.parent} or on PATH; run `npm ci` in {repo_root}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_anvil(run_dir: Path, port: int, timeout: float) -> subprocess.Popen:
    chain_dir = run_dir / "chain"
    chain_dir.mkdir(parents=True, exist_ok=True)
    state = chain_dir / STATE_FILE
    cmd = [
        anvil_binary(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(LOCAL_CHAIN_ID),
        "--accounts",
        str(DEV_ACCOUNTS),
        "--mnemonic",
        DEV_MNEMONIC,
        "--state",
        str(state),
        "--state-interval",
        "5",
        "--quiet",
    ]
    log_path = chain_dir / "anvil.log"
    logf = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=chain_dir)
    logf.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChainError(
                f"anvil exited with code {proc.returncode}; see {log_path}: "
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        if rpc_answers(url, timeout=0.5):
            (chain_dir / "anvil.json").write_text(json.dumps({"port": port, "url": url, "state": str(state)}))
            return proc
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise ChainError(f"anvil did not answer at {url} within {timeout:.0f}s; see {log_path}")


def _start_anvil(run_dir: Path, port: int | None = None, timeout: float = 15.0) -> Chain:
    port = port or free_port()
    proc = _spawn_anvil(run_dir, port, timeout)
    url = f"http://127.0.0.1:{port}"
    w3 = http_w3(url)
    return Chain(
        w3=w3,
        chain_id=w3.eth.chain_id,
        backend="anvil",
        funded_accounts=dev_accounts(),
        rpc_url=url,
        run_dir=run_dir,
        _process=proc,
        _port=port,
    )


def reopen_anvil(run_dir: Path, port: int | None = None, timeout: float = 15.0) -> Chain:
    """Reopen a stopped anvil chain from ``<run_dir>/chain/anvil_state.json``.

    Uses the recorded port when it is free (so saved URLs keep working).
    """
    run_dir = Path(run_dir)
    state = run_dir / "chain" / STATE_FILE
    if not state.exists():
        raise ChainError(f"no anvil state at {state}: was the chain stopped cleanly?")
    if port is None:
        meta = run_dir / "chain" / "anvil.json"
        if meta.exists():
            recorded = int(json.loads(meta.read_text())["port"])
            port = recorded if not rpc_answers(f"http://127.0.0.1:{recorded}", 0.3) and _port_free(recorded) else None
    return _start_anvil(run_dir, port, timeout)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ------------------------------------------------------------- eth-tester


def _start_eth_tester() -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend

    backend = PyEVMBackend.from_mnemonic(DEV_MNEMONIC, num_accounts=DEV_ACCOUNTS, hd_path="m/44'/60'/0'/0")
    w3 = Web3(EthereumTesterProvider(EthereumTester(backend)))
    return Chain(w3=w3, chain_id=w3.eth.chain_id, backend="eth_tester", funded_accounts=dev_accounts(DEV_ACCOUNTS - 1))


# -------------------------------------------------------------------- rpc


def load_aggregator_account(key_env: str | None = None, keystore: Path | None = None) -> LocalAccount:
    """The aggregator's key from ``$key_env`` (hex) or an encrypted keystore file.

    The keystore's password is read from ``$FEDLEDGER_KEYSTORE_PASSWORD``.
    Error messages name the variable or file, never the secret. A key of the
    public development mnemonic is refused (:func:`ledger.accounts.refuse_dev_addresses`).
    """
    if keystore is not None:
        keystore = Path(keystore)
        password = os.environ.get(KEYSTORE_PASSWORD_ENV)
        if password is None:
            raise ChainError(f"keystore {keystore} given but ${KEYSTORE_PASSWORD_ENV} is not set")
        try:
            key = Account.decrypt(json.loads(keystore.read_text()), password)
        except (OSError, ValueError) as exc:
            raise ChainError(f"cannot decrypt keystore {keystore}: {type(exc).__name__}") from None
        try:
            return _not_dev(Account.from_key(key), f"keystore {keystore}")
        except DevKeyError as exc:
            raise ChainError(str(exc)) from None
    if key_env:
        raw = os.environ.get(key_env)
        if not raw:
            raise ChainError(f"environment variable ${key_env} (aggregator private key) is not set")
        try:
            return _not_dev(Account.from_key(raw.strip()), f"${key_env}")
        except (ValueError, TypeError) as exc:
            if isinstance(exc, DevKeyError):
                raise ChainError(str(exc)) from None
            raise ChainError(f"${key_env} does not hold a valid hex private key") from None
    raise ChainError("backend 'rpc' needs key_env or keystore for the aggregator key")


def _not_dev(account: LocalAccount, source: str) -> LocalAccount:
    """An operator's key from the public development mnemonic is refused: anyone could sign as it."""
    refuse_dev_addresses({f"the operator key from {source}": account.address})
    return account


def _connect_rpc(rpc_url: str | None, key_env: str | None, keystore: Path | None) -> Chain:
    if not rpc_url:
        raise ChainError("backend 'rpc' needs rpc_url")
    account = load_aggregator_account(key_env, keystore)
    w3 = http_w3(rpc_url)
    try:
        chain_id = w3.eth.chain_id
    except (requests.RequestException, OSError) as exc:
        raise ChainUnavailable(f"chain at {rpc_url} is not reachable ({type(exc).__name__})") from exc
    return Chain(w3=w3, chain_id=chain_id, backend="rpc", funded_accounts=[account], rpc_url=rpc_url)


# ------------------------------------------------------------------- entry


def start_chain(
    backend: str,
    run_dir: Path,
    rpc_url: str | None = None,
    key_env: str | None = None,
    keystore: Path | None = None,
) -> Chain | None:
    """Start (local) or connect to (rpc) the study's chain; ``None`` for ``none``."""
    if backend == "none":
        return None
    if backend == "anvil":
        return _start_anvil(Path(run_dir))
    if backend == "eth_tester":
        return _start_eth_tester()
    if backend == "rpc":
        return _connect_rpc(rpc_url, key_env, Path(keystore) if keystore else None)
    raise ChainError(f"unknown ledger backend {backend!r}; choose one of {', '.join(BACKENDS)}")
