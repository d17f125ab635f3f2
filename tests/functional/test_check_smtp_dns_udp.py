"""SMTP_CHECK, DNS_CHECK and UDP_CHECK against real servers on 127.0.0.1 port 0: aiosmtpd,
dnslib's DNSServer, UDP echo and silent sockets, scripted raw servers. Every server-side
wait has a deadline; the checks' own waits are their connect_timeout (short here)."""

from __future__ import annotations

import asyncio
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from director.check.checker import Target
from director.check.dns import DnsCheck
from director.check.smtp import SmtpCheck
from director.check.udp import FILLER, UdpCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for
from tests.functional.loopback import LoopbackServer

pytestmark = pytest.mark.timeout(60)

DNS_CHECK, SMTP_CHECK, UDP_CHECK = BLOCKS["DNS_CHECK"], BLOCKS["SMTP_CHECK"], BLOCKS["UDP_CHECK"]
SMTP_HOST = SMTP_CHECK.lookup("host").value
REPO = Path(__file__).resolve().parents[2]
DEADLINE = 10.0         # seconds any server-side wait may take
TIMEOUT = 0.3           # the checks' connect_timeout where we wait for it to expire


def target(port, timeout=2.0):
    return Target(host="127.0.0.1", port=port, connect_timeout=timeout,
                  virtual_server="vs", real_server=f"127.0.0.1:{port}")


def closed_port(kind=socket.SOCK_STREAM):
    """A port nobody listens on: bound for a moment to learn a free number, then closed."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SMTP ---------------------------------------------------------------------------------

class HeloRecorder:
    def __init__(self):
        self.helo = queue.Queue()

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.helo.put(hostname)
        return "250 mx.test"


@pytest.fixture
def smtp_server():
    """aiosmtpd's SMTP protocol on an asyncio loop in a thread; yields (port, handler)."""
    loop = asyncio.new_event_loop()
    handler = HeloRecorder()
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="mx.test", loop=loop), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1], handler
    finally:
        async def close():
            server.close()
            await asyncio.wait_for(server.wait_closed(), DEADLINE)

        asyncio.run_coroutine_threadsafe(close(), loop).result(DEADLINE)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(DEADLINE)
        assert not thread.is_alive()
        loop.close()


class Scripted(LoopbackServer):
    """A TCP server for one connection at a time that plays ``script``: bytes to send, or
    None to read one line from the client (what it read goes to ``heard``); then it waits
    for the client to close, or with ``hang_up`` closes at once."""

    def __init__(self, script, hang_up=False):
        super().__init__()
        self.script = script
        self.hang_up = hang_up
        self.heard = []

    def handle(self, conn):
        for step in self.script:
            if step is None:
                self.heard.append(conn.makefile("rb").readline())
            else:
                conn.sendall(step)
        if not self.hang_up:
            conn.recv(1)          # until the client closes (or the deadline)


def test_smtp_healthy_server(smtp_server):
    port, handler = smtp_server
    result = SmtpCheck(model_for(SMTP_CHECK)(), target(port)).check()
    assert result.ok, result.error
    assert handler.helo.get(timeout=DEADLINE) == "smtpchecker.keepalived.org"


def test_smtp_helo_name_is_sent(smtp_server):
    port, handler = smtp_server
    check = SmtpCheck(model_for(SMTP_CHECK)(helo_name="lb1.example.org"), target(port))
    assert check.check().ok
    assert handler.helo.get(timeout=DEADLINE) == "lb1.example.org"


def test_smtp_refusing_banner():
    with Scripted([b"554 go away\r\n"]) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert not result.ok
    assert result.error == "banner 554 go away"


def test_smtp_multiline_banner_fails_as_in_keepalived():
    with Scripted([b"220-mx.test ESMTP\r\n220 ready\r\n"]) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert not result.ok
    assert result.error.startswith("banner 220-mx.test ESMTP (a multi-line reply")


def test_smtp_unreadable_code_is_a_counted_reply_error():
    with Scripted([b"\xff\xfe garbage\r\n"]) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert not result.ok and result.reply_error == "bad_code", result


def test_smtp_endless_line_fails_after_64_kib_before_the_timeout():
    """keepalived would read an endless line for ever (each read re-arms its timer)."""
    started = time.monotonic()
    with Scripted([b"220" + b" x" * (1 << 20)]) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert result.error == "no end of line in 64 KiB waiting for the banner", result
    assert result.reply_error == "too_long" and time.monotonic() - started < 2.0


def test_smtp_helo_refused():
    with Scripted([b"220 mx.test\r\n", None, b"501 who are you\r\n"]) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert server.heard == [b"HELO smtpchecker.keepalived.org\r\n"]
    assert result.error == "HELO answered 501 who are you"


def test_smtp_any_line_after_quit_will_do():
    script = [b"220 mx.test\r\n", None, b"250 hi\r\n", None, b"500 what\r\n"]
    with Scripted(script) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert result.ok, result.error
    assert server.heard[1] == b"QUIT\r\n"


