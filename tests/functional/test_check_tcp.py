"""TCP_CHECK against real listeners: on loopback, and in namespaces for a silent timeout."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from director.check.checker import Target
from director.check.tcp import TcpCheck
from tests.functional.lab import wait_for

ROOT = Path(__file__).resolve().parents[2]


def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_listening_port_is_healthy_and_a_closed_one_is_refused():
    server = listener()
    port = server.getsockname()[1]
    try:
        result = TcpCheck(None, Target("127.0.0.1", port, 1.0)).check()
        assert result.ok and result.error is None and result.duration < 1.0
    finally:
        server.close()
    result = TcpCheck(None, Target("127.0.0.1", port, 1.0)).check()
    assert not result.ok and result.error == "connect: Connection refused"


def test_ipv6_loopback():
    server = socket.socket(socket.AF_INET6)
    server.bind(("::1", 0))
    server.listen(4)
    try:
        assert TcpCheck(None, Target("::1", server.getsockname()[1], 1.0)).check().ok
    finally:
        server.close()


def test_bindto_is_applied_before_connecting():
    """The check resets before the server accepts (TCP_QUICKACK off), so the source address
    is proven by binding: a local one works, one this host does not have fails at bind."""
    server = listener()
    port = server.getsockname()[1]
    try:
        assert TcpCheck(None, Target("127.0.0.1", port, 1.0, bind_ip="127.0.0.2")).check().ok
        result = TcpCheck(None, Target("127.0.0.1", port, 1.0, bind_ip="203.0.113.9")).check()
        assert not result.ok and result.error == "socket: Cannot assign requested address"
    finally:
        server.close()


def test_the_server_is_spared_the_accept():
    """SYN-ACK answers the check; the reset goes before the final ACK (HAProxy's way)."""
    server = listener()
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        for _ in range(5):
            assert TcpCheck(None, Target("127.0.0.1", port, 1.0)).check().ok
        try:
            server.accept()
        except BlockingIOError:
            pass
        else:
            raise AssertionError("a check left a connection for the server to accept")
    finally:
        server.close()


CHECK_IN_NAMESPACE = """
from gevent import monkey; monkey.patch_all()
import sys, time
from director.check.checker import Target
from director.check.tcp import TcpCheck
result = TcpCheck(None, Target(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))).check()
print(result.ok, round(result.duration, 3), result.error)
"""


@pytest.mark.netns
@pytest.mark.slow
def test_a_server_that_drops_syns_times_out_at_connect_timeout(lab):
    switch = lab.switch()
    checker = lab.host("chk", [(switch, "eth0", ["192.0.2.10/24"])])
    server = lab.host("srv", [(switch, "eth0", ["192.0.2.20/24"])])
    server.popen([sys.executable, "-c", "import socket,time;s=socket.socket();"
                  "s.bind(('192.0.2.20',8080));s.listen(8);time.sleep(120)"])
    env = {"PYTHONPATH": str(ROOT)}

    def check(timeout):
        done = checker.run([sys.executable, "-c", CHECK_IN_NAMESPACE, "192.0.2.20", 8080,
                            timeout], env=env, timeout=30)
        return done.stdout.strip().split(maxsplit=2)

    wait_for(lambda: check(1.0)[0] == "True", 5, message="the server never answered")
    switch.set_port(server, "eth0", False)         # SYNs now vanish without an answer
    started = time.monotonic()
    ok, duration, error = check(0.5)
    assert ok == "False" and error == "timeout after 0.5 s"
    assert 0.5 <= float(duration) < 1.0
    assert time.monotonic() - started < 10
    switch.set_port(server, "eth0", True)
    wait_for(lambda: check(1.0)[0] == "True", 5, message="the server did not come back")


# -- kept sockets: disconnected after a check, reused by the next (tcp.KeptSockets) ----------

def test_one_socket_serves_check_after_check_whatever_the_last_one_ended_in():
    """A refused connect, a healthy one, a timed-out one (the SYN unanswered: a listener
    whose accept queue is full drops it), and a healthy one again: each verdict is its own
    (no error left over from the previous connection), and no socket is made after the
    first."""
    from director.check import tcp

    kept = tcp.SOCKETS[socket.AF_INET]
    server = listener()
    port = server.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = closed.getsockname()[1]           # bound, never listening: refused
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)                              # an accept queue of one
    fillers = []
    try:
        healthy = TcpCheck(None, Target("127.0.0.1", port, 1.0))
        assert healthy.check().ok
        made = kept.made
        result = TcpCheck(None, Target("127.0.0.1", refused, 1.0)).check()
        assert not result.ok and result.error == "connect: Connection refused"
        assert healthy.check().ok
        filler = socket.socket()                # a real handshake fills the queue
        filler.settimeout(1)
        filler.connect(full.getsockname())
        fillers.append(filler)
        result = TcpCheck(None, Target("127.0.0.1", full.getsockname()[1], 0.3)).check()
        assert not result.ok and result.error == "timeout after 0.3 s"
        for _ in range(3):
            result = healthy.check()
            assert result.ok and result.error is None
        assert kept.made == made, "a check made a socket although one was kept"
    finally:
        for sock in (server, closed, full, *fillers):
            sock.close()


def test_kept_sockets_are_bounded_and_none_is_taken_while_the_poller_reads(monkeypatch):
    """More checks in flight than FREE_MAX: the surplus sockets are closed when they end.
    And while the poller hands out a batch of events, a check gets a new socket: an event of
    that batch may be a kept socket's, from before it was taken."""
    from director import hub
    from director.check import tcp

    monkeypatch.setattr(tcp, "FREE_MAX", 2)
    kept = tcp.SOCKETS[socket.AF_INET]
    kept.close()
    server = listener()
    port = server.getsockname()[1]
    results = []
    try:
        for _ in range(6):
            # done(result), or done(PASSED, duration) for a pass (checker.PASSED)
            TcpCheck(None, Target("127.0.0.1", port, 1.0)).start(
                lambda result, duration=None: results.append(result))
        deadline = time.monotonic() + 5
        while len(results) < 6:
            assert time.monotonic() < deadline, "checks did not finish"
            hub.sleep(0.01)
        assert all(result.ok for result in results)
        assert len(kept.free) == 2
        made = kept.made
        monkeypatch.setattr(tcp.POLLER, "reading", True)
        sock, registered = kept.take()
        assert not registered and kept.made == made + 1 and len(kept.free) == 2
        sock.close()
    finally:
        server.close()


def test_an_ipv6_socket_is_kept_too():
    from director.check import tcp

    server = socket.socket(socket.AF_INET6)
    server.bind(("::1", 0))
    server.listen(4)
    kept = tcp.SOCKETS[socket.AF_INET6]
    try:
        check = TcpCheck(None, Target("::1", server.getsockname()[1], 1.0))
        assert check.check().ok
        made = kept.made
        assert all(check.check().ok for _ in range(3))
        assert kept.made == made
    finally:
        server.close()
