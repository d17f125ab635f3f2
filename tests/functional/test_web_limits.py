"""The web face cannot starve the checkers of descriptors: a daemon (``-C``) with a low
descriptor limit checks real HTTP servers on loopback while thousands of web connections
sit idle or stop half-way through their headers. Before director/webserver.py the web
server accepted until the process ran out of descriptors and the checkers' own sockets
failed ("Too many open files"): the healthy servers went DOWN (this test failed so)."""

from __future__ import annotations

import errno
import http.server
import resource
import socket
import threading

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_web_daemon import Daemon, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

NOFILE = 256            # the daemon's soft and hard RLIMIT_NOFILE
FLOOD = 2000            # web connections opened at once
HOLD = 12.0             # seconds the flood stays (past webserver.HEADER_TIMEOUT: 10 s)
SERVERS = 4


class Quiet(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def http_config(ports: list[int]) -> str:
    reals = "".join(f"""
    real_server 127.0.0.1 {port} {{
        HTTP_GET {{
            url {{
                path /
                status_code 200
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.3
        }}
    }}""" for port in ports)
    return f"""global_defs {{
    router_id WEB_LIMITS
}}
virtual_server 127.0.0.1 80 {{
    delay_loop 0.5
    protocol TCP{reals}
}}
"""


def low_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def flood(port: int, count: int, socks: list[socket.socket]) -> None:
    """``count`` connections into ``socks`` (the caller closes them), opened without
    waiting (those past the listen backlog stay in SYN-SENT); every other one sends a
    request line and a header, never the blank line that ends them."""
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        assert code in (0, errno.EINPROGRESS), errno.errorcode.get(code, code)
        socks.append(sock)
    for number, sock in enumerate(socks):
        if number % 2:
            try:
                sock.send(b"GET /api/v1/state HTTP/1.1\r\nHost: x\r\n")
            except OSError:                 # not connected yet (in the backlog's wait)
                pass


@pytest.fixture
def http_servers():
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
               for _ in range(SERVERS)]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
    yield [server.server_address[1] for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_web_flood_at_the_descriptor_limit_takes_no_real_server_down(tmp_path,
                                                                      http_servers):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 200:
        pytest.skip(f"this process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))
    daemon = Daemon(tmp_path, [])
    daemon.config.write_text(http_config(http_servers))
    daemon.preexec = low_limit
    with running(daemon):
        socks: list[socket.socket] = []
        try:
            wait_for(lambda: all(r["up"] for r in daemon.reals().values()), 10,
                     message=daemon.log)
            before = len(daemon.get("/api/v1/events"))
            flood(daemon.port, FLOOD, socks)
            # The flood holds the web face HOLD seconds; the checks go on (watched in the
            # log: the web face is busy), and the wait ends early if a server goes down.
            try:
                wait_for(lambda: downs(daemon), HOLD, interval=0.2)
            except AssertionError:
                pass
            assert not downs(daemon), daemon.log()[-3000:]
        finally:
            for sock in socks:
                sock.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        wait_for(lambda: daemon.status("/healthz") == 200, 30, message=daemon.log)
        events = daemon.get("/api/v1/events")[before:]
        assert not [e for e in events if e["kind"] == "real_server"], events
        assert all(r["up"] for r in daemon.reals().values())
        web = daemon.get("/api/v1/state")["web"]
        print(f"web after the flood: {web}")
        assert web["connection_limit"] <= NOFILE - 128, web
        assert web["refused"].get("too_many_connections", 0) >= 1, web
        assert web["refused"].get("timeout", 0) >= 1, web      # the silent ones, cut at 10 s
        assert "Too many open files" not in daemon.log()


def downs(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if "check.real_server" in line and "state=down" in line]
