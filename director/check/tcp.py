"""TCP_CHECK: a connection that completes is a healthy server.

The one checker that runs by the ten thousand, so it runs on the event loop itself: a
non-blocking connect, its socket in the epoll set of poller.py and a callback at the end; no
greenlet, no libev watcher, no
gevent.Timeout, no sleep per check (what made a naive gevent loop four times dearer than
HAProxy here: ../shared/notes/measured-here.md). It uses the C socket object directly, not
gevent's wrapper: nothing here ever waits on it, and its connect_ex returns EINPROGRESS
instead of raising. Timeouts are not a timer each but one sweep (poller.py).
The connection is closed with a reset (SO_LINGER 0), as HAProxy does, so that ten thousand
checks a second leave no TIME_WAIT; and like HAProxy it turns TCP_QUICKACK off, so that the
reset leaves before our final ACK: a SYN-ACK is the server's answer, and the server is
spared accepting a connection that is about to die (on loopback, that work is ours).
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
import struct
import time
from typing import Any, Callable

from .checker import CheckResult, Target
from . import poller
from .poller import EPOLLFAIL, EPOLLOUT, POLLER
from .sockets import prepare

LINGER_RESET = struct.pack("ii", 1, 0)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
SOL_SOCKET, SO_ERROR, SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
IPPROTO_TCP = socket.IPPROTO_TCP
STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_monotonic = time.monotonic
EINPROGRESS = errno.EINPROGRESS
_forget = POLLER.waiting.pop


class _Attempt:
    """One connect in flight, waited on in the poller's epoll set; ``live`` until it ends."""

    __slots__ = ("sock", "fd", "started", "deadline", "timeout", "done", "live")

    def __init__(self, sock, started, timeout, done):
        self.sock = sock
        self.fd = sock.fileno()
        self.started = started
        self.timeout = timeout
        self.deadline = started + timeout
        self.done = done
        self.live = True

    def finish(self, error: str | None) -> None:
        """Once only: the socket's event and the sweep may both come in one loop turn."""
        if not self.live:
            return
        self.live = False
        _forget(self.fd, None)              # POLLER.forget, without the call
        self.sock.close()
        self.sock = None
        elapsed = _monotonic() - self.started
        self.done(CheckResult.passed(elapsed) if error is None
                  else CheckResult(False, elapsed, error))

    def on_event(self, events: int) -> None:
        if events & EPOLLFAIL:
            code = self.sock.getsockopt(SOL_SOCKET, SO_ERROR)
            self.finish(f"connect: {os.strerror(code)}" if code else None)
        else:                       # writable, no error: connected (no getsockopt needed)
            self.finish(None)

    def expire(self) -> None:
        self.finish(f"timeout after {self.timeout:g} s")


class TcpCheck:
    kind = "TCP_CHECK"

    def __init__(self, config: Any, target: Target) -> None:
        self.config = config
        self.target = target
        self.family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.address = (target.host, target.port or 0)
        # fwmark, bind_if or a source address to apply (sockets.prepare) before connecting
        self.prepared = bool(target.fwmark or target.bind_if or target.bind_ip
                             or target.bind_port)

    # The scheduler prefers start() (callback) to check() (greenlet) when a checker has both.
    def start(self, done: Callable[[CheckResult], None]) -> None:
        started = _monotonic()
        sock = None
        try:
            sock = _socket.socket(self.family, STREAM)
            sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
            sock.setsockopt(IPPROTO_TCP, TCP_QUICKACK, 0)
            if self.prepared:
                prepare(sock, self.target, self.family)
        except OSError as exc:
            if sock is not None:
                sock.close()
            done(CheckResult(False, _monotonic() - started, f"socket: {exc.strerror or exc}"))
            return
        timeout = self.target.connect_timeout
        attempt = _Attempt(sock, started, timeout, done)
        code = sock.connect_ex(self.address)
        if code == EINPROGRESS:
            POLLER.want(attempt.fd, EPOLLOUT, attempt)
            POLLER.expire_after(timeout, attempt)
        elif code == 0:
            attempt.finish(None)
        else:
            attempt.finish(f"connect: {os.strerror(code)}")

    def check(self) -> CheckResult:
        """The same check for a caller that wants to wait (tests, tools)."""
        return poller.wait(self.start, self.target.connect_timeout + 1)
