"""The HTTP API of a running daemon (``-C``, loopback servers) under hostile input, over
raw sockets: malformed and mistyped JSON, unknown fields, huge and deeply nested bodies,
invalid UTF-8, bad methods, absurd query strings and request lines, header floods,
unauthenticated posts, slow clients (trickled headers, a declared body that never comes, a
silent connection) and a thousand event-stream subscribers connecting and leaving. Every bad
input is a clear 4xx (never a 500, never a hang) and counted by reason in
/api/v1/state.web.refused; /healthz keeps answering; the daemon's RSS stays bounded; its
log has no traceback. Bounded: about 15 s (the slow clients wait out the 10 s deadlines
side by side)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter

import pytest

from tests.functional.lab import wait_for
from tests.functional.test_web_daemon import TOKEN, Daemon, running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SUBSCRIBERS = 1000          # event streams opened and closed, BATCH at a time
BATCH = 50
RSS_GROWTH_MAX = 40 << 20   # bytes; measured growth is in the commit message
REPLY_DEADLINE = 20.0       # seconds any one answer may take (the slow ones take 10 s)
DRAIN = "/api/v1/real-servers/drain"


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None,
            length: int | None = None) -> bytes:
    head = {"Host": "127.0.0.1", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        head.setdefault("Content-Length", str(len(body) if length is None else length))
    lines = "".join(f"{key}: {value}\r\n" for key, value in head.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode("latin-1") + body


def exchange(port: int, data: bytes, trickle: float = 0.0) -> tuple[int, bytes]:
    """Send ``data`` (a byte at a time, ``trickle`` seconds apart, if asked), read the
    answer to its end; (status, body), status 0 when the server closed without one."""
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_DEADLINE) as sock:
        try:
            if trickle:
                for byte in data:
                    sock.sendall(bytes([byte]))
                    time.sleep(trickle)     # the client's pace, the point of the test
            else:
                sock.sendall(data)
        except OSError:                     # answered and closed before we were done
            pass
        deadline = time.monotonic() + REPLY_DEADLINE
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
    return (int(match.group(1)) if match else 0), reply.partition(b"\r\n\r\n")[2]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def daemon(tmp_path):
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        with running(Daemon(tmp_path, [server.getsockname()[1] for server in servers])) \
                as daemon:
            yield daemon
    finally:
        for server in servers:
            server.close()


def hostile_cases(daemon: Daemon) -> list[tuple[str, bytes, set[int], str]]:
    """(what, request, acceptable statuses, reason it is counted under)."""
    page = daemon.get("/")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    admin = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf,
             "Content-Type": "application/json"}
    virtual = "127.0.0.1:80/TCP"
    cases = []

    def post(what, body, expected, reason, path=DRAIN, headers=admin):
        cases.append((what, request("POST", path, body, headers), expected, reason))

    post("malformed JSON", b'{"virtual_server": ', {400}, "bad_request")
    for body in (b"[]", b'"x"', b"1", b"null", b"true", b'{"virtual_server": 1, '
                 b'"real_server": ["x"]}', b'{"virtual_server": null, "real_server": {}}'):
        post(f"wrong type {body[:20]!r}", body, {400}, "bad_request")
    post("unknown field", b'{"virtual_server": "%s", "real_server": "127.0.0.1:1", '
         b'"weight": 0}' % virtual.encode(), {400}, "bad_request")
    post("deep nesting", b"[" * 50_000, {400}, "bad_request")
    post("nested object", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, {400}, "bad_request")
    post("huge body", b'{"virtual_server": "' + b"x" * (1 << 20) + b'"}', {413},
         "too_large")
    post("invalid UTF-8", b'{"virtual_server": "\xff\xfe", "real_server": "\xc3"}', {400},
         "bad_request")
    post("NUL bytes", b'\x00' * 100, {400}, "bad_request")
    post("unknown server", b'{"virtual_server": "%s", "real_server": "%s"}'
         % (virtual.encode(), b"y" * 5000), {404}, "not_found")
    post("no token", b"{}", {401}, "unauthorized", headers={})
    post("wrong token", b"{}", {403}, "forbidden",
         headers={**admin, "Authorization": "Bearer nope"})
    post("no CSRF token", b"{}", {403}, "forbidden",
         headers={"Authorization": f"Bearer {TOKEN}"})
    post("cross-site", b"{}", {403}, "forbidden",
         headers={**admin, "Origin": "https://evil.example"})
    for method, path in (("PUT", "/api/v1/state"), ("DELETE", DRAIN), ("PATCH", "/"),
                         ("BREW", "/api/v1/state"), ("GET", "/api/v1/reload"),
                         ("POST", "/healthz")):
        cases.append((f"{method} {path}", request(method, path), {405}, "bad_method"))
    for query in ("since=abc", "since=-1", "since=1e999", "limit=0", "limit=" + "9" * 400,
                  "since=%ff%fe", "since=" + "1" * 5000):
        cases.append((f"events?{query[:30]}", request("GET", f"/api/v1/events?{query}"),
                      {400}, "bad_request"))
    for path in ("/api/v1/history?virtual_server=" + "z" * 7000, "/nowhere/%00%ff",
                 "/api/v1/" + "a/" * 2000, "/static/../../etc/passwd"):
        cases.append((f"GET {path[:30]}", request("GET", path), {404}, "not_found"))
    cases.append(("request line over 8 KiB", request("GET", "/?" + "q" * 9000), {414},
                  "too_large"))
    cases.append(("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\r\n\r\n",
                  {400}, "bad_request"))
    cases.append(("HTTP/9.9", b"GET / HTTP/9.9\r\n\r\n", {400}, "bad_request"))
    cases.append(("150 headers", request("GET", "/healthz", headers={
        f"X-Flood-{n}": "1" for n in range(150)}), {431}, "too_large"))
    cases.append(("40 KiB of headers", request("GET", "/healthz", headers={
        f"X-Big-{n}": "b" * 2000 for n in range(20)}), {431}, "too_large"))
    cases.append(("one 70 KiB header", request("GET", "/healthz", headers={
        "X-Long": "l" * 70_000}), {400, 431}, "bad_request|too_large"))
    for length in ("-1", "abc", "1" * 40):
        cases.append((f"Content-Length {length[:10]}", request(
            "POST", DRAIN, b"", {**admin, "Content-Length": length}),
            {400, 413}, "bad_request|too_large"))
    cases.append(("bad chunk", request("POST", DRAIN, b"zz\r\nabc\r\n0\r\n\r\n",
                                       {**admin, "Transfer-Encoding": "chunked"}),
                  {400}, "bad_request"))
    return cases


def slow_clients(daemon: Daemon, results: dict) -> list[threading.Thread]:
    """Three clients that never finish, side by side (each waits out a 10 s deadline)."""
    page = daemon.get("/")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    admin = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf,
             "Content-Type": "application/json"}

    def trickled():
        results["trickled headers"] = exchange(
            daemon.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 60,
            trickle=0.25)

    def missing_body():
        results["declared body missing"] = exchange(
            daemon.port, request("POST", DRAIN, b'{"virtual', admin, length=500))

    def silent():
        results["silent"] = exchange(daemon.port, b"")

    threads = [threading.Thread(target=target, daemon=True)
               for target in (trickled, missing_body, silent)]
    for thread in threads:
        thread.start()
    return threads


def open_stream(port: int) -> tuple[socket.socket, int]:
    """A subscriber: connected, its first frame (or its refusal) read; (socket, status)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = b""
    for _ in range(100):                      # bounded: a frame is a few recv at most
        chunk = sock.recv(4096)
        reply += chunk
        if not chunk or b"retry: 2000" in reply or b"event streams" in reply:
            break
    return sock, int(reply.split(b" ", 2)[1])


