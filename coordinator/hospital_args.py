"""`fedledger provision --hospitals` and `--hospital-addresses`: who takes part, where its CSV is, whose key.

``--hospitals cleveland@0xAbC...=/data/cleveland.csv,hungary,...``: an id, optionally
``@`` the address of the Ethereum key the hospital brings itself (the coordinator then
never makes or holds a key for it), optionally ``=`` the path where the hospital's own
machine sees its CSV (without one, its node config gets a placeholder it fills in).
The coordinator never opens these paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_utils import to_checksum_address

DATA_PLACEHOLDER = "/data/FILL-ME.csv"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class HospitalArg:
    id: str
    path: str | None = None  # the hospital's own path to its CSV; None: unknown to the coordinator
    address: str | None = None  # the hospital's own key's address (checksummed); None: the coordinator makes one


def check_address(text: str, hospital_id: str) -> str:
    """A hospital's address, checksummed; a malformed one stops provisioning naming the hospital."""
    text = text.strip()
    if not _ADDRESS.fullmatch(text):
        raise ValueError(f"hospital {hospital_id!r}: {text!r} is not an Ethereum address (0x and 40 hex digits)")
    try:
        return str(to_checksum_address(text))
    except ValueError as exc:
        raise ValueError(f"hospital {hospital_id!r}: address {text!r}: {exc}") from None


def _check_id(hid: str, item: str) -> str:
    if not _ID.fullmatch(hid):
        raise ValueError(f"--hospitals entry {item!r}: id {hid!r} must be letters, digits, '_', '.' or '-'")
    return hid


def parse_hospitals(text: str) -> list[HospitalArg]:
    """``id[@0xADDR][=path],...`` -> one :class:`HospitalArg` per hospital, in order."""
    out: list[HospitalArg] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        head, _, path = item.partition("=")
        hid, _, address = head.partition("@")
        hid = _check_id(hid.strip(), item)
        if "=" in item and not path.strip():
            raise ValueError(f"--hospitals entry {item!r}: empty path after '='")
        out.append(HospitalArg(hid, path.strip() or None, check_address(address, hid) if "@" in head else None))
    if not out:
        raise ValueError("--hospitals is empty")
    dup = sorted({h.id for h in out if [g.id for g in out].count(h.id) > 1})
    if dup:
        raise ValueError(f"--hospitals names {dup} more than once")
    return out


def parse_addresses(text: str) -> dict[str, str]:
    """``--hospital-addresses id=0xADDR,...``: hospitals (e.g. of --builtin) that bring their own key."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        hid, sep, address = item.partition("=")
        if not sep:
            raise ValueError(f"--hospital-addresses entry {item!r} is not id=0xADDRESS")
        hid = _check_id(hid.strip(), item)
        if hid in out:
            raise ValueError(f"--hospital-addresses names {hid!r} more than once")
        out[hid] = check_address(address, hid)
    return out


def own_addresses(hospitals: list[HospitalArg] | None, extra: dict[str, str] | None) -> dict[str, str]:
    """Every hospital's own address, from either flag; one given twice must agree."""
    out = {h.id: h.address for h in hospitals or [] if h.address}
    for hid, address in (extra or {}).items():
        if out.get(hid, address) != address:
            raise ValueError(f"hospital {hid!r} has two addresses: {out[hid]} (--hospitals) and {address}")
        out[hid] = address
    return out
