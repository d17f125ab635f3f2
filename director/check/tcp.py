"""TCP_CHECK: a connection that completes is a healthy server.

The one checker that runs by the ten thousand, so it runs on the event loop itself: a
non-blocking connect, a write watcher and a callback at the end; no greenlet, no
gevent.Timeout, no sleep per check (what made a naive gevent loop four times dearer than
HAProxy here: ../shared/notes/measured-here.md). It uses the C socket object directly, not
gevent's wrapper: nothing here ever waits on it, and its connect_ex returns EINPROGRESS
instead of raising. Timeouts are not a timer each but one sweep over a heap of deadlines.
The connection is closed with a reset (SO_LINGER 0), as HAProxy does, so that ten thousand
checks a second leave no TIME_WAIT; and like HAProxy it turns TCP_QUICKACK off, so that the
reset leaves before our final ACK: a SYN-ACK is the server's answer, and the server is
spared accepting a connection that is about to die (on loopback, that work is ours).
"""

from __future__ import annotations

import _socket
import errno
import heapq
import itertools
import os
import socket
import struct
import time
from typing import Any, Callable

from .. import hub
from .checker import CheckResult, Target
from .sockets import prepare

LINGER_RESET = struct.pack("ii", 1, 0)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
SWEEP_PERIOD = 0.02          # how late a timeout may be noticed


class _Attempt:
    __slots__ = ("sock", "started", "deadline", "timeout", "done", "watcher")

    def __init__(self, sock, started, timeout, done):
        self.sock = sock
        self.started = started
        self.timeout = timeout
        self.deadline = started + timeout
        self.done = done
        self.watcher = None

    def finish(self, result_error: str | None) -> None:
        """Once only: the watcher and the sweep may both fire in one loop turn."""
        if self.sock is None:
            return
        watcher = self.watcher
        if watcher is not None:
            watcher.stop()
            watcher.close()
            self.watcher = None
        self.sock.close()
        self.sock = None
        elapsed = time.monotonic() - self.started
        self.done(CheckResult(result_error is None, elapsed, result_error))

    def writable(self) -> None:
        if self.sock is None:
            return
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.finish(f"connect: {os.strerror(code)}" if code else None)


class _Timeouts:
    """Deadlines of the attempts in flight, swept every SWEEP_PERIOD while any remain."""

    def __init__(self) -> None:
        self.heap: list = []
        self.order = itertools.count()
        self.sweeping = False

    def add(self, attempt: _Attempt) -> None:
        heapq.heappush(self.heap, (attempt.deadline, next(self.order), attempt))
        if not self.sweeping:
            self.sweeping = True
            hub.call_later(SWEEP_PERIOD, self.sweep)

    def sweep(self) -> None:
        now = time.monotonic()
        heap = self.heap
        while heap and (heap[0][2].sock is None or heap[0][0] <= now):
            _, _, attempt = heapq.heappop(heap)
            if attempt.sock is not None:
                attempt.finish(f"timeout after {attempt.timeout:g} s")
        if heap:
            hub.call_later(SWEEP_PERIOD, self.sweep)
        else:
            self.sweeping = False


_TIMEOUTS = _Timeouts()


class TcpCheck:
    kind = "TCP_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.config = config
        self.target = target
        self.family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.address = (target.host, target.port or 0)

    # The scheduler prefers start() (callback) to check() (greenlet) when a checker has both.
    def start(self, done: Callable[[CheckResult], None]) -> None:
        started = time.monotonic()
        try:
            sock = self._socket()
        except OSError as exc:
            done(CheckResult(False, time.monotonic() - started,
                             f"socket: {exc.strerror or exc}"))
            return
        attempt = _Attempt(sock, started, self.target.connect_timeout, done)
        code = sock.connect_ex(self.address)
        if code == 0:
            attempt.finish(None)
        elif code != errno.EINPROGRESS:
            attempt.finish(f"connect: {os.strerror(code)}")
        else:
            attempt.watcher = hub.when_writable(sock.fileno(), attempt.writable)
            _TIMEOUTS.add(attempt)

    def _socket(self):
        sock = _socket.socket(self.family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
            prepare(sock, self.target, self.family)
        except OSError:
            sock.close()
            raise
        return sock

    def check(self) -> CheckResult:
        """The same check for a caller that wants to wait (tests, tools)."""
        box = hub.Event()
        results: list[CheckResult] = []

        def done(result: CheckResult) -> None:
            results.append(result)
            box.set()

        self.start(done)
        box.wait(self.target.connect_timeout + 1)
        return results[0] if results else CheckResult(False, self.target.connect_timeout,
                                                      "no answer from the loop")
