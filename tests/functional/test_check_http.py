"""HTTP_GET / SSL_GET (director.check.http): first its pure part, judging canned replies
(status, digest, regex) and reading certificates; then the checker against real servers on
127.0.0.1.

Servers are threads started by each test on port 0: http.server for the ordinary case,
a small socketserver for odd replies, TLS with a certificate made here. The checker is
run directly: its check() is plain synchronous code; one test runs it under gevent's
monkey-patching in a subprocess, as the daemon does.

(The pure tests live here rather than in tests/unit/test_check_http.py: two test files
with one basename break collection under pytest's default import mode.)
"""
import datetime
import hashlib
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from director.check.checker import Target
from director.check.http import HttpCheck, certificate_detail, format_ranges, judge
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
from director.genhash import compute_digest, parse_response
from director.genhash import main as genhash_main
from tests.functional.loopback import OnePageServer, RequestServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 10.0     # the longest any server-side wait may take
SLACK = 0.5         # how late a timeout may fire
HTTP_GET, SSL_GET = BLOCKS["HTTP_GET"], BLOCKS["SSL_GET"]
URL = HTTP_GET.lookup("url").value
Url = model_for(URL)


# === the pure part: judging canned replies, no sockets ==================================

def canned(body=b"ok", status=b"200 OK", headers=b""):
    return b"HTTP/1.0 " + status + b"\r\n" + headers + b"\r\n" + body


# --- status ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [200, 204, 299])
def test_default_accepts_2xx(status):
    assert judge(Url(path="/"), canned(status=b"%d X" % status)) is None


@pytest.mark.parametrize("status, text", [(301, "status 301 not in 200-299"),
                                          (503, "status 503 not in 200-299"),
                                          (199, "status 199 not in 200-299")])
def test_default_rejects_others(status, text):
    assert judge(Url(path="/"), canned(status=b"%d X" % status)) == text


def test_configured_ranges_replace_the_default():
    url = Url(path="/", status_code=((200, 200), (301, 302), (404, 404)))
    for ok in (200, 301, 302, 404):
        assert judge(url, canned(status=b"%d X" % ok)) is None, ok
    assert judge(url, canned(status=b"204 No Content")) == \
        "status 204 not in 200, 301-302, 404"


def test_format_ranges():
    assert format_ranges(((200, 299),)) == "200-299"
    assert format_ranges(((200, 200), (500, 599))) == "200, 500-599"


# --- not HTTP -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, why", [
    (b"", "empty reply"),
    (b"220 mail.example.test ESMTP\r\n", "reply is not HTTP"),
    (b"HTTP/1.0 200 OK\nContent-Length: 2\n\nok", "LF-only"),
    (b"HTTP/1.0 200 OK\r\nServer: x\r\n", "no CRLF CRLF"),
])
def test_not_an_http_canned(raw, why):
    text = judge(Url(path="/"), raw)
    assert text.startswith("not an HTTP reply (") and why in text


# --- digest: genhash's ----------------------------------------------------------------

def test_digest_match_and_mismatch():
    good = hashlib.md5(b"hello").hexdigest()
    assert judge(Url(path="/", digest=good), canned(b"hello")) is None
    assert judge(Url(path="/", digest=good.upper()), canned(b"hello")) is None
    bad = "0" * 32
    assert judge(Url(path="/", digest=bad), canned(b"hellO")) == \
        f"digest mismatch: got {hashlib.md5(b'hellO').hexdigest()}, want {bad}"


def test_digest_capped_at_content_length():
    raw = canned(b"abcdEXTRA", headers=b"Content-Length: 4\r\n")
    assert judge(Url(path="/", digest=hashlib.md5(b"abcd").hexdigest()), raw) is None


def test_chunked_body_hashed_raw():
    chunked = b"3\r\nabc\r\n0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
    assert judge(Url(path="/", digest=hashlib.md5(chunked).hexdigest()), raw) is None
    assert judge(Url(path="/", digest=hashlib.md5(b"abc").hexdigest()), raw) is not None


def test_status_is_judged_before_digest():
    raw = canned(b"hello", status=b"500 Oops")
    assert judge(Url(path="/", digest="0" * 32), raw) == "status 500 not in 200-299"


