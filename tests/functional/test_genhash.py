"""director.genhash against real servers on 127.0.0.1 (plain HTTP, HTTPS, odd replies)."""
import datetime
import hashlib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from director.genhash import main
from tests.functional.loopback import DEADLINE, OnePageServer, RequestServer

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]


def reply(raw):
    """Handler sending raw bytes and closing."""
    return lambda conn, request: conn.sendall(raw)


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def last_line(out):
    return out.rstrip("\n").split("\n")[-1]


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def cert(tmp_path):
    """Self-signed certificate and key for 'localhost', written to tmp_path.

    Uses cryptography (pyOpenSSL's own backend): pyOpenSSL 26 deprecates building
    certificates with OpenSSL.crypto and points to these APIs instead."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def server_ctx(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    return ctx



def html_page(body):
    return OnePageServer(body, headers={"Content-Type": "text/html"})


BODY = b"<html><body>Hello from director genhash test \xe9\x00\xff</body></html>\n" * 50


# --- digests -------------------------------------------------------------------------

def test_http_server_with_content_length(capsys):
    with html_page(BODY) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/index.html"], capsys)
    assert rc == 0, err
    assert out == hashlib.md5(BODY).hexdigest() + "\n"
    requestline, headers = srv.seen[0]
    assert requestline == "GET /index.html HTTP/1.0"
    assert headers["Host"] == f"127.0.0.1:{srv.port}"
    assert headers["User-Agent"] == "KeepAliveClient"
    assert "Connection" not in headers


def test_content_length_shorter_than_sent_is_capped(capsys):
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA-BYTES"
    with RequestServer(reply(raw)) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/"], capsys)
    assert rc == 0
    assert last_line(out) == hashlib.md5(b"abcd").hexdigest()
    assert "Content-Length (4) does not match received body bytes (15)" in err


def test_no_content_length_reads_until_close(capsys):
    body = bytes(range(256)) * 1000  # several recv()s worth
    with RequestServer(reply(b"HTTP/1.0 200 OK\r\nServer: raw\r\n\r\n" + body)) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/big"], capsys)
    assert rc == 0, err
    assert last_line(out) == hashlib.md5(body).hexdigest()


def test_chunked_body_is_hashed_raw_like_keepalived(capsys):
    # keepalived does not de-chunk: the digest covers chunk-size lines and the last chunk
    chunked = b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\n123\r\n0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked
    with RequestServer(reply(raw)) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-P", "1.1"], capsys)
    assert rc == 0, err
    assert last_line(out) == hashlib.md5(raw[raw.index(b"\r\n\r\n") + 4:]).hexdigest()
    assert last_line(out) != hashlib.md5(b"abcdefghijklmnopqrstuvwxyz123").hexdigest()


def test_sha1_hash_option(capsys):
    with RequestServer(reply(b"HTTP/1.0 200 OK\r\n\r\nabc")) as srv:
        rc, out, _ = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-H", "SHA1"], capsys)
    assert rc == 0 and out == hashlib.sha1(b"abc").hexdigest() + "\n"


def test_non_2xx_still_prints_digest_with_warning(capsys):
    with RequestServer(reply(b"HTTP/1.0 404 Not Found\r\n\r\nmissing")) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/"], capsys)
    assert rc == 0 and last_line(out) == hashlib.md5(b"missing").hexdigest()
    assert "HTTP status 404" in err


# --- request headers -----------------------------------------------------------------

def host_checking_handler(expected_host):
    """Reply 200 'ok' only if the Host header is the expected one, else 400."""
    def handler(conn, request):
        lines = request.decode("latin-1").split("\r\n")
        if f"Host: {expected_host}" in lines:
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad")
    return handler


def test_virtualhost_sent_as_host_header(capsys):
    with RequestServer(host_checking_handler("www.example.test")) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/",
                            "-V", "www.example.test"], capsys)
    assert rc == 0, err
    assert last_line(out) == hashlib.md5(b"ok").hexdigest()
    assert b"\r\nHost: www.example.test\r\n\r\n" in srv.requests[0]


def test_http11_request_has_host_and_connection_close(capsys):
    with RequestServer(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as srv:
        rc, out, _ = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/p?q=1", "-P", "1.1"],
                         capsys)
    assert rc == 0
    assert srv.requests[0] == (b"GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\n"
                               b"Connection: close\r\n"
                               + f"Host: 127.0.0.1:{srv.port}\r\n\r\n".encode())


def test_http10c_request_has_connection_close(capsys):
    with RequestServer(reply(b"HTTP/1.0 200 OK\r\n\r\nok")) as srv:
        rc, _, _ = run(["--server", "127.0.0.1", "--port", str(srv.port), "--url", "/",
                        "--protocol", "1.0C"], capsys)
    assert rc == 0
    assert srv.requests[0].startswith(b"GET / HTTP/1.0\r\n")
    assert b"\r\nConnection: close\r\n" in srv.requests[0]


# --- HTTPS ---------------------------------------------------------------------------

def test_https_self_signed_with_virtualhost_and_sni(capsys, cert):
    with RequestServer(host_checking_handler("secure.example.test"), tls=server_ctx(cert)) as srv:
        rc, out, err = run(["-S", "-s", "127.0.0.1", "-p", str(srv.port), "-u", "/",
                            "-V", "secure.example.test"], capsys)
    assert rc == 0, err
    assert last_line(out) == hashlib.md5(b"ok").hexdigest()
    assert srv.sni == ["secure.example.test"]


def test_https_without_virtualhost(capsys, cert):
    body = b"tls body " * 1000
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with RequestServer(reply(raw), tls=server_ctx(cert)) as srv:
        rc, out, err = run(["--use-ssl", "-s", "127.0.0.1", "-p", str(srv.port), "-u", "/"],
                           capsys)
    assert rc == 0, err
    assert last_line(out) == hashlib.md5(body).hexdigest()
    assert srv.sni == [None]  # no SNI for an IP address
    assert f"Host: 127.0.0.1:{srv.port}".encode() in srv.requests[0]


def test_tls_handshake_failure(capsys):
    # a plain-text server answering the ClientHello with HTTP
    with RequestServer(reply(b"HTTP/1.0 400 Bad Request\r\n\r\n"), read_request=False) as srv:
        rc, out, err = run(["-S", "-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-t", "5"],
                           capsys)
    assert rc != 0 and out == ""
    assert "TLS handshake with 127.0.0.1:%d failed" % srv.port in one_line_error(err)


# --- errors --------------------------------------------------------------------------

def test_connection_refused(capsys):
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, out, err = run(["-s", "127.0.0.1", "-p", str(port), "-u", "/"], capsys)
    assert rc != 0 and out == ""
    assert one_line_error(err) == f"genhash: connection refused by 127.0.0.1:{port}"


def test_timeout_when_server_never_answers(capsys):
    def silent(conn, request):
        srv.stop.wait(DEADLINE)  # hold the connection open, silent, until the test ends

    with RequestServer(silent) as srv:
        started = time.monotonic()
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-t", "1"], capsys)
        elapsed = time.monotonic() - started
    assert rc != 0 and out == ""
    assert "timeout reading reply from 127.0.0.1" in one_line_error(err)
    assert 0.9 <= elapsed < DEADLINE


@pytest.mark.parametrize("raw", [b"220 mail.example.test ESMTP ready\r\n",
                                 b"\x16\x03\x01garbage\r\n\r\nmore"])
def test_non_http_reply(capsys, raw):
    def handler(conn, request):
        conn.sendall(raw)
        srv.stop.wait(DEADLINE)  # like an SMTP server: keeps the connection open

    with RequestServer(handler) as srv:
        started = time.monotonic()
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-t", "20"],
                           capsys)
        elapsed = time.monotonic() - started
    assert rc != 0 and out == ""
    assert "reply is not HTTP" in one_line_error(err)
    assert elapsed < DEADLINE  # detected from the first bytes, no need to wait for the timeout


def test_empty_reply(capsys):
    with RequestServer(lambda conn, request: None) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/"], capsys)
    assert rc != 0 and out == ""
    assert "empty reply" in one_line_error(err)


def test_lf_only_reply_is_rejected(capsys):
    with RequestServer(reply(b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok")) as srv:
        rc, out, err = run(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/"], capsys)
    assert rc != 0 and out == ""
    assert "LF-only" in one_line_error(err)


@pytest.mark.parametrize("argv, message", [
    (["-s", "localhost", "-p", "80", "-u", "/"], "server should be an IP, not localhost"),
    (["-s", "999.1.1.1", "-p", "80", "-u", "/"], "server should be an IP, not 999.1.1.1"),
    (["-s", "127.0.0.1", "-p", "0", "-u", "/"], "invalid port number '0'"),
    (["-s", "127.0.0.1", "-p", "80", "-u", "/", "-P", "2"], "invalid HTTP protocol version '2'"),
    (["-s", "127.0.0.1", "-p", "80", "-u", "/", "-t", "x"], "invalid timeout 'x'"),
    (["-s", "127.0.0.1", "-p", "80", "-u", "/", "-H", "crc"],
     "unknown hash algorithm: crc (use md5 or sha1)"),
])
def test_invalid_arguments(capsys, argv, message):
    rc, out, err = run(argv, capsys)
    assert rc == 1 and out == ""
    assert one_line_error(err) == f"genhash: {message}"


def test_missing_mandatory_options_and_help(capsys):
    rc, out, err = run(["-s", "127.0.0.1"], capsys)
    assert rc == 2 and "required" in err
    rc, out, err = run(["-h"], capsys)
    assert rc == 0 and "--use-virtualhost" in out


# --- verbose and end to end ------------------------------------------------------------

def test_verbose_shows_request_headers_body_and_ends_with_digest(capsys):
    raw = b"HTTP/1.0 200 OK\r\nX-Test: yes\r\nContent-Length: 5\r\n\r\nhello"
    with RequestServer(reply(raw)) as srv:
        rc, out, err = run(["-v", "-s", "127.0.0.1", "-p", str(srv.port), "-u", "/v"], capsys)
    assert rc == 0, err
    digest = hashlib.md5(b"hello").hexdigest()
    assert "GET /v HTTP/1.0\nUser-Agent: KeepAliveClient\n" in out
    assert "HTTP Header Ascii Buffer" in out and "X-Test: yes\n" in out
    assert "0000  68 65 6c 6c 6f" in out  # body hex dump, keepalived dump_buffer layout
    assert f"MD5SUM = {digest}\n" in out
    assert "Global response time for [/v] = " in out
    assert last_line(out) == digest


def test_end_to_end_in_subprocess():
    with html_page(BODY) as srv:
        proc = subprocess.run(
            [sys.executable, "-c",
             "import sys; from director.genhash import main; sys.exit(main(sys.argv[1:]))",
             "-s", "127.0.0.1", "-p", str(srv.port), "-u", "/", "-t", "5"],
            cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == hashlib.md5(BODY).hexdigest()


def test_end_to_end_error_in_subprocess():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; from director.genhash import main; sys.exit(main(sys.argv[1:]))",
         "-s", "127.0.0.1", "-p", str(port), "-u", "/"],
        cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"genhash: connection refused by 127.0.0.1:{port}\n"
