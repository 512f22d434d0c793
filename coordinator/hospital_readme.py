"""The README.md in each hospital's bundle: what every file is, what to fill in, what to keep secret."""

from __future__ import annotations

from typing import Any

HOSPITAL_README = """# Hospital `{hid}` — study {study}

This directory is everything hospital `{hid}` receives for the study. Copy it to
the machine that runs your SuperNode (see docs/HOSPITAL_GUIDE.md) and mount it
read-only into the hospital container at /hospital; mount `state/` writable.

Study id: `{study}`. SuperLink (the aggregator): `{superlink}`. Chain RPC: {chain}.

| file | what it is | keep secret? |
|---|---|---|
{rows}

Secret files are mode 0600. Never send them to the aggregator or to another
hospital; delete this directory's secrets when you leave the study (your
accountant state in `state/` is your own record of privacy spent: keep it).
Your patient data never leaves your machine: `data-path` in node_config.toml
points at your own CSV ({data}); the coordinator never read it.
{todo}"""


def _todo(nc: dict[str, Any], placeholder_keys: list[str], own_key: bool, ledger: bool) -> str:
    steps = []
    for key in placeholder_keys:
        steps.append(
            f"- Edit `{key}` in `node_config.toml` (now `{nc[key]}`): "
            + (
                "the path of your CSV as your SuperNode sees it (in the container: under /data)."
                if key == "data-path"
                else "the path of your own Ethereum key file (hex or an encrypted keystore), "
                f"whose address is `{nc.get('eth-address')}`."
            )
        )
    steps.append(
        "- Check your data against the study's schema: "
        "`fedledger check-data --hospital-dir <this directory>` (nothing leaves your machine)."
    )
    if ledger:
        steps.append(
            "- Consent on chain with your cohort size (your training rows, from your own data): "
            "`fedledger consent --hospital-dir <this directory>` "
            + ("signs with your own key. " if own_key else "signs with `eth_key`. ")
            + "`deploy/run_hospital.sh` does this first if you have not."
        )
    return (
        "\n## Before you start\n\n"
        + "\n".join(steps)
        + "\n\nYour SuperNode refuses to start while a value in node_config.toml still says FILL-ME.\n"
    )


def hospital_readme(
    hid: str,
    study: str,
    files: dict[str, tuple[str, bool]],
    nc: dict[str, Any],
    placeholder_keys: list[str],
    own_key: bool,
) -> str:
    rows = "\n".join(
        f"| `{name}` | {what} | {'**yes**' if secret else 'no'} |" for name, (what, secret) in files.items()
    )
    chain = f"`{nc['chain-rpc']}`, contract `{nc.get('contract')}`" if nc.get("chain-rpc") else "none (no ledger)"
    return HOSPITAL_README.format(
        hid=hid,
        study=study,
        rows=rows,
        data=nc["data-path"],
        superlink=nc.get("superlink"),
        chain=chain,
        todo=_todo(nc, placeholder_keys, own_key, bool(nc.get("chain-rpc"))),
    )