def test_smtp_closing_instead_of_answering_quit_fails():
    with Scripted([b"220 mx.test\r\n", None, b"250 hi\r\n", None], hang_up=True) as server:
        result = SmtpCheck(model_for(SMTP_CHECK)(), target(server.port)).check()
    assert result.error == "connection closed waiting for the QUIT reply"


def test_smtp_silent_server_fails_at_the_timeout():
    # listening but never accepting: the kernel completes the connection, nobody speaks
    with socket.create_server(("127.0.0.1", 0)) as listener:
        started = time.monotonic()
        result = SmtpCheck(model_for(SMTP_CHECK)(),
                           target(listener.getsockname()[1], TIMEOUT)).check()
        elapsed = time.monotonic() - started
    assert result.error == f"timeout after {TIMEOUT:g} s waiting for the banner"
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2


def test_smtp_closed_port():
    result = SmtpCheck(model_for(SMTP_CHECK)(), target(closed_port())).check()
    assert not result.ok
    assert result.error == "connect: Connection refused"


def test_smtp_host_blocks_must_all_pass(smtp_server):
    port, _ = smtp_server
    host = model_for(SMTP_HOST)
    good = model_for(SMTP_CHECK)(hosts=(host(connect_ip="127.0.0.1", connect_port=port),))
    assert SmtpCheck(good, target(closed_port())).check().ok    # own address not checked
    dead = closed_port()
    mixed = model_for(SMTP_CHECK)(hosts=(host(connect_ip="127.0.0.1", connect_port=port),
                                         host(connect_ip="127.0.0.1", connect_port=dead)))
    result = SmtpCheck(mixed, target(port)).check()
    assert result.error == f"127.0.0.1:{dead}: connect: Connection refused"


# -- DNS ----------------------------------------------------------------------------------

