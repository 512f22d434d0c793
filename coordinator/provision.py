"""Provision a study for Flower's Deployment Engine: what the aggregator and each hospital receive.

``provision_study`` reuses :func:`coordinator.study_setup.prepare_study` (the
same spec, initial model, CKKS keys, hospital Ethereum keys and chain setup as
the simulation path) and adds what a real deployment needs:

    <study>/study.json, initial_model.npz              the study spec (aggregator side)
    <study>/keys/ckks/aggregator_public.ctx            the public CKKS context (encryption on)
    <study>/chain/anvil_state.json                     --ledger anvil: the chain, stopped cleanly;
                                                       deploy/run_chain.sh serves it again
    <study>/aggregator/tls/{ca.pem,server.pem}         --tls: certificates
    <study>/aggregator/supernode_keys/<id>.pub         --auth: the SuperNode allow-list
    <study>/flwr_home/config.toml                      Flower CLI connection "fedledger" (FLWR_HOME)

Every secret is in the sibling ``<study>.secrets/`` (0700), never in ``<study>/``, the
directory handed to the auditor (docs/AUDIT.md):

    <study>.secrets/keys/admin_eth_key                 the study admin's key (fresh per study; keep offline)
    <study>.secrets/keys/aggregator_eth_key            the aggregator's key (fresh per study, local chains)
    <study>.secrets/ca/ca.key                          --tls: the study CA's key (keep offline)
    <study>.secrets/aggregator/tls/server.key          --tls: the SuperLink's TLS key
    <study>.secrets/hospitals/<id>/                    exactly what hospital <id> receives:
        node_config.toml   its SuperNode --node-config (paths relative to this directory)
        secret.ctx         CKKS secret context (encryption on)          SECRET
        eth_key            its Ethereum key (ledger on)                 SECRET
        auth_key           its SuperNode authentication key (--auth)    SECRET
        auth_key.pub       the public half (registered by the aggregator)
        ca.pem             the study CA (--tls)
        state/             its accountant state (privacy spend), kept across restarts
        README.md          what it must keep secret

``python -m coordinator.provision node-config <hospital dir>`` prints the node
config with paths made absolute (what deploy/run_hospital.sh passes to
``flower-supernode --node-config``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from coordinator.credentials import make_auth_key, make_tls, secrets_dir
from fedledger.config import register_schemas
from fedledger.files import write_secret
from ledger.accounts import refuse_dev_addresses

REPO_ROOT = Path(__file__).resolve().parent.parent
CONNECTION = "fedledger"
PATH_KEYS = ("data-path", "schema-path", "secret-context", "eth-key", "state-dir", "policy-file")


@dataclass
class Provisioned:
    study_dir: Path
    spec: dict[str, Any]
    hospitals: dict[str, Path]
    superlink_address: str
    tls: bool
    auth: bool
    chain_url: str | None = None


# ----------------------------------------------------------------------- config


def compose_config(overrides: list[str]) -> dict[str, Any]:
    """The study config from conf/ with the user's overrides (Hydra's compose API, validated by the schema)."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    return resolved


def parse_hospitals(text: str) -> list[tuple[str, str]]:
    """``cleveland=path.csv,hungary=path.csv`` -> [(id, path), ...]."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"--hospitals entry {item!r} is not id=path.csv")
        hid, path = item.split("=", 1)
        out.append((hid.strip(), path.strip()))
    if not out:
        raise ValueError("--hospitals is empty")
    return out


# ------------------------------------------------------------- node config files


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def write_toml(path: Path, values: dict[str, Any]) -> None:
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items()))


def resolve_node_config(hospital_dir: Path) -> dict[str, Any]:
    """The hospital's node_config.toml with its relative paths made absolute against its directory."""
    import tomllib

    hospital_dir = Path(hospital_dir).resolve()
    values = tomllib.loads((hospital_dir / "node_config.toml").read_text())
    for k in PATH_KEYS:
        v = values.get(k)
        if isinstance(v, str) and v and not v.startswith("builtin:") and not Path(v).is_absolute():
            values[k] = str(hospital_dir / v)
    return values


def node_config_arg(values: dict[str, Any]) -> str:
    """The ``--node-config`` string: space-separated key=value with TOML values."""
    return " ".join(f"{k}={_toml_value(v)}" for k, v in values.items())


def flower_connection(study_dir: Path, address: str, ca: Path | None) -> Path:
    """``<study>/flwr_home/config.toml``: the Flower CLI's connection to this study's SuperLink."""
    home = study_dir / "flwr_home"
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]", f'address = "{address}"']
    lines += [f'root-certificates = "{ca}"'] if ca else ["insecure = true"]
    (home / "config.toml").write_text("\n".join(lines) + "\n")
    return home / "config.toml"


