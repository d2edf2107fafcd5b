#!/usr/bin/env python3
"""Make the lab's OPC UA application certificates (LAB ONLY: the private keys are public).

    python pcaps/lab/certs/make_certs.py      # rewrites the files next to this script

Writes, for the OPC UA server on opcsrv and the clients on eng and hmi, a self-signed X.509
application instance certificate (DER, <name>.der) and its unencrypted RSA 2048 private key
(PEM, <name>.pem), valid 2024-01-01 to 2044-01-01, with the application URI and the host's
IPv4 address and name in subjectAltName, as OPC UA Part 6 asks. RSA keys are random: a rerun
gives new keys and new thumbprints, so the committed files are the ones the committed
captures were made with (see pcaps/README.md). They protect nothing but the lab.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2044, 1, 1, tzinfo=datetime.UTC)

#: file stem -> (common name, application URI, host name, IPv4, serial number, server?)
APPLICATIONS = {
    "opcsrv": (
        "Plant OPC UA Server",
        "urn:otsentry:lab:opcsrv",
        "opcsrv",
        "10.10.30.7",
        0x0A0A1E07,
        True,
    ),
    "eng": ("Engineering Station", "urn:otsentry:lab:eng", "eng", "10.10.30.20", 0x0A0A1E14, False),
    "hmi": ("HMI Panel", "urn:otsentry:lab:hmi", "hmi", "10.10.30.10", 0x0A0A1E0A, False),
}


def make(stem: str, directory: Path = HERE) -> str:
    """Write <stem>.der and <stem>.pem; return the certificate's SHA-1 thumbprint (hex)."""
    common_name, uri, host, ip, serial, server = APPLICATIONS[stem]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "otsentry lab (test only)"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, host),
        ]
    )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(uri),
                    x509.DNSName(host),
                    x509.IPAddress(ipaddress.IPv4Address(ip)),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    (directory / f"{stem}.der").write_bytes(der)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (directory / f"{stem}.pem").write_bytes(pem)
    return hashlib.sha1(der).hexdigest()


def main() -> None:
    """Rewrite every certificate and key; print the thumbprints."""
    for stem in APPLICATIONS:
        print(f"{stem}.der  SHA-1 {make(stem)}")


if __name__ == "__main__":
    main()