class ExampleResolver(BaseResolver):
    """A for www.example.test; the name exists with no other type (NODATA); else NXDOMAIN."""

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname)
        if name == "www.example.test.":
            if request.q.qtype == QTYPE.A:
                reply.add_answer(RR(name, QTYPE.A, rdata=A("192.0.2.80"), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def dns_server():
    server = DNSServer(ExampleResolver(), address="127.0.0.1", port=0,
                       logger=DNSLogger(logf=lambda text: None))
    server.start_thread()
    try:
        yield server
    finally:
        server.stop()
        server.server.server_close()
        server.thread.join(DEADLINE)


def dns(port, qtype, name, timeout=2.0):
    return DnsCheck(model_for(DNS_CHECK)(type=qtype, name=name), target(port, timeout))


def test_dns_answer(dns_server):
    result = dns(dns_server.server.server_address[1], "A", "www.example.test").check()
    assert result.ok, result.error
    assert result.detail == {"rcode": "NOERROR", "answers": 1}


def test_dns_nxdomain(dns_server):
    result = dns(dns_server.server.server_address[1], "A", "missing.example.test").check()
    assert not result.ok
    assert result.error == "rcode NXDOMAIN for A missing.example.test"


def test_dns_noerror_without_answers_passes_as_in_keepalived(dns_server):
    result = dns(dns_server.server.server_address[1], "AAAA", "www.example.test.").check()
    assert result.ok and result.detail == {"rcode": "NOERROR", "answers": 0}


def test_dns_stopped_server_times_out(dns_server):
    port = dns_server.server.server_address[1]
    dns_server.stop()                # stops serving; the socket stays bound, unread
    started = time.monotonic()
    result = dns(port, "A", "www.example.test", TIMEOUT).check()
    assert result.error == (f"timeout after {TIMEOUT:g} s waiting for the answer to "
                            "A www.example.test")
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 2


def test_dns_closed_port_fails_at_once():
    started = time.monotonic()
    result = dns(closed_port(socket.SOCK_DGRAM), "A", "www.example.test").check()
    assert result.error == "read: Connection refused"
    assert time.monotonic() - started < 1.5


def test_dns_skips_strangers_until_its_answer():
    """Replies with another id, and a query, are skipped; the real answer still counts."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(DEADLINE)
        results = queue.Queue()
        check = dns(server.getsockname()[1], "A", "www.example.test")
        thread = threading.Thread(target=lambda: results.put(check.check()), daemon=True)
        thread.start()
        data, client = server.recvfrom(512)
        request = DNSRecord.parse(data)
        wrong = request.reply()
        wrong.header.id = (request.header.id + 1) & 0xFFFF
        wrong.header.rcode = RCODE.SERVFAIL
        server.sendto(wrong.pack(), client)
        server.sendto(data, client)                         # QR clear: not a response
        server.sendto(b"\0" * 5, client)                    # too short
        server.sendto(request.reply().pack(), client)
        result = results.get(timeout=DEADLINE)
        thread.join(DEADLINE)
    assert result.ok, result.error


def test_dns_malformed_replies_without_an_answer_are_counted():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(DEADLINE)
        results = queue.Queue()
        check = dns(server.getsockname()[1], "A", "www.example.test", timeout=0.5)
        thread = threading.Thread(target=lambda: results.put(check.check()), daemon=True)
        thread.start()
        _, client = server.recvfrom(512)
        server.sendto(b"\0" * 5, client)                    # too short
        result = results.get(timeout=DEADLINE)
        thread.join(DEADLINE)
    assert result.error.endswith("(1 malformed replies)") and result.reply_error == "malformed"


# -- UDP ----------------------------------------------------------------------------------

class Echo(LoopbackServer):
    """UDP echo on 127.0.0.1:0 in a thread; what it received goes to ``received``."""

    def __init__(self):
        super().__init__(socket.SOCK_DGRAM)
        self.received = queue.Queue()

    def handle_datagram(self, data, peer):
        self.received.put(data)
        self.sock.sendto(data, peer)


def udp(port, timeout=2.0, **config):
    return UdpCheck(model_for(UDP_CHECK)(**config), target(port, timeout))


def test_udp_default_payload_is_keepalived_s_filler():
    with Echo() as echo:
        result = udp(echo.port).check()
        assert echo.received.get(timeout=DEADLINE) == FILLER
    assert result.ok and result.detail["reply"] is True


@pytest.mark.parametrize("pattern", ["0102XX", "x1x2", "01"])
def test_udp_reply_matching_the_pattern(pattern):
    with Echo() as echo:
        result = udp(echo.port, payload="010203", require_reply=pattern).check()
    assert result.ok, result.error


def test_udp_reply_not_matching_the_pattern():
    with Echo() as echo:
        result = udp(echo.port, payload="010203", require_reply="01X3").check()
    assert result.error == "reply byte 1 is 02, expected x3"


def test_udp_reply_too_long_for_keepalived_s_default_maximum():
    with Echo() as echo:
        result = udp(echo.port, payload="ab" * 300, require_reply="ab").check()
        assert udp(echo.port, payload="ab" * 300, require_reply=True).check().ok
    assert result.error == "reply of 300 bytes, outside 0..255"


@pytest.mark.parametrize("require", [None, True, "01"])
def test_udp_port_unreachable_fails(require):
    result = udp(closed_port(socket.SOCK_DGRAM), require_reply=require).check()
    assert result.error == "ICMP port unreachable"


def test_udp_silence_is_success_without_require_reply():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        started = time.monotonic()
        result = udp(sink.getsockname()[1], TIMEOUT).check()
        elapsed = time.monotonic() - started
    assert result.ok and result.detail["reply"] is False
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 2


def test_udp_silence_fails_with_require_reply():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        result = udp(sink.getsockname()[1], TIMEOUT, require_reply=True).check()
    assert result.error == f"no reply within {TIMEOUT:g} s"


# -- under gevent, as the daemon runs them ------------------------------------------------

GEVENT_SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import socket, time, gevent
from gevent.server import DatagramServer, StreamServer
from director.check.checker import Target
from director.check.dns import DnsCheck
from director.check.smtp import SmtpCheck
from director.check.udp import UdpCheck
from director.config.blocks.checkers import BLOCKS
from director.config.schema import model_for

DNS_CHECK, SMTP_CHECK, UDP_CHECK = BLOCKS["DNS_CHECK"], BLOCKS["SMTP_CHECK"], BLOCKS["UDP_CHECK"]

def smtp(sock, address):
    sock.sendall(b"220 mx\r\n"); sock.makefile("rb").readline()
    sock.sendall(b"250 hi\r\n"); sock.makefile("rb").readline(); sock.sendall(b"221 bye\r\n")

smtp_server = StreamServer(("127.0.0.1", 0), smtp); smtp_server.start()
echo = DatagramServer(("127.0.0.1", 0), lambda data, peer: echo.sendto(data, peer)); echo.start()
silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); silent.bind(("127.0.0.1", 0))
closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); closed.bind(("127.0.0.1", 0))
closed_port = closed.getsockname()[1]; closed.close()

def t(port, timeout=1.0):
    return Target(host="127.0.0.1", port=port, connect_timeout=timeout)

checks = [
    SmtpCheck(model_for(SMTP_CHECK)(), t(smtp_server.server_port)),
    UdpCheck(model_for(UDP_CHECK)(require_reply="XX"), t(echo.address[1])),
    UdpCheck(model_for(UDP_CHECK)(), t(closed_port)),
    DnsCheck(model_for(DNS_CHECK)(), t(silent.getsockname()[1])),
    UdpCheck(model_for(UDP_CHECK)(require_reply=True), t(silent.getsockname()[1])),
    UdpCheck(model_for(UDP_CHECK)(), t(silent.getsockname()[1])),
]
started = time.monotonic()
jobs = [gevent.spawn(c.check) for c in checks]
gevent.joinall(jobs, timeout=10)
elapsed = time.monotonic() - started
for job in jobs:
    print(job.value.ok, job.value.error)
print("elapsed", round(elapsed, 1))
"""


def test_checks_are_cooperative_under_gevent():
    """Monkey-patched sockets: the three 1 s timeouts overlap, ICMP is still seen."""
    done = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "True None",
        "True None",
        "False ICMP port unreachable",
        "False timeout after 1 s waiting for the answer to SOA .",
        "False no reply within 1 s",
        "True None",
    ]
    assert float(lines[6].split()[1]) < 2.5      # not 3 s: the waits ran side by side
