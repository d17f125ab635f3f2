"""How late the main loop runs a timer, and why when it is very late.

A timer on the loop every TICK seconds (a callback, no greenlet) compares when it ran with
when it was due: nothing is added to the work of any event. Every lag goes into the
``director_main_loop_lag_seconds`` histogram; one over the threshold is logged once, with
the cause as far as the process can tell. Over the late interval it reads its main thread's
CPU time and its time waiting for a CPU (/proc/thread-self/schedstat: run time, run-queue
delay); what neither explains is time the process did not run at all:

- ``collecting``: the cyclic garbage collector's pass held the loop (timed by gcclock.py);
- ``busy``: the loop ran code without yielding (a long computation);
- ``waiting for a CPU``: runnable, but the host's CPUs were taken (an overloaded host);
- ``held``: neither ran nor waited to run (SIGSTOP, a paused VM, a blocking system call):
  monotonic time went on while the process stood still.

The threshold is one advert interval of the fastest VRRP instance, at most 1 s: a master
held that long has missed an advert (its backups take over after three and the skew).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import hub
from .gcclock import GcClock
from .lateness import Lateness
from .log import event as log_event

if TYPE_CHECKING:
    from .state import MainLoopView

log = logging.getLogger("director.loop")

TICK = 0.1              # seconds between two measures
THRESHOLD = 1.0         # seconds of lag logged as an event (lowered to the fastest advert_int)
LOG_EVERY = 10.0        # at most one such log line this often; the others are counted in it
SCHEDSTAT = "/proc/thread-self/schedstat"


class Cause(NamedTuple):
    kind: str               # held, busy, waiting
    seconds: float          # how long of the lag it explains
    text: str               # "held for 4.1 s (...)"


def cause_of(lag: float, busy: float, waiting: float | None, collecting: float = 0.0) -> Cause:
    """What made a lag of ``lag`` seconds, given the main thread's CPU time (``busy``), its
    time waiting for a CPU (``waiting``, None where the kernel does not say) and the garbage
    collector's time (``collecting``, part of ``busy``) over the same stretch. Pure."""
    waited = waiting or 0.0
    held = max(0.0, lag - busy - waited)
    kind, seconds = max((("held", held), ("busy", busy), ("waiting", waited)),
                        key=lambda item: item[1])
    if kind == "busy" and collecting >= busy / 2:
        return Cause("collecting", collecting,
                     f"collected garbage for {collecting:.3f} s (the cyclic collector's pass "
                     "held the loop)")
    if kind == "busy":
        return Cause(kind, busy, f"busy for {busy:.1f} s (the loop ran code without "
                                 "yielding: a long computation)")
    if kind == "waiting":
        return Cause(kind, waited, f"waited {waited:.1f} s for a CPU (the host is overloaded)")
    unknown = " (this kernel does not say how long it waited for a CPU)" \
        if waiting is None else ""
    return Cause(kind, held, f"held for {held:.1f} s (the process did not run: stopped, a "
                             f"paused VM or a blocking system call){unknown}")


def threshold_for(config: Any) -> float:
    """One advert interval of the fastest VRRP instance, at most THRESHOLD."""
    intervals = [instance.advert_int for instance in config.vrrp_instances]
    return min([THRESHOLD] + [float(i) for i in intervals if i])


class MainLoopLag:
    def __init__(self, threshold: float = THRESHOLD,
                 on_late: Callable[..., Any] | None = None) -> None:
        self.lag = Lateness(keep=600)            # a minute of ticks
        self.threshold = threshold
        self.on_late = on_late                    # called with the event's fields
        self.on_lag: Callable[[float], Any] | None = None     # every measure (auto priority)
        self.last_late: dict[str, Any] | None = None
        self.gc = GcClock()
        self._handle: hub.Handle | None = None
        self._due = 0.0
        self._cpu = 0.0
        self._collected = 0.0
        self._waited: float | None = None
        self._schedstat: int | None = None
        self._logged_at = -LOG_EVERY
        self._unlogged = 0

    def start(self) -> None:
        try:
            self._schedstat = os.open(SCHEDSTAT, os.O_RDONLY)   # of the thread that runs the loop
        except OSError:
            self._schedstat = None
        self.gc.install()
        self._cpu, self._waited = self._times()
        self._collected = self.gc.total()
        self._arm(time.monotonic())

    def stop(self) -> None:
        self.gc.uninstall()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def _arm(self, now: float) -> None:
        self._due = now + TICK
        self._handle = hub.call_later(TICK, self._tick)

    def _times(self) -> tuple[float, float | None]:
        """The main thread's CPU time and its time waiting for a CPU, seconds."""
        if self._schedstat is not None:
            try:
                running, waiting = os.pread(self._schedstat, 64, 0).split()[:2]
                return int(running) / 1e9, int(waiting) / 1e9
            except (OSError, ValueError):
                pass
        return time.thread_time(), None

    def _tick(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._due)
        self.lag.add(lag)
        cpu, waited = self._times()
        collected = self.gc.total()
        try:
            if self.on_lag is not None:
                self.on_lag(lag)
            if lag > self.threshold:
                self._late(now, lag, cpu - self._cpu,
                           None if waited is None or self._waited is None
                           else waited - self._waited, collected - self._collected)
        except Exception:
            # a loop callback, not a supervised greenlet: counted and logged here, and the
            # timer armed again below, or the measure would stop without a word
            hub.count_crash("main loop lag")
            log.exception("hub.crash greenlet=%s", "main loop lag")
        finally:
            self._cpu, self._waited, self._collected = cpu, waited, collected
            self._arm(now)

    def _late(self, now: float, lag: float, busy: float, waiting: float | None,
              collecting: float) -> None:
        cause = cause_of(lag, busy, waiting, collecting)
        self.last_late = {"at": round(time.time(), 3), "lag_seconds": round(lag, 3),
                          "cause": cause.kind, "text": cause.text}
        if now - self._logged_at < LOG_EVERY:       # an overloaded host: not a line a tick
            self._unlogged += 1
            return
        log_event(log, "loop.late", logging.WARNING, lag=f"{lag:.3f}s", cause=cause.text,
                  busy=f"{busy:.3f}s", collecting=f"{collecting:.3f}s",
                  waiting_for_cpu="unknown" if waiting is None else f"{waiting:.3f}s",
                  not_logged_since=self._unlogged)
        if self.on_late is not None:
            self.on_late(**self.last_late, not_logged_since=self._unlogged)
        self._logged_at, self._unlogged = now, 0

    def view(self) -> MainLoopView:
        from .state import MainLoopView
        return MainLoopView(self.lag.view(), self.last_late, self.threshold,
                            tuple(self.gc.seconds), tuple(self.gc.collections),
                            self.gc.longest)