def test_hostile_requests_are_clear_4xx_counted_and_harmless(daemon):
    pid = daemon.proc.pid
    wait_for(lambda: all(r["last_check"] for r in daemon.reals().values()), 10,
             message=daemon.log)
    for _ in range(20):                        # warm up what a normal client exercises
        daemon.get("/api/v1/state"), daemon.get("/metrics"), daemon.get("/")
    rss_before = rss(pid)
    slow: dict = {}
    threads = slow_clients(daemon, slow)
    expected: Counter = Counter()
    wrong = []
    for what, data, statuses, reason in hostile_cases(daemon):
        status, body = exchange(daemon.port, data)
        if status not in statuses:
            wrong.append(f"{what}: {status} {body[:200]!r}")
        if "|" not in reason:
            expected[reason] += 1
        assert daemon.status("/healthz") == 200, (what, daemon.log()[-2000:])
    assert not wrong, "\n".join(wrong)

    # a thousand subscribers, BATCH at a time; then the cap: a few too many at once
    limit = daemon.get("/api/v1/state")["web"]["stream_limit"]
    for _ in range(SUBSCRIBERS // BATCH):
        batch = [open_stream(daemon.port) for _ in range(BATCH)]
        assert {status for _, status in batch} == {200}
        for sock, _ in batch:
            sock.close()
        wait_for(lambda: daemon.get("/api/v1/state")["web"]["streams"] == 0, 10,
                 message=daemon.log)
    batch = [open_stream(daemon.port) for _ in range(limit + 5)]
    try:
        statuses = Counter(status for _, status in batch)
        assert statuses == {200: limit, 503: 5}, statuses
        expected["too_many_streams"] += 5
    finally:
        for sock, _ in batch:
            sock.close()
    wait_for(lambda: daemon.get("/api/v1/state")["web"]["streams"] == 0, 10,
             message=daemon.log)

    for thread in threads:
        thread.join(REPLY_DEADLINE + 5)
    assert slow["trickled headers"][0] == 408, slow
    assert slow["declared body missing"][0] == 408, slow
    assert b"did not arrive" in slow["declared body missing"][1]
    assert slow["silent"] == (0, b""), slow
    expected["timeout"] += 3

    state = daemon.get("/api/v1/state")
    refused = state["web"]["refused"]
    short = {reason: (refused.get(reason, 0), count) for reason, count in expected.items()
             if refused.get(reason, 0) < count}
    assert not short, f"counted < sent: {short}; all: {refused}"
    assert state["web"]["connections"] <= state["web"]["connection_limit"]
    assert daemon.status("/healthz") == 200
    growth = rss(pid) - rss_before
    print(f"RSS {rss_before >> 20} MiB before, growth {growth / (1 << 20):.1f} MiB; "
          f"refused {refused}")
    assert growth < RSS_GROWTH_MAX, growth
    log = daemon.log()
    assert "Traceback" not in log and "web.error" not in log, log[-3000:]
    assert all(real["up"] for real in daemon.reals().values())
