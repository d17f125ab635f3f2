"""TCP_CHECK: a connection that completes is a healthy server.

The one checker that runs by the ten thousand, so it runs on the event loop itself: a
non-blocking connect, a write watcher and a timer, and a callback at the end; no greenlet, no
gevent.Timeout, no sleep per check (what made a naive gevent loop four times dearer than
HAProxy here: ../shared/notes/measured-here.md). The connection is closed with a reset
(SO_LINGER 0), as HAProxy does, so that ten thousand checks a second leave no TIME_WAIT.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from typing import Any, Callable

from .. import hub
from .base import CheckResult, Target

LINGER_RESET = struct.pack("ii", 1, 0)
SO_MARK = getattr(socket, "SO_MARK", 36)


class TcpCheck:
    kind = "TCP_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.config = config
        self.target = target
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.family = family
        self.address = (target.host, target.port or 0)

    # The scheduler prefers start() (callback) to check() (greenlet) when a checker has both.
    def start(self, done: Callable[[CheckResult], None]) -> None:
        started = time.monotonic()
        try:
            sock = self._socket()
            code = sock.connect_ex(self.address)
        except OSError as exc:
            done(CheckResult(False, time.monotonic() - started, f"connect: {exc.strerror}"))
            return
        if code == 0:
            self._finish(sock, started, None, None, None, done)
            return
        if code != errno.EINPROGRESS:
            sock.close()
            done(CheckResult(False, time.monotonic() - started,
                             f"connect: {os.strerror(code)}"))
            return
        handles: list = []

        def writable() -> None:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self._finish(sock, started, error or None, handles, None, done)

        def expired() -> None:
            self._finish(sock, started, None, handles,
                         f"timeout after {self.target.connect_timeout:g} s", done)

        handles.append(hub.when_writable(sock.fileno(), writable))
        handles.append(hub.call_later(self.target.connect_timeout, expired))

    def _socket(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            target = self.target
            if target.fwmark:
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, target.fwmark)
            if target.bind_if:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                target.bind_if.encode())
            if target.bind_ip or target.bind_port:
                sock.bind((target.bind_ip or ("::" if self.family == socket.AF_INET6
                                              else "0.0.0.0"), target.bind_port or 0))
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _finish(sock, started, error_code, handles, timeout_text, done) -> None:
        if handles is not None:
            if not handles:              # both callbacks fired in one loop turn: first wins
                return
            for handle in handles:
                handle.cancel()
            handles.clear()
        sock.close()
        elapsed = time.monotonic() - started
        if timeout_text:
            done(CheckResult(False, elapsed, timeout_text))
        elif error_code:
            done(CheckResult(False, elapsed, f"connect: {os.strerror(error_code)}"))
        else:
            done(CheckResult(True, elapsed))

    def check(self) -> CheckResult:
        """The same check for a caller that wants to wait (tests, the scheduler's fallback)."""
        box = hub.Event()
        results: list[CheckResult] = []

        def done(result: CheckResult) -> None:
            results.append(result)
            box.set()

        self.start(done)
        box.wait(self.target.connect_timeout + 1)
        return results[0] if results else CheckResult(False, self.target.connect_timeout,
                                                      "no answer from the loop")
