"""The sockets of the checks that run on the loop (TCP_CHECK, HTTP_GET), waited on together.

Ten thousand checks a second each waited for one socket. A libev watcher per socket cost a
watcher object, its start, stop and close, and a trip through gevent's callback machinery per
event (with cProfile, about a fifth of a TCP check's Python). Here every such socket joins one
epoll set, whose own descriptor is the only thing the loop watches: one loop callback reads
every socket that is ready (``epoll.poll(0)``) and hands each to its attempt. Per check that
is one ``epoll_ctl`` (closing a socket takes it out of the set: no second call), and the
connect's result comes from the event bits (EPOLLERR asks SO_ERROR why; a connect that
succeeded needs no getsockopt).

Deadlines are not a timer each either: attempts wait in one FIFO per timeout value (a
check's deadline is its start plus its connect_timeout, so within one value the FIFO is in
deadline order), swept every SWEEP_PERIOD while any remain.

An attempt is any object with ``on_event(events)``, ``expire()``, ``deadline`` and ``live``;
``on_event`` and ``expire`` run in the loop and must not block.
"""

from __future__ import annotations

import logging
import select
import time
from collections import deque
from typing import Any

from .. import hub
from ..log import event
from .checker import PASSED, CheckResult

log = logging.getLogger("director.check")

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLET = select.EPOLLET
EPOLLFAIL = select.EPOLLERR | select.EPOLLHUP
SWEEP_PERIOD = 0.02          # how late a timeout may be noticed
BATCH_EVENTS = 1024          # events read by one epoll.poll()
MAX_POLLS = 64               # polls per loop callback: 65,536 sockets, then the loop runs


class Poller:
    def __init__(self) -> None:
        self._epoll: Any = None            # made on first use: no side effect on import
        self._watcher: Any = None
        self.waiting: dict[int, Any] = {}  # fd -> the attempt that waits on it
        self._deadlines: dict[float, deque] = {}   # timeout value -> attempts, oldest first
        self._sweeping = False
        self.errors = 0                    # attempts whose event handling raised
        self.reading = False               # handing a batch of events out (tcp.py's pool)

    def _start(self) -> None:
        self._epoll = hub.epoll()
        self._watcher = hub.when_readable(self._epoll.fileno(), self._ready)

    def want(self, fd: int, events: int, attempt: Any) -> None:
        """Tell ``attempt.on_event(events)`` when ``fd`` is ready for ``events`` (kept until
        forget() or the socket's close)."""
        if self._epoll is None:
            self._start()
        if fd in self.waiting:
            self._epoll.modify(fd, events)
        else:
            self._epoll.register(fd, events)
        self.waiting[fd] = attempt

    def forget(self, fd: int) -> None:
        """Before the socket is closed (the close itself leaves the epoll set)."""
        self.waiting.pop(fd, None)

    def _ready(self) -> None:
        """Every socket that is ready, not only one poll's worth (at most BATCH_EVENTS): after
        a stall of the loop thousands are, and the sweep that follows in the same loop turn
        must not time out connections that have answered."""
        waiting = self.waiting
        poll = self._epoll.poll
        self.reading = True
        try:
            for _ in range(MAX_POLLS):
                ready = poll(0, BATCH_EVENTS)
                for fd, events in ready:
                    attempt = waiting.get(fd)
                    if attempt is not None:
                        try:
                            attempt.on_event(events)
                        except Exception as exc:  # a checker bug: the others of the batch
                            self.errors += 1       # go on; its deadline ends this attempt
                            waiting.pop(fd, None)
                            event(log, "check.poller_error", logging.ERROR, error=repr(exc))
                if len(ready) < BATCH_EVENTS:
                    return
        finally:
            self.reading = False

    def expire_after(self, timeout: float, attempt: Any) -> None:
        """Call ``attempt.expire()`` once ``attempt.deadline`` has passed, if it is still
        ``live`` then."""
        line = self._deadlines.get(timeout)
        if line is None:
            line = self._deadlines[timeout] = deque()
        line.append(attempt)
        if not self._sweeping:
            self._sweeping = True
            hub.call_later(SWEEP_PERIOD, self._sweep)

    def _sweep(self) -> None:
        if self._epoll is not None:
            self._ready()                  # what has answered is no timeout
        now = time.monotonic()
        left = False
        for line in self._deadlines.values():
            while line and (not line[0].live or line[0].deadline <= now):
                attempt = line.popleft()
                if attempt.live:
                    attempt.expire()
            left = left or bool(line)
        if left:
            hub.call_later(SWEEP_PERIOD, self._sweep)
        else:
            self._sweeping = False


def wait(start: Any, seconds: float) -> CheckResult:
    """One check run on the loop (``start(done)``), waited for by a caller that may block
    (the TLS greenlet's fallback, tests, tools); a failure if no result came in ``seconds``."""
    box = hub.Event()
    results: list[CheckResult] = []

    def done(result: CheckResult, duration: float | None = None) -> None:
        if result is PASSED:                # done(PASSED, duration): made whole here
            result = CheckResult.passed(duration or 0.0)
        results.append(result)
        box.set()

    start(done)
    box.wait(seconds)
    return results[0] if results else CheckResult(False, seconds, "no answer from the loop")


POLLER = Poller()
