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
