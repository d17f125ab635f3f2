"""TCP_CHECK: a connection that completes is a healthy server.

The one checker that runs by the ten thousand, so it runs on the event loop itself: a
non-blocking connect, its socket in the epoll set of poller.py and a callback at the end; no
greenlet, no libev watcher, no
gevent.Timeout, no sleep per check (what made a naive gevent loop four times dearer than
HAProxy here: ../shared/notes/measured-here.md). It uses the C socket object directly, not
gevent's wrapper: nothing here ever waits on it, and its connect_ex returns EINPROGRESS
instead of raising. Timeouts are not a timer each but one sweep (poller.py).
The connection is ended with a reset, as HAProxy does, so that ten thousand checks a second
leave no TIME_WAIT; and like HAProxy it turns TCP_QUICKACK off, so that the reset leaves
before our final ACK: a SYN-ACK is the server's answer, and the server is spared accepting a
connection that is about to die (on loopback, that work is ours).

A socket is not closed after its check but disconnected (``connect()`` to AF_UNSPEC) and kept
for the next one (KeptSockets): the kernel aborts the connection exactly as a close with
SO_LINGER 0 does (that close calls the same tcp_disconnect), the same reset on the wire or
none for a SYN still unanswered, and the next connect takes a fresh source port. What it
saves is the socket's creation and teardown, its file and its epoll registration: per check
two system calls (connect, disconnect) where HAProxy makes eight, and 15.9 us of CPU where
socket/setsockopt x2/connect/epoll_ctl/close took 37.0 (the kernel's part 12.9 us against
26.2; bench/check_tcp_syscalls.py, docs/BENCHMARKS.md "Issue 17: CPU per check, the system
calls"). Sockets kept and in flight never outnumber the checks once in flight together (one
is made only when none is kept), so webserver.fd_reserve's one per checker still holds.

The disconnect resets TCP_QUICKACK; a kept socket has TCP_DEFER_ACCEPT set instead, once: on
a connecting socket it takes the kernel down the same branch as QUICKACK off
(tcp_rcv_synsent_state_process delays the ACK of the SYN-ACK when either is set), and it
outlives the disconnect, so there is no setsockopt per check (tests/functional/
test_check_tcp.py checks that the server is spared the accept, check after check). Sockets
with a fwmark, bind_if or source address are made and closed per check as before (their
set-up is part of the socket).
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
import struct
import time
from typing import Any, Callable

from .checker import PASSED, CheckResult, Target
from . import poller
from .poller import EPOLLET, EPOLLFAIL, EPOLLOUT, POLLER
from .sockets import prepare

try:                                    # the disconnect: libc's connect() with AF_UNSPEC
    import ctypes

    # PyDLL, no argtypes: the call keeps the GIL (it never blocks) and converts the int
    # and the bytes itself; 2.4 us a call here against 4.5 with CDLL, use_errno, argtypes.
    _libc_connect = ctypes.PyDLL(None).connect
except (ImportError, OSError, AttributeError):  # no ctypes or no libc: close every socket
    _libc_connect = None
AF_UNSPEC_ADDRESS = bytes(16)           # struct sockaddr, sa_family 0 (AF_UNSPEC)

LINGER_RESET = struct.pack("ii", 1, 0)
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", 9)
SOL_SOCKET, SO_ERROR, SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
IPPROTO_TCP = socket.IPPROTO_TCP
STREAM = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
# Edge-triggered: a kept socket stays in the epoll set between checks, where a disconnected
# socket reads as hung up; level-triggered it would be reported on every poll.
EVENTS = EPOLLOUT | EPOLLET
FREE_MAX = 256                          # disconnected sockets kept per family
_monotonic = time.monotonic
EINPROGRESS = errno.EINPROGRESS
_waiting = POLLER.waiting
_forget = _waiting.pop


class KeptSockets:
    """Disconnected TCP sockets of one family, already in the poller's epoll set, kept for
    the next check (at most FREE_MAX: beyond that, closed). TCP_CHECK's have SO_LINGER 0
    set (``linger_reset``: a close is a reset too); HTTP_GET's not (http.py: a close after a
    failure is the plain close it always was). TCP_CHECK's _Attempt.finish disconnects its
    socket and puts it back here inline; HTTP_GET calls give_back."""

    def __init__(self, family: int, linger_reset: bool = True) -> None:
        self.family = family
        self.linger_reset = linger_reset
        self.free: list[Any] = []
        self.made = 0                   # sockets created (the tests read it)

    def take(self) -> tuple[Any, bool]:
        """(socket, already in the epoll set). A kept socket is never handed out while the
        poller reads a batch of events: one of that batch may be this socket's from its time
        as a free one, and must not reach the check that takes it over."""
        if self.free and not POLLER.reading:
            return self.free.pop(), True
        sock = _socket.socket(self.family, STREAM)
        self.made += 1
        try:
            if self.linger_reset:
                sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
            sock.setsockopt(IPPROTO_TCP, TCP_DEFER_ACCEPT, 1)    # kept: no ACK of SYN-ACK
        except OSError:
            sock.close()
            raise
        return sock, False

    def give_back(self, sock: Any, fd: int) -> None:
        """After the check: abort the connection (a reset if it got as far as a SYN-ACK) and
        keep the socket, or close it if the disconnect fails or enough are kept."""
        if (_libc_connect is not None and len(self.free) < FREE_MAX
                and _libc_connect(fd, AF_UNSPEC_ADDRESS, 16) == 0):
            self.free.append(sock)
        else:
            sock.close()                # (SO_LINGER 0: the same reset); leaves the epoll set

    def close(self) -> None:
        while self.free:
            self.free.pop().close()


SOCKETS = {socket.AF_INET: KeptSockets(socket.AF_INET),
           socket.AF_INET6: KeptSockets(socket.AF_INET6)}


class _Attempt:
    """One connect in flight, waited on in the poller's epoll set; ``live`` until it ends."""

    __slots__ = ("sock", "fd", "started", "deadline", "timeout", "done", "live", "keep")

    def __init__(self, sock, started, timeout, done, keep):
        self.sock = sock
        self.fd = sock.fileno()
        self.started = started
        self.timeout = timeout
        self.deadline = started + timeout
        self.done = done
        self.live = True
        self.keep = keep                # the KeptSockets to give it back to, or None

    def finish(self, error: str | None) -> None:
        """Once only: the socket's event and the sweep may both come in one loop turn."""
        if not self.live:
            return
        self.live = False
        fd, sock, keep = self.fd, self.sock, self.keep
        _forget(fd, None)                   # POLLER.forget, without the call
        # Abort the connection (a reset if it got as far as a SYN-ACK) and keep the socket
        # for the next check, or close it if the disconnect fails or enough are kept.
        if keep is not None and _libc_connect is not None and len(keep.free) < FREE_MAX \
                and _libc_connect(fd, AF_UNSPEC_ADDRESS, 16) == 0:
            keep.free.append(sock)
        else:
            sock.close()                    # SO_LINGER 0: the same reset; leaves the epoll set
        self.sock = None
        elapsed = _monotonic() - self.started
        if error is None:
            self.done(PASSED, elapsed)      # no CheckResult per pass (checker.PASSED)
        else:
            self.done(CheckResult(False, elapsed, error))

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
        self.sockets = None if self.prepared else SOCKETS[self.family]
        self.timeout = target.connect_timeout

    # The scheduler prefers start() (callback) to check() (greenlet) when a checker has both.
    def start(self, done: Callable[[CheckResult], None]) -> None:
        started = _monotonic()
        sockets = self.sockets
        if sockets is not None and sockets.free and not POLLER.reading:
            sock, registered = sockets.free.pop(), True     # KeptSockets.take(), inlined
        else:
            sock = None
            try:
                if sockets is not None:
                    sock, registered = sockets.take()
                else:
                    registered = False
                    sock = _socket.socket(self.family, STREAM)
                    sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
                    sock.setsockopt(IPPROTO_TCP, TCP_QUICKACK, 0)
                    prepare(sock, self.target, self.family)
            except OSError as exc:
                if sock is not None:
                    sock.close()
                done(CheckResult(False, _monotonic() - started,
                                 f"socket: {exc.strerror or exc}"))
                return
        timeout = self.timeout
        attempt = _Attempt(sock, started, timeout, done, sockets)
        code = sock.connect_ex(self.address)
        if code == EINPROGRESS:
            if registered:
                _waiting[attempt.fd] = attempt
            else:
                POLLER.want(attempt.fd, EVENTS, attempt)
            POLLER.expire_after(timeout, attempt)
        elif code == 0:
            attempt.finish(None)
        else:
            attempt.finish(f"connect: {os.strerror(code)}")

    def check(self) -> CheckResult:
        """The same check for a caller that wants to wait (tests, tools)."""
        return poller.wait(self.start, self.target.connect_timeout + 1)
