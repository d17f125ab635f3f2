"""Clocks: what the engines read time from and wait on. Pure code takes ``now`` as an argument;
the greenlets that drive it read a Clock and wait through it, so tests drive time by hand with
FakeClock: a scheduler on a FakeClock runs tick by tick as the test advances the clock.

gevent is reached through director.hub, by a MonotonicClock and by what waits on a FakeClock:
importing this module loads nothing, and a FakeClock used as a plain number (the pure VRRP
tests) never loads gevent.
"""

from __future__ import annotations

import heapq
import itertools
import sys
import time
from typing import Any, Callable, Protocol


class Timer(Protocol):
    """What Clock.timeout returns: a BaseException that raises itself (hub.Timeout on the
    real clock)."""

    def close(self) -> None:
        """Disarm it; harmless once it has fired or been closed."""


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (never steps back, unrelated to the wall clock)."""

    def wall(self) -> float:
        """Seconds since the epoch, for what humans read (last_transition in the API)."""

    def sleep(self, seconds: float) -> None:
        """Block the calling greenlet for ``seconds`` of this clock."""

    def wait(self, event: Any, timeout: float) -> bool:
        """Block the calling greenlet until ``event`` (a hub.Event) is set, True, or
        ``timeout`` seconds of this clock have passed, False."""

    def timeout(self, seconds: float) -> Timer:
        """A started timer: once ``seconds`` of this clock have passed it raises itself in
        the greenlet that made it, unless its ``close()`` came first. The greenlet tells
        it from other exceptions by identity."""


class MonotonicClock:
    """The real clock: its waits are the gevent loop's."""

    def __init__(self) -> None:
        from . import hub            # here: the checks' workers arm a timeout per attempt
        self._hub = hub

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self._hub.sleep(seconds)

    def wait(self, event: Any, timeout: float) -> bool:
        return self._hub.wait_event(event, timeout)

    def timeout(self, seconds: float) -> Timer:
        timer = self._hub.Timeout(seconds)
        timer.start()
        return timer


class FakeTimeout(BaseException):
    """FakeClock's timer (see Clock.timeout)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds
        self.entry: list | None = None      # its place in the clock's heap

    def close(self) -> None:
        if self.entry is not None:
            self.entry[2] = None

    def __str__(self) -> str:
        return f"{self.seconds:g} seconds"


class FakeClock:
    """A clock that moves only when told to. Greenlets that sleep, wait or time out on it
    are woken as ``advance()`` or ``set()`` moves it past their deadlines, in deadline
    order, each at its own deadline; every greenlet that can run runs before time moves on
    (and may arm a new deadline within the same advance). With no hub loaded, moving it is
    plain arithmetic."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_764_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._timers: list[list] = []        # heap of [when, order, callback or None]
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def _at(self, seconds: float, callback: Callable[[], None]) -> list:
        entry = [self._now + max(seconds, 0.0), next(self._order), callback]
        heapq.heappush(self._timers, entry)
        return entry

    def sleep(self, seconds: float) -> None:
        from . import hub
        woken = hub.Event()
        entry = self._at(seconds, woken.set)
        try:
            woken.wait()
        finally:
            entry[2] = None

    def wait(self, event: Any, timeout: float) -> bool:
        if event.is_set():
            return True
        from . import hub
        woken = hub.Event()

        def wake(_event: Any = None) -> None:
            woken.set()

        event.rawlink(wake)                  # whichever comes first: the event, or the time
        entry = self._at(timeout, wake)
        try:
            woken.wait()
        finally:
            event.unlink(wake)
            entry[2] = None
        return event.is_set()

    def timeout(self, seconds: float) -> Timer:
        from . import hub
        expired = FakeTimeout(seconds)
        greenlet = hub.getcurrent()
        expired.entry = self._at(seconds, lambda: hub.kill(greenlet, expired))
        return expired

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        return self._move_to(self._now + seconds)

    def set(self, when: float) -> float:
        if when < self._now:
            raise ValueError("a clock does not go back")
        return self._move_to(when)

    def _move_to(self, when: float) -> float:
        self._settle()
        timers = self._timers
        while timers and timers[0][0] <= when:
            due, _, callback = heapq.heappop(timers)
            if callback is None:                 # closed, or its waiter woke otherwise
                continue
            self._now = max(self._now, due)
            callback()
            self._settle()
        self._now = when
        return self._now

    def _settle(self) -> None:
        """Run every greenlet that can run, until all wait again; with no hub loaded there
        is no greenlet of ours (and no reason to load gevent)."""
        hub = sys.modules.get(f"{__package__}.hub")
        if hub is not None:
            hub.idle()
