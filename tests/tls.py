"""Test certificates: a throw-away CA and a server certificate it signed (cryptography)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def make_ca_and_server(folder: Path, ip: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """Writes ca.pem, server.pem and server.key into ``folder``; the server certificate
    names ``ip`` (and localhost). Returns their paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    def build(subject, issuer, public_key, signing_key, ca: bool, sans=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - day).not_valid_after(now + day)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "director test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "director")]),
                   ca_name, key.public_key(), ca_key, False,
                   [x509.IPAddress(ipaddress.ip_address(ip)), x509.DNSName("localhost")])
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
