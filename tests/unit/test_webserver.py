"""The pure parts of the daemon's web server (director/webserver.py): the descriptors kept
for the checks and VRRP, the connection and stream limits, the refusal of an admin token in
clear text, the TLS files named when wrong; and the app's side of the limits (a stream over
the cap is a 503 with Retry-After, a body that does not arrive is a 408). The server itself
runs in tests/functional/test_web_limits.py, test_web_tls.py and test_web_fuzz.py."""

from __future__ import annotations

import socket
import ssl
import time
from types import SimpleNamespace

import pytest
from werkzeug.test import EnvironBuilder

from director import webserver
from director.errors import BodyTimeout
from director.state import REFUSED_KEY
from tests.tls import make_ca_and_server
from tests.unit.test_web_api import FakeDirector
from web import create_app


def config(servers: int, checkers: int, instances: int):
    real = SimpleNamespace(checkers=(object(),) * checkers)
    return SimpleNamespace(virtual_servers=[SimpleNamespace(real_servers=[real] * servers)],
                           vrrp_instances=[object()] * instances)


def test_the_reserve_grows_with_checkers_and_instances():
    base = webserver.fd_reserve(config(0, 0, 0))
    assert base == webserver.RESERVE_BASE
    assert webserver.fd_reserve(config(10, 2, 0)) == base + 20 + 20 * 3
    assert webserver.fd_reserve(config(10, 0, 0)) == base + 10 + 10 * 3     # no checker: one
    assert webserver.fd_reserve(config(0, 0, 3)) == base + 3 * 4
    # 10,000 servers: one each, and the workers' extra for the checks off the loop at once
    assert webserver.fd_reserve(config(10_000, 1, 2)) == base + 10_000 + 256 * 3 + 2 * 4


@pytest.mark.parametrize("nofile, reserve, limit", [
    (1024, 128, 512),            # capped: a dashboard needs a handful
    (256, 136, 120),             # what is left
    (200, 190, 10),
    (100, 190, webserver.CONNECTIONS_MIN),     # too little left: the minimum, said in the log
])
def test_connection_limit(nofile, reserve, limit):
    assert webserver.connection_limit(nofile, reserve) == limit


def test_streams_take_at_most_half_the_connections():
    assert webserver.stream_limit(512) == webserver.STREAMS_MAX
    assert webserver.stream_limit(20) == 10
    assert webserver.stream_limit(1) == 1


@pytest.mark.parametrize("host, admin, tls, insecure, refused", [
    ("127.0.0.1", True, False, False, False),
    ("::1", True, False, False, False),
    ("localhost", True, False, False, False),
    ("0.0.0.0", True, False, False, True),
    ("::", True, False, False, True),
    ("192.0.2.1", True, False, False, True),
    ("lb1.example", True, False, False, True),       # a name may resolve to anything
    ("0.0.0.0", True, True, False, False),
    ("0.0.0.0", True, False, True, False),
    ("0.0.0.0", False, False, False, False),         # no token: read-only, said in the log
])
def test_an_admin_token_never_crosses_a_network_in_clear(host, admin, tls, insecure, refused):
    why = webserver.clear_text_refusal(host, admin, tls, insecure)
    assert bool(why) == refused
    if why:
        assert "--web-tls-cert" in why and "--web-insecure" in why and "\n" not in why


def test_tls_files_that_are_wrong_are_named(tmp_path):
    ca, cert, key = make_ca_and_server(tmp_path)
    assert isinstance(webserver.tls_context(str(cert), str(key)), ssl.SSLContext)
    (tmp_path / "junk").write_text("not a certificate\n")
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_key = make_ca_and_server(other)
    for bad_cert, bad_key, named in (
            (tmp_path / "missing.pem", key, "missing.pem"),
            (cert, tmp_path / "missing.key", "missing.key"),
            (tmp_path / "junk", key, "junk"),
            (cert, tmp_path / "junk", "junk"),
            (cert, other_key, str(other_key)),        # a key of another certificate
            (cert, ca, str(ca))):                     # a certificate where the key goes
        with pytest.raises(ValueError) as caught:
            webserver.tls_context(str(bad_cert), str(bad_key))
        assert str(caught.value).startswith(str(tmp_path)) and named in str(caught.value)


