"""A deployment's credentials: the study CA, the SuperLink's TLS certificate, SuperNode authentication keys.

Written by ``fedledger provision`` (``--tls``, ``--auth``); private keys are
owner-only files (:func:`fedledger.files.write_secret`) under the study's
secrets directory (:func:`secrets_dir`), never in the study directory that is
handed to an auditor.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedledger.files import write_secret

SECRETS_SUFFIX = ".secrets"


def secrets_dir(run_dir: Path) -> Path:
    """``<run_dir>.secrets/``: a study's keys, beside (never inside) the directory handed to the auditor."""
    run_dir = Path(run_dir).resolve()
    out = run_dir.with_name(run_dir.name + SECRETS_SUFFIX)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    return out


def move_public_ckks(paths: Any, public_dir: Path) -> Path:
    """Move the key ceremony's public files (context, fingerprint, parameters) away from its secret one.

    ``paths`` is :class:`fedledger.ckks.KeyPaths`; returns the public context's new path.
    """
    public_dir = Path(public_dir)
    public_dir.mkdir(parents=True, exist_ok=True)
    for path in (paths.aggregator_context, paths.fingerprint, paths.params):
        shutil.move(path, public_dir / Path(path).name)
    return public_dir / Path(paths.aggregator_context).name


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    if secret:
        write_secret(path, data, lock_dir=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_tls(study_dir: Path, hosts: list[str], days: int = 365) -> dict[str, Path]:
    """A study CA and the SuperLink's server certificate (EC P-256, SANs for every host name).

    Certificates go to ``<study>/aggregator/tls/``; the CA key and the server key to the study's
    secrets directory (``<study>.secrets/ca/ca.key``, ``<study>.secrets/aggregator/tls/server.key``).
    """
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FedLedger study CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = study_dir / "aggregator" / "tls"
    secret = secrets_dir(study_dir)
    paths = {
        "ca": tls / "ca.pem",
        "cert": tls / "server.pem",
        "key": secret / "aggregator" / "tls" / "server.key",
        "ca_key": secret / "ca" / "ca.key",
    }
    nopass = serialization.NoEncryption()
    _write(paths["ca_key"], ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nopass), secret=True)
    os.chmod(paths["ca_key"].parent, 0o700)
    _write(paths["ca"], ca.public_bytes(pem))
    _write(paths["cert"], cert.public_bytes(pem))
    _write(paths["key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nopass), secret=True)
    return paths


def make_auth_key(private_path: Path) -> Path:
    """A SuperNode authentication key pair: EC P-384 in OpenSSH format (what Flower 1.42 loads)."""
    key = ec.generate_private_key(ec.SECP384R1())
    _write(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ),
        secret=True,
    )
    pub = private_path.with_name(private_path.name + ".pub")
    _write(
        pub, key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n"
    )
    return pub
