"""Process management for the Deployment Engine tests: the deploy/run_*.sh scripts as real processes.

Every process starts in its own session (process group) and is stopped by
group id in the fixture's teardown, so SuperExec/ClientApp/ServerApp children
go with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FEDLEDGER_STUDY", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {pattern!r}:\n{self.text()[-3000:]}"
                )
            time.sleep(0.3)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout:.0f}s:\n{self.text()[-3000:]}")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def wait_count(self, pattern: str, n: int, timeout: float = 300.0) -> None:
        """Until ``pattern`` occurs at least ``n`` times in the log."""
        deadline = time.monotonic() + timeout
        while self.count(pattern) < n:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before {n}x {pattern!r}:\n{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: fewer than {n}x {pattern!r} within {timeout:.0f}s:\n{self.text()[-3000:]}"
                )
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the whole process group; SIGKILL what is left after ``timeout``."""
        try:
            pgid = os.getpgid(self.popen.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        self.stop(signal.SIGKILL, timeout=5)


@dataclass
class Deployment:
    """The processes of one test deployment, stopped together at teardown."""

    root: Path
    env: dict[str, str] = field(default_factory=base_env)
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "ab")
        popen = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=REPO,
            env=env or self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    # -- the deploy/run_*.sh commands -------------------------------------------------

    def chain(self, study: Path, port: int) -> Proc:
        from ledger.chains import anvil_binary

        proc = self.start(
            "chain", [DEPLOY / "run_chain.sh", study, "127.0.0.1", port], env={**self.env, "ANVIL": anvil_binary()}
        )
        wait_rpc(f"http://127.0.0.1:{port}", proc)
        return proc

    def superlink(self, study: Path, port: int, name: str = "superlink") -> Proc:
        proc = self.start(name, [DEPLOY / "run_superlink.sh", study, "127.0.0.1", port])
        proc.wait_for(r"Uvicorn running on", timeout=120)
        return proc

    def hospital(self, hospital_dir: Path, superlink_port: int, name: str | None = None) -> Proc:
        return self.start(
            name or f"hospital_{hospital_dir.name}",
            [DEPLOY / "run_hospital.sh", hospital_dir, f"127.0.0.1:{superlink_port}", free_port()],
        )

    def study(self, study: Path, name: str = "study") -> Proc:
        return self.start(name, [DEPLOY / "run_study.sh", study, REPO])

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.text()[-2500:]}" for p in self.procs)


def wait_rpc(url: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
            return
        except requests.RequestException:
            if proc is not None and not proc.alive():
                raise AssertionError(f"chain exited:\n{proc.text()}")
            time.sleep(0.2)
    raise AssertionError(f"no chain at {url}")


def wait_path(path: Path, timeout: float, watch: "Proc | None" = None) -> None:
    """Until ``path`` exists (``watch``: a process that must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if watch is not None and not watch.alive():
            raise AssertionError(
                f"{watch.name} exited ({watch.popen.returncode}) before {path} appeared:\n{watch.text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {path} within {timeout:.0f}s")
        time.sleep(0.2)


def hospitals_dir(study: Path) -> Path:
    """Where ``fedledger provision`` puts the hospitals' bundles: beside the study, never in the auditor's copy."""
    return Path(f"{study}.secrets") / "hospitals"


def audit(study: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``fedledger audit --run-dir`` as an auditor runs it."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "audit", "--run-dir", str(study)],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def deploy_flags(hospitals: int, ledger: str, port: int, *, secure: bool, join_timeout: int | None = 180) -> list[str]:
    """``fedledger provision`` flags of a loopback deployment: ``hospitals`` built-in hospitals, the ledger,
    TLS and SuperNode authentication when ``secure``, the SuperLink on ``port``, the ServerApp's join timeout."""
    flags = ["--builtin", str(hospitals), "--ledger", ledger]
    flags += ["--tls", "--auth"] if secure else []
    flags += ["--superlink", f"127.0.0.1:{port}"]
    flags += ["--join-timeout", str(join_timeout)] if join_timeout is not None else []
    return flags


def provision(study: Path, *args: str, timeout: float = 300) -> dict:
    """``fedledger provision`` as the coordinator runs it; returns the written study spec."""
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "provision", str(study), *args],
        cwd=REPO,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((study / "study.json").read_text())


def wait_exit(proc: Proc, timeout: float) -> int:
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{proc.name} did not finish within {timeout:.0f}s") from None


@pytest.fixture
def deployment(tmp_path):
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.stop_all()
