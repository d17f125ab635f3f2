"""Real gRPC health servers for the GRPC_CHECK tests (test_check_grpc.py): grpcio's own
HealthServicer, in clear or over TLS with certificates of a throwaway CA made here, and the
servers that are not gRPC at all (hung, garbage, HTTP/1, closing at once).

Imported, it gives the pieces to the in-process tests. Run as a script (in a namespace), it
serves every kind on consecutive ports and sets its services' statuses from a JSON control
file ({"service": "SERVING" | "NOT_SERVING", ...}), read again whenever it changes: a
test switches a status by rewriting the file, and waits for ``applied`` (a file holding
the same JSON once the servers answer with it).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import socket
import threading
import time
from concurrent import futures
from pathlib import Path

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")      # before grpcio loads: no INFO lines
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

POLL = 0.02              # how often the script looks at its control file
STATUS = health_pb2.HealthCheckResponse.ServingStatus


# --- a throwaway CA ------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_pki(folder: Path, ips=("127.0.0.1",), names=("grpc.test",), ca_name="test CA") -> dict:
    """A CA, a server certificate for ``ips`` and ``names`` and a client certificate, signed
    by it, as PEM files in ``folder``: {"ca", "server_cert", "server_key", "client_cert",
    "client_key"} -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(f"{role}.test"))
                   .issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if role == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] +
                [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        paths[f"{role}_cert"], paths[f"{role}_key"] = folder / f"{role}.pem", \
            folder / f"{role}.key"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, paths[f"{role}_key"])
    return paths


# --- gRPC health servers ---------------------------------------------------------------------

class HealthServer:
    """grpcio's server with the standard HealthServicer on ``address`` (port 0: any), in
    clear or with ``pki`` (make_pki's files) over TLS, asking for a client certificate
    when ``client_auth``. ``with_health=False``: a gRPC server without the health service."""

    def __init__(self, address: str = "127.0.0.1:0", pki: dict | None = None,
                 client_auth: bool = False, with_health: bool = True) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.health = health.HealthServicer()
        if with_health:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if pki is None:
            self.port = self.server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(pki["server_key"].read_bytes(), pki["server_cert"].read_bytes())],
                root_certificates=pki["ca"].read_bytes() if client_auth else None,
                require_client_auth=client_auth)
            self.port = self.server.add_secure_port(address, credentials)

    def set(self, service: str, status: str) -> None:
        self.health.set(service, STATUS.Value(status))

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None).wait(10)


# --- servers that are not gRPC ---------------------------------------------------------------

def serve_raw(sock: socket.socket, mode: str, stop: threading.Event) -> None:
    """Accept on ``sock`` until ``stop``: ``hung`` keeps every connection open and says
    nothing, ``garbage`` sends bytes no HTTP/2 peer sends, ``http`` answers as an HTTP/1.1
    server, ``close`` closes at once."""
    sock.settimeout(0.2)            # so stop is noticed; not a sleep
    held = []
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            if mode == "garbage":
                conn.sendall(bytes(range(256)) * 4)
            elif mode == "http":
                conn.settimeout(2)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        if mode == "close":
            conn.close()
        else:
            held.append(conn)       # held open: the client has to find out by itself
    for conn in held:
        conn.close()


class RawServer:
    """serve_raw in a thread, on 127.0.0.1 (port 0: any) or ``address``."""

    def __init__(self, mode: str, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.sock = socket.create_server(address, backlog=64)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=serve_raw, args=(self.sock, mode, self.stop),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


# --- the script --------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pki", required=True, help="folder of make_pki's files")
    parser.add_argument("--control", required=True)
    parser.add_argument("--applied", required=True)
    parser.add_argument("--port", type=int, required=True,
                        help="clear; +1 TLS; +2 hung; +3 garbage; +4 HTTP/1; +5 closes")
    parser.add_argument("--for", dest="lifetime", type=float, default=300.0)
    args = parser.parse_args()
    folder = Path(args.pki)
    pki = {name: folder / file for name, file in
           (("ca", "ca.pem"), ("server_cert", "server.pem"), ("server_key", "server.key"))}
    clear = HealthServer(f"0.0.0.0:{args.port}")
    tls = HealthServer(f"0.0.0.0:{args.port + 1}", pki=pki)
    raws = [RawServer(mode, ("0.0.0.0", args.port + offset))
            for offset, mode in ((2, "hung"), (3, "garbage"), (4, "http"), (5, "close"))]
    control, applied = Path(args.control), Path(args.applied)
    with clear, tls, raws[0], raws[1], raws[2], raws[3]:
        seen = None
        ends = time.monotonic() + args.lifetime       # the lab kills it sooner
        while time.monotonic() < ends:
            text = control.read_text() if control.exists() else "{}"
            if text != seen:
                for service, status in json.loads(text).items():
                    clear.set(service, status)
                    tls.set(service, status)
                written = applied.with_suffix(".new")
                written.write_text(text)
                written.replace(applied)        # whole, never half written
                seen = text
            time.sleep(POLL)


if __name__ == "__main__":
    main()