HOSPITAL_README = """# Hospital `{hid}` — study {study}

This directory is everything hospital `{hid}` receives for the study. Copy it to
the machine that runs your SuperNode (see docs/HOSPITAL_GUIDE.md) and mount it
read-only into the hospital container at /hospital; mount `state/` writable.

| file | what it is | keep secret? |
|---|---|---|
{rows}

Secret files are mode 0600. Never send them to the aggregator or to another
hospital; delete this directory's secrets when you leave the study (your
accountant state in `state/` is your own record of privacy spent: keep it).
Your patient data never leaves your machine: `data-path` in node_config.toml
points at your own CSV ({data}).
"""


def _hospital_readme(hid: str, study: str, files: dict[str, tuple[str, bool]], data: str) -> str:
    rows = "\n".join(
        f"| `{name}` | {what} | {'**yes**' if secret else 'no'} |" for name, (what, secret) in files.items()
    )
    return HOSPITAL_README.format(hid=hid, study=study, rows=rows, data=data)


# ------------------------------------------------------------------------ main


def provision_study(
    study_dir: Path,
    overrides: list[str],
    hospitals: list[tuple[str, str]] | None = None,
    builtin: int | None = None,
    schema: str | None = None,
    ledger: str = "anvil",
    rpc_url: str | None = None,
    chain_url: str | None = None,
    tls: bool = False,
    auth: bool = False,
    superlink_address: str = "127.0.0.1:9093",
    tls_hosts: list[str] | None = None,
    join_timeout_s: float | None = None,
    hospital_data_dir: str | None = None,
) -> Provisioned:
    """Write a deployable study into ``study_dir`` (see the module docstring for the layout)."""
    from coordinator.study_setup import prepare_study

    study_dir = Path(study_dir).resolve()
    if (study_dir / "study.json").exists():
        raise FileExistsError(f"{study_dir} already holds a study; provision into a new directory")
    ov = list(overrides)
    if hospitals:
        ov += ["dataset=csv", f"num_hospitals={len(hospitals)}"]
    elif builtin:  # the built-in breast cancer data unless the overrides name another built-in (dataset=diabetes)
        ov += [f"num_hospitals={builtin}"] + (
            [] if any(o.startswith("dataset=") for o in ov) else ["dataset=breast_cancer"]
        )
    if ledger:
        ov += [f"ledger={ledger}"]
    cfg = compose_config(ov)
    if hospitals:
        cfg["dataset"]["hospitals"] = [{"id": h, "path": str(Path(p).resolve())} for h, p in hospitals]
        if schema:
            cfg["dataset"]["schema"] = str(Path(schema).resolve())
        elif cfg["dataset"].get("schema") and not Path(cfg["dataset"]["schema"]).is_absolute():
            cfg["dataset"]["schema"] = str((REPO_ROOT / cfg["dataset"]["schema"]).resolve())
    if rpc_url:
        cfg["ledger"]["rpc_url"] = rpc_url

    prepared = prepare_study(cfg, study_dir)
    spec = prepared.spec
    chain = prepared.chain
    url = None
    try:
        refuse_dev_keys(spec)
        if chain is not None:
            url = chain_url or chain.rpc_url
    finally:
        # A local anvil is stopped cleanly so its state file is complete; deploy/run_chain.sh serves it.
        prepared.close()
    if spec.get("chain"):
        spec["chain"]["rpc_url"] = url
        spec["chain"]["provisioned_rpc_url"] = url
    if join_timeout_s is not None:
        spec["join_timeout_s"] = float(join_timeout_s)

    host = superlink_address.rsplit(":", 1)[0]
    tls_paths = (
        make_tls(study_dir, list(dict.fromkeys([host, "127.0.0.1", "localhost", "superlink", *(tls_hosts or [])])))
        if tls
        else None
    )
    flower_connection(study_dir, superlink_address, tls_paths["ca"] if tls_paths else None)

    out: dict[str, Path] = {}
    for h in spec["hospitals"]:
        hid = h["id"]
        hdir = secrets_dir(study_dir) / "hospitals" / hid
        hdir.mkdir(parents=True, exist_ok=True)
        os.chmod(hdir, 0o700)
        (hdir / "state").mkdir(exist_ok=True)
        files: dict[str, tuple[str, bool]] = {"node_config.toml": ("your SuperNode's --node-config", False)}
        nc: dict[str, Any] = {"hospital-id": hid}
        if hospitals:
            path = dict(hospitals)[hid]
            # where the hospital's own machine (or container) sees its CSV
            nc["data-path"] = (
                str(Path(hospital_data_dir) / Path(path).name) if hospital_data_dir else str(Path(path).resolve())
            )
            if cfg["dataset"].get("schema"):
                shutil.copy(cfg["dataset"]["schema"], hdir / "schema.yaml")
                nc["schema-path"] = "schema.yaml"
                files["schema.yaml"] = ("the study's CSV schema", False)
        else:
            nc.update(
                {
                    "data-path": f"builtin:{cfg['dataset']['name']}",
                    "partition-index": int(h["index"]),
                    "num-partitions": int(cfg["num_hospitals"]),
                    "seed": int(cfg["seed"]),
                    "partitioner": str(cfg["dataset"].get("partitioner", "iid")),
                }
            )
        if h.get("secret_context"):
            write_secret(hdir / "secret.ctx", Path(h["secret_context"]).read_bytes(), lock_dir=False)
            nc["secret-context"] = "secret.ctx"
            files["secret.ctx"] = (
                "CKKS secret context shared by the study's hospitals (decrypts every aggregate)",
                True,
            )
        if h.get("eth_key"):
            write_secret(hdir / "eth_key", Path(h["eth_key"]).read_bytes(), lock_dir=False)
            nc["eth-key"] = "eth_key"
            files["eth_key"] = (f"your Ethereum key ({h.get('address')}): signs your round commitments", True)
        if h.get("budget") is not None:
            nc["privacy-budget"] = float(h["budget"])
        nc["state-dir"] = "state"
        files["state/"] = ("your privacy accountant's state (epsilon spent so far); writable, keep it", False)
        if spec.get("chain") and url:
            nc["chain-rpc"] = url
            nc["contract"] = spec["chain"]["contract"]
        if spec.get("protocol_hash"):  # what the node checks each task against when it reads no chain
            nc["protocol-hash"] = spec["protocol_hash"]
        if tls_paths:
            shutil.copy(tls_paths["ca"], hdir / "ca.pem")
            files["ca.pem"] = ("the study CA: your SuperNode checks the SuperLink's certificate with it", False)
        if auth:
            pub = make_auth_key(hdir / "auth_key")
            allow = study_dir / "aggregator" / "supernode_keys"
            allow.mkdir(parents=True, exist_ok=True)
            shutil.copy(pub, allow / f"{hid}.pub")
            files["auth_key"] = (
                "your SuperNode's authentication key (the SuperLink only admits registered keys)",
                True,
            )
            files["auth_key.pub"] = ("its public half, on the aggregator's allow-list", False)
        write_toml(hdir / "node_config.toml", nc)
        (hdir / "README.md").write_text(_hospital_readme(hid, spec["study_id"], files, nc["data-path"]))
        h["hospital_dir"] = str(hdir)
        out[hid] = hdir

    _remove_hospital_secrets(spec)
    spec["deployment"] = {
        "superlink": superlink_address,
        "tls": bool(tls),
        "auth": bool(auth),
        "flwr_home": str(study_dir / "flwr_home"),
        "connection": CONNECTION,
    }
    (study_dir / "study.json").write_text(json.dumps(spec, indent=1))
    return Provisioned(study_dir, spec, out, superlink_address, bool(tls), bool(auth), url)


def refuse_dev_keys(spec: dict[str, Any]) -> None:
    """A deployment never gives a study role to an address of the public development mnemonic."""
    chain = spec.get("chain") or {}
    roles = {"study admin": chain.get("admin"), "aggregator": chain.get("aggregator")}
    roles |= {f"hospital {h['id']}": h.get("address") for h in spec["hospitals"]}
    refuse_dev_addresses(roles)


def _remove_hospital_secrets(spec: dict[str, Any]) -> None:
    """The aggregator's keys hold no hospital secret: each now lives only in <study>.secrets/hospitals/<id>/."""
    keys = spec.get("keys") or {}
    for path in {
        keys.get("secret_context"),
        *(h.get("secret_context") for h in spec["hospitals"]),
        *(h.get("eth_key") for h in spec["hospitals"]),
    }:
        if path and Path(path).exists():
            Path(path).unlink()
    if keys:
        keys["secret_context"] = None
    for h in spec["hospitals"]:
        h["secret_context"] = None
        h["eth_key"] = None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "node-config":
        print(node_config_arg(resolve_node_config(Path(argv[1]))))
        return 0
    print("usage: python -m coordinator.provision node-config <hospital dir>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