@given(st.binary(max_size=300), st.sampled_from([b"", b"Content-Length: 7\r\n",
                                                 b"Transfer-Encoding: chunked\r\n"]))
def test_digest_is_always_genhash_digest(body, headers):
    raw = canned(body, headers=headers)
    want = compute_digest(parse_response(raw).body)
    assert judge(Url(path="/", digest=want), raw) is None


# --- regex ----------------------------------------------------------------------------

def test_regex_found_and_not_found():
    assert judge(Url(path="/", regex=r"status: (up|ok)"), canned(b"<p>status: up</p>")) is None
    assert judge(Url(path="/", regex="status: up"), canned(b"status: down")) == \
        "regex 'status: up' not found"


def test_regex_no_match_inverts():
    url = Url(path="/", regex="ERROR", regex_no_match=True)
    assert judge(url, canned(b"all fine")) is None
    assert judge(url, canned(b"an ERROR here")) == "regex 'ERROR' matched (regex_no_match)"


def test_regex_sees_only_the_body_and_ignores_content_length():
    raw = canned(b"abcdTAIL", headers=b"X-Mark: HEADER\r\nContent-Length: 4\r\n")
    assert judge(Url(path="/", regex="HEADER"), raw) == "regex 'HEADER' not found"
    assert judge(Url(path="/", regex="TAIL"), raw) is None      # keepalived: not capped
    assert judge(Url(path="/", regex="^abcd"), raw) is None     # ^ is the body's start


def test_regex_offsets_bound_where_the_match_starts():
    raw = canned(b"0123456789ok")
    assert judge(Url(path="/", regex="ok", regex_min_offset=5), raw) is None
    assert judge(Url(path="/", regex="ok", regex_max_offset=10), raw) is None
    assert judge(Url(path="/", regex="ok", regex_max_offset=9), raw) is not None
    assert judge(Url(path="/", regex="0", regex_min_offset=1), raw) is not None


def test_regex_options_and_bytes():
    assert judge(Url(path="/", regex="hello"), canned(b"HELLO")) is not None
    assert judge(Url(path="/", regex="hello", regex_options="caseless"), canned(b"HELLO")) is None
    assert judge(Url(path="/", regex="caf\u00e9"), canned("caf\u00e9".encode())) is None
    assert judge(Url(path="/", regex="x.y"), canned(b"x\xffy")) is None   # any byte


def test_status_then_digest_then_regex_all_pass():
    url = Url(path="/", status_code=((200, 200),), digest=hashlib.md5(b"up").hexdigest(),
              regex="up")
    assert judge(url, canned(b"up")) is None


# --- certificate and construction -----------------------------------------------------

def make_der(cn="example.test", hours=5):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")]
                     + ([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=hours))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER), int(cert.not_valid_after_utc.timestamp())


def test_certificate_detail():
    der, not_after = make_der()
    assert certificate_detail(der) == {"cert_not_after": not_after,
                                       "cert_subject": "example.test"}
    assert certificate_detail(make_der(cn=None)[0])["cert_subject"] == ""
    assert certificate_detail(None) == {} and certificate_detail(b"junk") == {}


def test_construction_does_no_io():
    target = Target(host="192.0.2.1", port=80, connect_timeout=1)
    assert HttpCheck(model_for(HTTP_GET)(url=(Url(path="/"),)), target).kind == "HTTP_GET"
    check = HttpCheck(model_for(SSL_GET)(url=(Url(path="/"),)), target)
    assert check.kind == "SSL_GET" and check.tls


def test_no_port_fails_without_io():
    target = Target(host="192.0.2.1", port=None, connect_timeout=1)
    result = HttpCheck(model_for(HTTP_GET)(url=(Url(path="/x"),)), target).check()
    assert not result.ok and result.error.startswith("GET /x: no port")


