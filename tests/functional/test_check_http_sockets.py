"""HTTP_GET's sockets on the loop (director.check.http _Get, SOCKETS): kept across checks as
TCP_CHECK's are, ended with a disconnect (a reset) only after the reply was read to the
server's close, closed as before on every other end; the end of a reply known from
EPOLLRDHUP without an empty recv. Real servers on 127.0.0.1 (threads, tests/functional/
loopback.py); the checks run on the loop through check() or start().
"""
import hashlib
import socket
import time

import pytest

from director import hub
from director.check import http
from director.check.checker import Target
from director.check.http import HttpCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
from tests.functional.loopback import RequestServer

pytestmark = pytest.mark.timeout(60)

DEADLINE = 10.0
HTTP_GET = BLOCKS["HTTP_GET"]
Url = model_for(HTTP_GET.lookup("url").value)
OK = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
KEPT = http.SOCKETS[socket.AF_INET]


def make_check(port, timeout=2.0, **url):
    target = Target(host="127.0.0.1", port=port, connect_timeout=timeout,
                    virtual_server="127.0.0.1:80", real_server=f"127.0.0.1:{port}")
    return HttpCheck(model_for(HTTP_GET)(url=(Url(path="/", **url),)), target)


def after_close(seen):
    """A server that answers, shuts its side (FIN) and records what its next read gets:
    b"" for our FIN, "reset" for our reset."""
    def handler(conn, request):
        conn.sendall(OK)
        conn.shutdown(socket.SHUT_WR)
        try:
            seen.append(conn.recv(100))
        except ConnectionResetError:
            seen.append("reset")
    return handler


def wait_for(condition, what, seconds=DEADLINE):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        hub.sleep(0.01)


def test_a_reply_read_to_the_close_keeps_the_socket_and_resets():
    """Two healthy checks: the second reuses the first one's socket (none made), and the
    server, which had the whole request and closed, reads a reset where a close sent a FIN
    (its socket skips TIME_WAIT)."""
    seen = []
    with RequestServer(after_close(seen)) as srv:
        check = make_check(srv.port)
        made = KEPT.made
        first = check.check()
        kept = len(KEPT.free)
        second = check.check()
        wait_for(lambda: len(seen) == 2, "the server's reads after its close")
    assert first.ok and second.ok, (first.error, second.error)
    assert kept >= 1 and KEPT.made - made <= 1
    assert seen == ["reset", "reset"]
    assert all(request.endswith(b"\r\n\r\n") for request in srv.requests)


def test_a_timeout_closes_the_socket_as_before():
    """A server that keeps the connection open after a complete reply fails at the timeout
    (keepalived reads to the close); its socket is closed, not kept: a FIN, as before."""
    seen = []

    def keep_open(conn, request):
        conn.sendall(OK)
        try:
            seen.append(conn.recv(100))
        except ConnectionResetError:
            seen.append("reset")

    with RequestServer(keep_open) as srv:
        check = make_check(srv.port, timeout=0.3)
        kept = len(KEPT.free)
        result = check.check()
        wait_for(lambda: seen, "the server's read")
    assert result.error == "GET /: timeout after 0.3 s (read)"
    assert seen == [b""] and len(KEPT.free) <= kept


def reply_of(size):
    body = bytes(range(256)) * (size // 256 + 1)
    head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
    body = body[:size - len(head % size)]
    return head % len(body) + body, body


@pytest.mark.parametrize("size", [65535, 65536, 65537, 3 * 65536, 200_000])
def test_replies_around_one_read_are_read_whole(size):
    """Sent at once and closed: the edge that brings the end says RDHUP; a read of a whole
    RECV_SIZE is no end (more may follow), a shorter one with RDHUP is."""
    raw, body = reply_of(size)
    assert len(raw) == size
    with RequestServer(lambda conn, request: conn.sendall(raw)) as srv:
        good = make_check(srv.port, digest=hashlib.md5(body).hexdigest())
        results = [good.check() for _ in range(2)]
        bad = make_check(srv.port, digest=hashlib.md5(body[:-1]).hexdigest())
        wrong = bad.check()
    assert [result.error for result in results] == [None, None]
    assert wrong.error.startswith("GET /: digest mismatch: got "
                                  + hashlib.md5(body).hexdigest())


def test_more_than_content_length_and_an_early_close():
    """The reply is still read to the close and judged as genhash does: bytes beyond
    Content-Length are not hashed; a body cut short by the close is hashed as it came."""
    more = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"
    short = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nok"
    with RequestServer(lambda conn, request: conn.sendall(more)) as srv:
        assert make_check(srv.port, digest=hashlib.md5(b"ok").hexdigest()).check().ok
    with RequestServer(lambda conn, request: conn.sendall(short)) as srv:
        assert make_check(srv.port, digest=hashlib.md5(b"ok").hexdigest()).check().ok
        result = make_check(srv.port, digest="0" * 32).check()
    assert result.error.startswith("GET /: digest mismatch: got "
                                   + hashlib.md5(b"ok").hexdigest())


def test_kept_sockets_go_from_server_to_server_with_failures_between():
    """Checks in flight together on the loop, a kept socket taken over by a check of
    another server right after its last one ended: healthy, refused, hanging and healthy
    servers each get their own verdict, round after round (no event of a socket's earlier
    check reaches the next)."""
    # Bound, never listening, held for the test: refused, and no other process can take
    # the port meanwhile (this machine runs other benches' listeners).
    with socket.socket() as probe, \
            RequestServer(lambda conn, request: conn.sendall(OK)) as good, \
            RequestServer(lambda conn, request: hanging.stop.wait(DEADLINE)) as hanging:
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
        checks = ([("ok", make_check(good.port))] * 6
                  + [("refused", make_check(refused))] * 3
                  + [("timeout", make_check(hanging.port, timeout=0.3))] * 3)
        for _ in range(4):
            results = {}
            done = hub.Event()

            def finish(index, result):
                results[index] = result
                if len(results) == len(checks):
                    done.set()

            for index, (_, check) in enumerate(checks):
                check.start(lambda result, duration=None, index=index: finish(index, result))
            assert done.wait(DEADLINE), f"{len(results)} of {len(checks)} ended"
            for index, (want, _) in enumerate(checks):
                error = results[index].error
                if want == "ok":
                    assert error is None, error
                elif want == "refused":
                    assert error == "GET /: connect: Connection refused"
                else:
                    assert error == "GET /: timeout after 0.3 s (read)"
    assert KEPT.free, "healthy checks leave their sockets kept"
