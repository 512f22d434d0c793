"""Flower's Deployment Engine for real: SuperLink + SuperNodes as processes on loopback.

Every process is started with the very command its container runs
(deploy/run_*.sh); `fedledger provision` writes the study first. Slow: each
ClientApp task starts a fresh `flwr-clientapp` process (torch import).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.deploy_helpers import (  # noqa: F401
    Deployment,
    deploy_flags,
    deployment,
    free_port,
    hospitals_dir,
    provision,
    wait_exit,
)

pytestmark = pytest.mark.slow

PLAIN = ("privacy=off", "encryption=off")


def results(study: Path) -> dict:
    return json.loads((study / "results.json").read_text())


def test_plain_study_superlink_two_supernodes_two_rounds(tmp_path, deployment: Deployment):
    """Issue 2's Deployment Engine test: superlink + 2 supernodes, `flwr run`, 2 rounds, plaintext."""
    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    provision(
        study,
        "num_rounds=2",
        *PLAIN,
        *deploy_flags(2, "none", port, secure=False, join_timeout=120),
    )
    deployment.superlink(study, port)
    for hdir in sorted(hospitals_dir(study).iterdir()):
        deployment.hospital(hdir, port)
    run = deployment.study(study)
    rc = wait_exit(run, 400)
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2]
    assert res["final"]["accuracy"] > 0.85, res["final"]  # chance (majority class) is ~0.63
    assert "round 1/2: 2 hospital(s)" in run.text() and "round 2/2: 2 hospital(s)" in run.text()  # progress per round
    assert set(res["rounds"][-1]["per_hospital"]) == {"hospital_0", "hospital_1"}
    print(f"deployment study took {time.monotonic() - t0:.0f}s")


def test_tls_auth_dp_ckks_ledger_three_hospitals_then_audit(tmp_path, deployment: Deployment):
    """3 hospitals, 3 rounds over TLS with SuperNode authentication; DP + CKKS + anvil ledger; the audit passes."""
    from urllib.parse import urlparse

    from ledger.audit.secret_scan import check_secrets
    from tests.deploy_helpers import audit as run_audit

    t0 = time.monotonic()
    port = free_port()
    study = tmp_path / "study"
    # rdp: every task is a fresh flwr-clientapp process, and deriving the noise for a target epsilon with
    # PRV costs seconds per process; the product default (prv) is covered by the simulation tests.
    spec = provision(
        study,
        "num_rounds=3",
        "privacy.accountant=rdp",
        *deploy_flags(3, "anvil", port, secure=True),
    )
    # what the aggregator side holds: no hospital secret; each hospital's bundle holds its own
    assert not any(p.name in ("secret.ctx", "eth_key", "auth_key") for p in (study / "keys").rglob("*"))
    # the study dir is the auditor's copy: no key in it; every key beside it, in <study>.secrets/
    secrets = Path(f"{study}.secrets")
    assert [f.ok for f in check_secrets(study)] == [True]
    assert {"admin_eth_key", "aggregator_eth_key"} <= {p.name for p in (secrets / "keys").iterdir()}
    assert (secrets / "aggregator" / "tls" / "server.key").is_file() and (secrets / "ca" / "ca.key").is_file()
    assert spec["keys"]["secret_context"] is None and spec["chain"]["contract"]
    for hdir in hospitals_dir(study).iterdir():
        names = {p.name for p in hdir.iterdir()}
        assert {"node_config.toml", "secret.ctx", "eth_key", "auth_key", "auth_key.pub", "ca.pem", "README.md"} <= names
        assert (hdir / "secret.ctx").stat().st_mode & 0o077 == 0
    deployment.chain(study, urlparse(spec["chain"]["rpc_url"]).port)
    link = deployment.superlink(study, port)
    assert "TLS disabled" not in link.text()
    link.wait_for(r"registered SuperNode key hospital_2", timeout=90)
    for hdir in sorted(hospitals_dir(study).iterdir()):
        deployment.hospital(hdir, port)
    run = deployment.study(study)
    rc = wait_exit(run, 900)
    assert rc == 0, deployment.logs()
    res = results(study)
    assert [r["round"] for r in res["rounds"]] == [1, 2, 3]
    assert res["final"]["accuracy"] > 0.8, res["final"]
    assert len(res["ledger"]["rounds"]) == 3
    assert all(p["epsilon"][-1] <= p["budget"] + 1e-9 for p in res["privacy"].values())
    audit = run_audit(study)
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    verdict = json.loads((study / "audit.json").read_text())
    assert verdict["checks"]["secrets"] == {"pass": 1, "fail": 0, "skip": 0}  # still no key after the run
    assert verdict["evidence_scope"]["backend"] == "anvil"  # a chain the coordinator ran, and the audit says so
    assert "only against the hospitals' signatures" in " ".join(audit.stdout.split())
    print(f"TLS+auth DP/CKKS/ledger deployment study took {time.monotonic() - t0:.0f}s")


def test_supernode_not_on_allow_list_is_refused(tmp_path, deployment: Deployment):
    """SuperNode authentication: a SuperNode whose key the aggregator never registered cannot join."""
    from coordinator.credentials import make_auth_key

    port = free_port()
    study = tmp_path / "study"
    provision(study, *PLAIN, *deploy_flags(2, "none", port, secure=True, join_timeout=None))
    link = deployment.superlink(study, port)
    link.wait_for(r"registered SuperNode key hospital_1", timeout=90)
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    for name in ("node_config.toml", "ca.pem"):
        (rogue / name).write_bytes((hospitals_dir(study) / "hospital_0" / name).read_bytes())
    make_auth_key(rogue / "auth_key")  # a valid key pair, but not on the allow-list
    env = {**deployment.env, "MAX_WAIT_TIME": "20"}
    proc = deployment.start(
        "rogue",
        [
            str(Path(__file__).resolve().parents[1] / "deploy" / "run_hospital.sh"),
            rogue,
            f"127.0.0.1:{port}",
            str(free_port()),
        ],
        env=env,
    )
    good = deployment.hospital(hospitals_dir(study) / "hospital_0", port)
    good.wait_for(r"(?i)activat|Starting Flower SuperNode", timeout=60)
    link.wait_for(r"Activated node_id", timeout=90)  # the registered hospital gets in
    deadline = time.monotonic() + 90
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(1)
    log = link.text()
    assert log.count("Activated node_id") == 1, log[-3000:]
    assert not proc.alive() or 'activate-node HTTP/1.1" 200' not in proc.text()