def test_module_does_not_import_gevent():
    """The daemon monkey-patches socket and ssl; the checker must use them, not gevent."""
    import ast

    import director.check.http as module

    tree = ast.parse(open(module.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module}
    assert not any(name.split(".")[0] == "gevent" for name in imported)


# === against real servers ==============================================================


def make_check(port, *urls, kind="HTTP_GET", timeout=2.0, target_vhost=None,
               bind_ip=None, bind_port=None, **config):
    model = model_for(HTTP_GET if kind == "HTTP_GET" else SSL_GET)
    target = Target(host="127.0.0.1", port=port, connect_timeout=timeout,
                    virtualhost=target_vhost, bind_ip=bind_ip, bind_port=bind_port,
                    virtual_server="127.0.0.1:80", real_server=f"127.0.0.1:{port}")
    return HttpCheck(model(url=urls or (Url(path="/"),), **config), target)


def timed(check):
    started = time.monotonic()
    result = check.check()
    return result, time.monotonic() - started


def send(raw):
    return lambda conn, request: conn.sendall(raw)


Server = RequestServer          # the name these tests were written with


def hang(server):
    """Accept and say nothing until the test ends."""
    return lambda conn, request: server.stop.wait(DEADLINE)


OK = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def routes(table):
    """Answer by path: {"/a": raw reply}; 404 for others."""
    def handler(conn, request):
        path = request.split(b" ", 2)[1].decode()
        conn.sendall(table.get(path, b"HTTP/1.0 404 Not Found\r\n\r\nnope"))
    return handler


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """Self-signed certificate for CN=director.test: (cert.pem, key.pem, notAfter epoch)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "director.test")])
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3, seconds=17))
                   .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("cert")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file, int(certificate.not_valid_after_utc.timestamp())


def tls_context(cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- plain HTTP -------------------------------------------------------------------------

def test_healthy_server_passes_with_keepalived_request():
    with OnePageServer() as srv:
        result, elapsed = timed(make_check(srv.port, Url(path="/health")))
    assert result.ok and result.error is None, result.error
    assert 0 < result.duration <= elapsed < 2.0
    requestline, headers = srv.seen[0]
    assert requestline == "GET /health HTTP/1.0"
    assert headers == {"User-Agent": "KeepAliveClient", "Host": f"127.0.0.1:{srv.port}"}
    assert result.detail == {}


def test_http11_request_bytes():
    with Server(send(OK)) as srv:
        assert make_check(srv.port, Url(path="/p?q=1"), http_protocol="1.1").check().ok
    assert srv.requests == [b"GET /p?q=1 HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\n"
                            b"Connection: close\r\n"
                            + f"Host: 127.0.0.1:{srv.port}\r\n\r\n".encode()]


def test_wrong_status_fails_with_text():
    with OnePageServer(status=503) as srv:
        result = make_check(srv.port, Url(path="/health")).check()
    assert not result.ok
    assert result.error == "GET /health: status 503 not in 200-299"


def test_configured_status_code_accepts_it():
    with OnePageServer(status=503) as srv:
        check = make_check(srv.port, Url(path="/", status_code=((500, 599),)))
        assert check.check().ok


def test_digest_right_and_wrong():
    body = b"<html>digest me \x00\xff</html>\n" * 40
    good = hashlib.md5(body).hexdigest()
    with OnePageServer(body) as srv:
        assert make_check(srv.port, Url(path="/", digest=good)).check().ok
        result = make_check(srv.port, Url(path="/", digest="0" * 32)).check()
    assert not result.ok
    assert result.error == f"GET /: digest mismatch: got {good}, want {'0' * 32}"


def test_digest_is_the_one_genhash_prints(capsys):
    chunked = b"1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\n123\r\n0\r\n\r\n"
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked
    with Server(send(raw)) as srv:
        assert genhash_main(["-s", "127.0.0.1", "-p", str(srv.port), "-u", "/x",
                             "-P", "1.1"]) == 0
        printed = capsys.readouterr().out.split()[-1]
        assert make_check(srv.port, Url(path="/x", digest=printed), http_protocol="1.1").check().ok
    assert printed == hashlib.md5(chunked).hexdigest()      # raw chunks, as keepalived
    assert srv.requests[0] == srv.requests[1]               # byte for byte the same GET


def test_regex_against_a_server():
    with Server(send(b"HTTP/1.0 200 OK\r\n\r\n<p>db: up, cache: DEGRADED</p>")) as srv:
        assert make_check(srv.port, Url(path="/", regex=r"db: (up|ok)")).check().ok
        result = make_check(srv.port, Url(path="/", regex="DEGRADED",
                                          regex_no_match=True)).check()
    assert result.error == "GET /: regex 'DEGRADED' matched (regex_no_match)"


def test_not_http_fails_without_waiting_for_the_timeout():
    def banner(conn, request):
        conn.sendall(b"220 mail.example.test ESMTP ready\r\n")
        srv.stop.wait(DEADLINE)         # keeps the connection open, as an SMTP server does

    with Server(banner) as srv:
        result, elapsed = timed(make_check(srv.port, timeout=5.0))
    assert result.error.startswith("GET /: not an HTTP reply (reply is not HTTP")
    assert elapsed < 2.0


def test_empty_reply():
    with Server(lambda conn, request: None) as srv:
        result = make_check(srv.port).check()
    assert result.error.startswith("GET /: not an HTTP reply (empty reply")


def test_endless_headers_fail_as_too_large_without_waiting():
    """A header block that never ends is refused once it passes 64 KiB, counted as a reply
    error, and the check does not wait for the timeout."""
    def endless(conn, request):
        conn.sendall(b"HTTP/1.0 200 OK\r\nX-Long: " + b"a" * (80 << 10))
        srv.stop.wait(DEADLINE)

    with Server(endless) as srv:
        result, elapsed = timed(make_check(srv.port, timeout=5.0))
    assert result.error == "GET /: no end of the headers in the first 64 KiB"
    assert result.reply_error == "too_large" and elapsed < 2.0


def test_reply_in_many_pieces_is_read_whole():
    """A reply larger than one read, sent in pieces: every byte is hashed (the loop's read
    grows one buffer)."""
    body = bytes(range(256)) * 1024                 # 256 KiB
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    def pieces(conn, request):
        for at in range(0, len(raw), 7000):
            conn.sendall(raw[at:at + 7000])

    with Server(pieces) as srv:
        good = make_check(srv.port, Url(path="/", digest=hashlib.md5(body).hexdigest()))
        result = good.check()
        assert result.ok, result.error
        bad = make_check(srv.port, Url(path="/", digest="0" * 32))
        assert bad.check().error.startswith("GET /: digest mismatch: got "
                                            + hashlib.md5(body).hexdigest())


def test_a_changed_reply_is_judged_again():
    """The verdict of an unchanged reply is remembered; a different reply is judged anew,
    both ways."""
    replies = [OK, OK, b"HTTP/1.0 503 Busy\r\n\r\nno", OK]
    with Server(lambda conn, request: conn.sendall(replies.pop(0))) as srv:
        check = make_check(srv.port)
        found = [check.check().error for _ in range(4)]
    assert found == [None, None, "GET /: status 503 not in 200-299", None]


def test_reset_while_reading_fails_the_read():
    def reset(conn, request):
        conn.sendall(b"HTTP/1.0 200 OK\r\n")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        conn.close()

    with Server(reset) as srv:
        result = make_check(srv.port).check()
    assert not result.ok and result.error == "GET /: read: Connection reset by peer"


def test_plain_http_runs_on_the_loop_and_tls_in_a_worker():
    from director.check.scheduler import Scheduler
    from director.check.checker import CheckSettings
    from director.clock import MonotonicClock

    settings = CheckSettings(delay_loop=1, connect_timeout=1, retry=0, delay_before_retry=1,
                             warmup=0, alpha=False)
    scheduler = Scheduler(MonotonicClock(), workers=0)
    plain = scheduler.add(("v", "r", "HTTP_GET"), make_check(80), settings)
    tls = scheduler.add(("v", "r", "SSL_GET"), make_check(443, kind="SSL_GET"), settings)
    assert plain.callback and not tls.callback


# --- refused, timeouts, back again --------------------------------------------------------

def test_stopped_server_is_refused_then_back_is_ok():
    srv = Server(send(OK)).__enter__()
    port = srv.port
    assert make_check(port).check().ok
    srv.close()
    result, elapsed = timed(make_check(port))
    assert not result.ok and result.error == "GET /: connect: Connection refused"
    assert elapsed < 1.0
    with Server(send(OK), port=port):
        assert make_check(port).check().ok


@pytest.mark.slow
def test_hanging_server_times_out_within_connect_timeout():
    with Server(None) as srv:
        srv.handler = hang(srv)
        result, elapsed = timed(make_check(srv.port, timeout=1.0))
    assert not result.ok
    assert result.error == "GET /: timeout after 1 s (read)"
    assert 1.0 <= elapsed < 1.0 + SLACK
    assert srv.requests and srv.requests[0].startswith(b"GET / HTTP/1.0\r\n")


@pytest.mark.slow
def test_trickling_server_is_held_to_one_deadline():
    """keepalived restarts its timer at each read; one deadline per url stops a server
    that sends a byte now and then from holding the check up."""
    def trickle(conn, request):
        for byte in OK[:-1]:
            conn.sendall(bytes([byte]))
            if srv.stop.wait(0.1):
                return

    with Server(trickle) as srv:
        result, elapsed = timed(make_check(srv.port, timeout=1.0))
    assert result.error == "GET /: timeout after 1 s (read)"
    assert 1.0 <= elapsed < 1.0 + SLACK


@pytest.mark.slow
def test_complete_reply_on_a_kept_open_connection_times_out():
    """As keepalived, the reply is read until the server closes."""
    def keep_open(conn, request):
        conn.sendall(OK)
        srv.stop.wait(DEADLINE)

    with Server(keep_open) as srv:
        result, elapsed = timed(make_check(srv.port, timeout=1.0))
    assert result.error == "GET /: timeout after 1 s (read)"
    assert elapsed < 1.0 + SLACK


@pytest.mark.slow
def test_tls_handshake_timeout():
    with Server(None, read_request=False) as srv:
        srv.handler = hang(srv)
        result, elapsed = timed(make_check(srv.port, kind="SSL_GET", timeout=1.0))
    assert result.error == "GET /: timeout after 1 s (TLS handshake)"
    assert 1.0 <= elapsed < 1.0 + SLACK


# --- several urls -------------------------------------------------------------------------

def test_second_url_failing_is_named_then_recovers():
    table = {"/a": OK, "/b": b"HTTP/1.0 500 Internal Server Error\r\n\r\ndown", "/c": OK}
    urls = (Url(path="/a"), Url(path="/b"), Url(path="/c"))
    with Server(routes(table)) as srv:
        result = make_check(srv.port, *urls).check()
        assert not result.ok
        assert result.error == "GET /b: status 500 not in 200-299"
        assert [r.split(b" ")[1] for r in srv.requests] == [b"/a", b"/b"]   # stops at /b
        table["/b"] = OK
        result = make_check(srv.port, *urls).check()
    assert result.ok, result.error
    assert [r.split(b" ")[1] for r in srv.requests[2:]] == [b"/a", b"/b", b"/c"]


# --- virtual hosts --------------------------------------------------------------------------

def host_of(request):
    for line in request.split(b"\r\n"):
        if line.startswith(b"Host: "):
            return line[6:].decode()
    return None


def test_virtualhost_precedence_in_host_header():
    with Server(send(OK)) as srv:
        assert make_check(srv.port, target_vhost="rs.test").check().ok
        assert make_check(srv.port, target_vhost="rs.test", virtualhost="chk.test").check().ok
        assert make_check(srv.port, Url(path="/", virtualhost="url.test"),
                          target_vhost="rs.test", virtualhost="chk.test").check().ok
    assert [host_of(r) for r in srv.requests] == ["rs.test", "chk.test", "url.test"]


# --- TLS ------------------------------------------------------------------------------------

def test_https_ok_records_certificate(cert):
    with Server(send(OK), tls=tls_context(cert)) as srv:
        result = make_check(srv.port, Url(path="/", digest=hashlib.md5(b"ok").hexdigest()),
                            kind="SSL_GET").check()
    assert result.ok, result.error
    assert result.detail == {"cert_not_after": cert[2], "cert_subject": "director.test"}
    assert srv.sni == [None]                    # no virtualhost: no SNI for an address
    assert host_of(srv.requests[0]) == f"127.0.0.1:{srv.port}"


def test_https_virtualhost_is_host_header_and_sni(cert):
    with Server(send(OK), tls=tls_context(cert)) as srv:
        result = make_check(srv.port, kind="SSL_GET", virtualhost="www.director.test",
                            enable_sni=True).check()
        assert result.ok, result.error
        result = make_check(srv.port, Url(path="/", virtualhost="api.director.test"),
                            kind="SSL_GET", virtualhost="www.director.test").check()
    assert result.ok, result.error
    assert srv.sni == ["www.director.test", "api.director.test"]
    assert [host_of(r) for r in srv.requests] == ["www.director.test", "api.director.test"]


def test_https_failure_keeps_certificate_detail(cert):
    with Server(send(b"HTTP/1.0 503 Busy\r\n\r\n"), tls=tls_context(cert)) as srv:
        result = make_check(srv.port, kind="SSL_GET").check()
    assert result.error == "GET /: status 503 not in 200-299"
    assert result.detail["cert_not_after"] == cert[2]


def test_tls_handshake_failure_against_plain_server():
    with Server(send(b"HTTP/1.0 400 Bad Request\r\n\r\n"), read_request=False) as srv:
        result, elapsed = timed(make_check(srv.port, kind="SSL_GET", timeout=5.0))
    assert not result.ok and result.error.startswith("GET /: TLS handshake: ")
    assert len(result.error) > len("GET /: TLS handshake: ")
    assert elapsed < 2.0 and result.detail == {}


def test_http_get_against_tls_server_is_not_http(cert):
    with Server(send(OK), tls=tls_context(cert), read_request=False) as srv:
        result = make_check(srv.port).check()
    assert not result.ok
    assert result.error.startswith("GET /: ")


# --- source address -------------------------------------------------------------------------

def test_bindto_and_bind_port():
    port = free_port()
    with Server(send(OK)) as srv:
        result = make_check(srv.port, bind_ip="127.0.0.1", bind_port=port).check()
    assert result.ok, result.error
    assert srv.peers == [("127.0.0.1", port)]


def test_bind_failure_is_reported():
    with Server(send(OK)) as srv:
        result = make_check(srv.port, bind_ip="192.0.2.1").check()   # not ours: no bind
    assert result.error == "GET /: socket setup: Cannot assign requested address"
    assert srv.requests == []


# --- from a parsed keepalived.conf ----------------------------------------------------------

def test_checker_built_from_a_parsed_config(tmp_path):
    from director.check.base import kind, make_target, resolve_settings
    from director.config import load_config

    with Server(routes({"/health": b"HTTP/1.0 204 No Content\r\n\r\n"})) as srv:
        conf = tmp_path / "keepalived.conf"
        conf.write_text(f"""
virtual_server 127.0.0.1 80 {{
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 127.0.0.1 {srv.port} {{
        HTTP_GET {{
            url {{
                path /health
                status_code 200 204
            }}
            virtualhost health.director.test
            connect_timeout 2
        }}
    }}
}}
""")
        loaded = load_config(str(conf), interface_exists=None)
        assert loaded.ok, loaded.diagnostics
        vs = loaded.config.virtual_servers[0]
        rs = vs.real_servers[0]
        spec = rs.checkers[0]
        settings = resolve_settings(vs, rs, spec)
        target = make_target(vs, rs, spec, settings, ("vs", "rs"))
        check = kind(spec.kind).build(spec, target, loaded.config, rs, settings)
        result = check.check()
    assert check.kind == "HTTP_GET" and result.ok, result.error
    assert host_of(srv.requests[0]) == "health.director.test"


# --- under gevent, as in the daemon -----------------------------------------------------------

GEVENT_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()
import json, sys, time
import gevent
from director.check.checker import Target
from director.check.http import HttpCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for

HTTP_GET, SSL_GET = BLOCKS["HTTP_GET"], BLOCKS["SSL_GET"]
URL = HTTP_GET.lookup("url").value
hang_port, tls_port = int(sys.argv[1]), int(sys.argv[2])

def run(block, port, timeout):
    config = model_for(block)(url=(model_for(URL)(path="/"),))
    return HttpCheck(config, Target(host="127.0.0.1", port=port, connect_timeout=timeout)).check()

started = time.monotonic()
jobs = [gevent.spawn(run, HTTP_GET, hang_port, 1.0) for _ in range(3)]
jobs += [gevent.spawn(run, SSL_GET, tls_port, 5.0), gevent.spawn(run, SSL_GET, hang_port, 1.0)]
gevent.joinall(jobs, timeout=10)
print(json.dumps({"elapsed": time.monotonic() - started,
                  "results": [[j.value.ok, j.value.error, j.value.detail] for j in jobs]}))
"""


@pytest.mark.slow
def test_checks_are_cooperative_under_gevent(cert):
    with Server(None) as hanging, Server(send(OK), tls=tls_context(cert)) as tls:
        hanging.handler = hang(hanging)
        proc = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT, str(hanging.port),
                               str(tls.port)], cwd=REPO, capture_output=True, text=True,
                              timeout=30)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # four 1 s timeouts at once: about 1 s in all, not 4 s, so no wait blocked the hub
    assert out["elapsed"] < 1.0 + 2 * SLACK
    results = out["results"]
    assert results[:3] == [[False, "GET /: timeout after 1 s (read)", {}]] * 3
    assert results[3] == [True, None, {"cert_not_after": cert[2],
                                       "cert_subject": "director.test"}]
    assert results[4] == [False, "GET /: timeout after 1 s (TLS handshake)", {}]


