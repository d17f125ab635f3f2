"""The one module that imports gevent (with webserver.py, whose server is gevent's WSGI
server): greenlets, queues, timers and signals.

Everything else asks this module for concurrency, so that a crash in a greenlet is always
logged and counted, and tests can see which greenlets died.
"""

from __future__ import annotations

import gc
import logging
import os
import signal as _signal
import time
import weakref
from typing import Any, Callable

import gevent
import gevent.event
import gevent.lock
import gevent.monkey
import gevent.queue
import gevent.threadpool

log = logging.getLogger("director.hub")

Empty = gevent.queue.Empty
Full = gevent.queue.Full
Queue = gevent.queue.Queue
Event = gevent.event.Event
Lock = gevent.lock.RLock
Timeout = gevent.Timeout
Greenlet = gevent.Greenlet
sleep = gevent.sleep
idle = gevent.idle              # until every greenlet that can run has (clock.FakeClock)
getcurrent = gevent.getcurrent
kill = gevent.kill              # raise an exception in another greenlet, from the loop
joinall = gevent.joinall
killall = gevent.killall

crashes: dict[str, int] = {}      # greenlet name -> times it died of an exception
# Every greenlet spawned through this module while it exists (running, waiting, or finished
# and still referenced): for runtime(). Weak, so it keeps none alive; the collector cannot
# count them instead, since gc.freeze() hides what it froze from gc.get_objects().
greenlets: weakref.WeakSet = weakref.WeakSet()


def count_crash(name: str) -> None:
    """One more exception that ended (a run of) a long-lived part: for the metrics."""
    crashes[name] = crashes.get(name, 0) + 1


def spawn(function: Callable[..., Any], *args: Any, name: str = "",
          report: bool = True) -> gevent.Greenlet:
    """Start a greenlet whose death by exception is logged with its traceback and counted.
    ``report=False`` is for a caller that collects the exception itself (a check attempt)."""
    greenlet = gevent.spawn(function, *args)
    greenlets.add(greenlet)
    label = name or getattr(function, "__qualname__", repr(function))
    greenlet.name = label
    if not report:
        return greenlet

    def crashed(dead: gevent.Greenlet) -> None:
        count_crash(label)
        log.error("hub.crash greenlet=%s error=%r", label, dead.exception,
                  exc_info=(type(dead.exception), dead.exception,
                            dead.exception.__traceback__))

    greenlet.link_exception(crashed)
    return greenlet


class Supervised(gevent.Greenlet):
    """A long-lived part of the daemon (a loop that must not end): an exception is logged
    with its traceback, counted in ``crashes`` and the function started again after a pause
    that doubles from BACKOFF_FIRST to BACKOFF_MAX (back to the first after STEADY seconds
    without a crash). A return ends it (a VRRP instance that stopped); ``kill()`` ends it
    for good. While it waits to restart, ``not_running()`` names it: /healthz answers 503."""

    BACKOFF_FIRST = 0.1
    BACKOFF_MAX = 30.0
    STEADY = 60.0

    def __init__(self, function: Callable[..., Any], args: tuple, name: str) -> None:
        super().__init__()
        self.function = function
        self.function_args = args
        self.name = name
        self.restarts = 0
        self.waiting = False                # between a crash and its restart
        self.last_error: str | None = None
        greenlets.add(self)

    def _run(self) -> None:              # gevent.Greenlet's hook
        supervised.add(self)
        pause = self.BACKOFF_FIRST
        try:
            while True:
                started = time.monotonic()
                try:
                    self.function(*self.function_args)
                    return
                except Exception as exc:
                    count_crash(self.name)
                    self.last_error = repr(exc)
                    log.error("hub.crash greenlet=%s error=%r restart_in=%.1fs", self.name,
                              exc, pause, exc_info=True)
                if time.monotonic() - started > self.STEADY:
                    pause = self.BACKOFF_FIRST
                self.waiting = True
                gevent.sleep(pause)
                self.waiting = False
                self.restarts += 1
                log.warning("hub.restart greenlet=%s restarts=%d", self.name, self.restarts)
                pause = min(pause * 2, self.BACKOFF_MAX)
        finally:
            supervised.discard(self)


supervised: set[Supervised] = set()     # the long-lived greenlets running now


def supervise(function: Callable[..., Any], *args: Any, name: str) -> Supervised:
    """Start ``function`` as a long-lived part of the daemon (see Supervised)."""
    greenlet = Supervised(function, args, name)
    greenlet.start()
    return greenlet


def not_running() -> list[str]:
    """The long-lived greenlets that crashed and wait for their restart (for /healthz)."""
    return sorted(greenlet.name for greenlet in supervised if greenlet.waiting)