def test_streams_over_the_cap_are_503_with_retry_after():
    director = FakeDirector()
    app = create_app(director, max_streams=2)
    client = app.test_client()
    first = client.get("/api/v1/stream", buffered=False)
    second = client.get("/api/v1/stream", buffered=False)
    assert first.status_code == second.status_code == 200
    environ = EnvironBuilder("/api/v1/stream").get_environ()     # as a WSGI server calls
    answered = []
    body = b"".join(app(environ, lambda status, headers: answered.append((status, headers))))
    (status, headers), = answered
    assert status.startswith("503") and dict(headers)["Retry-After"]
    assert b"2 event streams" in body
    assert environ[REFUSED_KEY] == "too_many_streams"      # what the server counts by
    assert app.config["STREAMS"].open == 2 and len(director.events.subscribers) == 2
    first.close()                  # a stream that ends gives its slot and its subscription
    assert app.config["STREAMS"].open == 1 and len(director.events.subscribers) == 1
    fourth = client.get("/api/v1/stream", buffered=False)
    assert fourth.status_code == 200
    second.close()
    fourth.close()
    assert app.config["STREAMS"].open == 0 and not director.events.subscribers


class SlowBody:
    """A wsgi.input whose body never arrives: what the daemon's server raises then."""

    def read(self, *args):
        raise BodyTimeout("the request body did not arrive within 10 s")

    readline = read


def test_a_body_that_does_not_arrive_is_a_408():
    app = create_app(FakeDirector(), admin_token="t")
    environ = EnvironBuilder("/api/v1/real-servers/drain", method="POST", headers={
        "Authorization": "Bearer t", "X-CSRF-Token": app.config["CSRF_TOKEN"],
        "Content-Type": "application/json"}).get_environ()
    environ.update({"CONTENT_LENGTH": "50", "wsgi.input": SlowBody()})
    answered = []
    body = b"".join(app(environ, lambda status, headers: answered.append(status)))
    assert answered[0].startswith("408") and b"did not arrive" in body


# --- the server itself, in this process (gevent sockets on loopback) ------------------------

def wait_until(predicate, seconds: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds, at most ``seconds``."""
    import gevent
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "not true in time"
        gevent.sleep(0.01)


@pytest.fixture
def serve():
    servers = []

    def start(app, limit: int = 4):
        server = webserver.serve(app, webserver.listen("127.0.0.1", 0), limit)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=1)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def test_when_every_slot_is_taken_the_server_stops_accepting_then_resumes(serve):
    import gevent.socket
    server = serve(hello, limit=2)
    address = ("127.0.0.1", server.server_port)
    idle = [gevent.socket.create_connection(address) for _ in range(2)]
    wait_until(lambda: server.open == 2)
    waiting = gevent.socket.create_connection(address)    # in the listen backlog
    waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    waiting.settimeout(0.3)
    with pytest.raises(TimeoutError):
        waiting.recv(100)                                  # not served: no slot
    assert server.open == 2 and server.counts["too_many_connections"] >= 1
    idle[0].close()                                        # a slot frees ...
    waiting.settimeout(5)
    assert waiting.recv(100).startswith(b"HTTP/1.1 200")   # ... and the waiting one is served
    for sock in idle[1:] + [waiting]:
        sock.close()
    wait_until(lambda: server.open == 0)


def test_a_reader_that_stops_reading_is_cut_and_counted(serve, monkeypatch):
    import gevent.socket
    monkeypatch.setattr(webserver, "SOCKET_TIMEOUT", 0.5)

    def endless(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter(lambda: b"x" * 65536, None)

    server = serve(endless)
    client = gevent.socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", server.server_port))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")        # and never reads
    wait_until(lambda: server.open == 1)
    wait_until(lambda: server.open == 0)
    assert server.counts == {"timeout": 1}
    client.close()