# --- client certificates from the SSL block --------------------------------------------

def _issue(name, issuer_name=None, issuer_key=None, ca=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_name or subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return key, builder.sign(issuer_key or key, hashes.SHA256())


def _pem(folder, name, key, certificate, password=None):
    from cryptography.hazmat.primitives import serialization

    encryption = serialization.BestAvailableEncryption(password.encode()) if password \
        else serialization.NoEncryption()
    (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return str(folder / f"{name}.crt"), str(folder / f"{name}.key")


def test_ssl_block_client_certificate_is_presented(tmp_path, cert):
    from director.config.blocks.checkers import SSL
    from director.config.schema import Secret

    ca_key, ca_cert = _issue("director test CA", ca=True)
    client_key, client_cert = _issue("director checker", ca_cert.subject, ca_key)
    ca_file, _ = _pem(tmp_path, "ca", ca_key, ca_cert)
    client_file, client_key_file = _pem(tmp_path, "client", client_key, client_cert, "s3cret")
    server_context = tls_context(cert)
    server_context.verify_mode = ssl.CERT_REQUIRED          # no client certificate, no reply
    server_context.load_verify_locations(ca_file)
    ssl_defs = model_for(SSL)(certificate=client_file, key=client_key_file,
                              password=Secret("s3cret"))
    with Server(send(OK), tls=server_context) as srv:
        without = make_check(srv.port, kind="SSL_GET").check()
        assert not without.ok and without.error.startswith("GET /: ")
        check = make_check(srv.port, kind="SSL_GET")
        check.ssl_defs = ssl_defs
        result = check.check()
        assert result.ok, result.error
        wrong = make_check(srv.port, kind="SSL_GET")
        wrong.ssl_defs = model_for(SSL)(certificate=client_file, key=client_key_file,
                                        password=Secret("wrong"))
        failed = wrong.check()
        assert not failed.ok and "client certificate" in failed.error


def test_replies_that_differ_only_in_their_date_are_judged_once(monkeypatch):
    """nginx and Apache stamp every reply with a Date header: the remembered verdict holds
    across it (no parse or digest again), and a reply changed elsewhere is judged anew."""
    from director.check import http

    judged = []
    real_judge = http.judge
    monkeypatch.setattr(http, "judge", lambda url, raw: judged.append(raw) or
                        real_judge(url, raw))
    stamp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 17:00:%02d GMT\r\n" \
            b"Content-Length: 2\r\n\r\nok"
    replies = [stamp % 1, stamp % 2, stamp % 3,
               (stamp % 4).replace(b"200 OK", b"503 Busy"), stamp % 5]
    with Server(lambda conn, request: conn.sendall(replies.pop(0))) as srv:
        check = make_check(srv.port, Url(path="/", digest=hashlib.md5(b"ok").hexdigest()))
        found = [check.check().error for _ in range(5)]
    assert found == [None, None, None, "GET /: status 503 not in 200-299", None]
    assert len(judged) == 3          # the first, the 503 and the one after it