class Handle:
    """A callback registered on the loop itself (no greenlet): cancel() is idempotent."""

    __slots__ = ("watcher",)

    def __init__(self, watcher) -> None:
        self.watcher = watcher

    def cancel(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher.close()
            self.watcher = None


def when_writable(fd: int, callback: Callable[[], None]) -> Any:
    """Call ``callback`` from the loop when ``fd`` can be written (a connect finished);
    returns the loop's watcher (``stop()`` then ``close()``), with no wrapper: this runs ten
    thousand times a second. Callbacks run in the hub: they must not block."""
    watcher = gevent.get_hub().loop.io(fd, 2)
    watcher.start(callback)
    return watcher


# The C epoll object, which monkey-patching takes out of ``select`` (check/poller.py waits on
# one through the loop, never blocking in it).
epoll = gevent.monkey.get_original("select", "epoll")


def when_readable(fd: int, callback: Callable[[], None]) -> Any:
    """Call ``callback`` from the loop every time ``fd`` can be read, until the returned
    watcher is stopped (check/poller.py's epoll set: one watcher for every check socket)."""
    watcher = gevent.get_hub().loop.io(fd, 1)
    watcher.ref = False         # an idle set is no reason for the loop to go on
    watcher.start(callback)
    return watcher


def wait_event(event: Any, timeout: float) -> bool:
    """``event.wait(timeout)``, without raising a Timeout into the waiter when the time is
    up: a timer and the event both wake one Waiter. The check scheduler's dispatcher waits
    like this a few hundred times a second; a timed-out Event.wait cost 100 us of CPU here
    (the Timeout made, thrown into the greenlet and caught), this 45 us."""
    if event.is_set():
        return True
    hub = gevent.get_hub()
    waiter = gevent.hub.Waiter(hub)
    wake = waiter.switch
    timer = hub.loop.timer(max(0.0, timeout))
    timer.start(wake, None, update=True)     # from now, not the loop's cached time
    event.rawlink(wake)
    try:
        waiter.get()
    finally:
        timer.close()
        event.unlink(wake)
    return event.is_set()


def call_later(seconds: float, callback: Callable[[], None]) -> Handle:
    """Call ``callback`` from the loop after ``seconds`` (no greenlet is made)."""
    watcher = gevent.get_hub().loop.timer(max(0.0, seconds))
    watcher.start(callback)
    return Handle(watcher)


def on_signal(signum: int, callback: Callable[[], None]) -> None:
    """Run ``callback`` in the hub when the signal arrives (never inside the handler)."""
    gevent.signal_handler(signum, callback)


SIGNALS = {"TERM": _signal.SIGTERM, "INT": _signal.SIGINT, "HUP": _signal.SIGHUP,
           "USR1": _signal.SIGUSR1, "USR2": _signal.SIGUSR2}


AsyncResult = gevent.event.AsyncResult
# OS threads for a call that blocks in C where gevent cannot see it (grpcio waits for its own
# C threads): ``ThreadPool(n).spawn(function, *args).get()`` waits cooperatively. Threads
# start on demand, up to n. What runs there must not touch greenlets or the hub.
ThreadPool = gevent.threadpool.ThreadPool


BREATHE_MAX = 0.005      # seconds breathe() may wait for an idle loop


def breathe() -> None:
    """Let the loop run what is ready (timers, I/O) before going on: a long computation
    calls it between its slices. ``sleep(0)`` does not: it only switches to greenlets
    already runnable, and a greenlet that keeps calling it held the adverts back for
    most of a second (measured). It waits for the loop to be idle, but not longer than
    BREATHE_MAX: a loop busy with ten thousand checks a second may never be."""
    with gevent.Timeout(BREATHE_MAX, False):
        gevent.idle()


class Slicer:
    """A long computation on the loop (parsing a configuration) calls this between two
    pieces of work; every ``budget`` seconds it lets the loop run. Measured against a
    thread: there every system call of the loop waited for the GIL behind the parser (a
    convoy: adverts half a second late at 5 ms switch intervals, 70 ms at 0.2 ms); in slices
    of 2 ms the loop waits at most a slice."""

    def __init__(self, budget: float = 0.002) -> None:
        self.budget = budget
        self.resumed = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.resumed >= self.budget:
            breathe()
            self.resumed = time.monotonic()


def runtime() -> dict[str, int]:
    """What the soak bench watches for leaks, read only when asked (``/healthz?verbose=1``):
    the greenlets of ours alive (see ``greenlets``), the OS threads, the open descriptors and
    the resident set of this process, and the objects gc.freeze() has put out of the
    collector's reach (a cycle frozen is never freed). A few /proc reads: cheap."""
    with open("/proc/self/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    return {"greenlets": len(greenlets),
            "threads": len(os.listdir("/proc/self/task")),
            "fds": len(os.listdir("/proc/self/fd")),
            "rss_bytes": rss_pages * os.sysconf("SC_PAGE_SIZE"),
            "gc_frozen": gc.get_freeze_count()}
