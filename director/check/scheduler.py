"""The check scheduler: every (virtual server, real server, checker) is a Job with a deadline.

One greenlet keeps the deadlines (a FIFO per delay_loop for the steady cadence, a heap for
the rest) and starts what is due. Checkers with ``start()`` (TCP_CHECK, plain HTTP_GET) run
as callbacks on the loop (poller.py); the others run in a bounded set of worker greenlets, each
attempt under a hard deadline (the checker's ``hard_deadline`` when it has one: an SMTP
conversation or several urls take longer than one connect_timeout), so a checker that hangs
or raises costs its own server one failed attempt and delays nobody else. First checks are
spread over ``warmup`` (jitter, never a thundering herd). The pure rule of hysteresis.py
turns results into up/down. Every wait, and the hard deadline, is the Clock's: on a FakeClock
the scheduler runs tick by tick as a test advances it.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import hub
from ..clock import Clock
from ..log import event
# director_check_duration_seconds' buckets: each result adds one to one bucket of its job
# (a list slot, not a metric object); the metrics add them up when scraped.
from ..state import DURATION_BUCKETS
from .checker import CheckResult, CheckSettings
from .hysteresis import Health, initial_health, judge

log = logging.getLogger("director.check")
_bisect_left = bisect.bisect_left
_heappush = heapq.heappush
_heappop = heapq.heappop

HARD_DEADLINE_SLACK = 1.0       # beyond connect_timeout before a worker kills an attempt
LATENESS_SAMPLES = 4096         # the most recent start delays, for the bench and the metrics
BATCH = 128                     # checks started per loop turn before the loop may run again
TICK = 0.005                    # the dispatcher wakes at most this often: each wake-up costs a
                                # greenlet switch, so ten thousand checks a second start in
                                # batches (lateness stays a few ms, far under the 50 ms goal)
HISTORY = 40                    # recent (duration, ok) per job: the dashboard's sparkline


@dataclass(eq=False, slots=True)   # slots: one object less to fetch per check (10,000 jobs
class Job:                          # do not stay in the caches)
    key: tuple[str, str, str]            # virtual server, real server, checker kind
    checker: Any
    settings: CheckSettings
    health: Health
    due: float = 0.0
    running: bool = False
    last: CheckResult | None = None
    last_at: float | None = None         # monotonic time of the last result (see wall_time)
    ok: int = 0                          # attempts that passed
    failed: int = 0                      # attempts that failed
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    removed: bool = False
    callback: bool = False               # the checker runs on the loop (start()), no greenlet
    done: Any = None                     # bound once: called with the result


class Scheduler:
    def __init__(self, clock: Clock, workers: int = 256, rng: random.Random | None = None,
                 lateness_samples: int = LATENESS_SAMPLES) -> None:
        self.clock = clock
        self.workers = workers
        self.rng = rng or random.Random()
        self.jobs: list[Job] = []
        self._heap: list[tuple[float, int, Job]] = []
        # The steady cadence skips the heap: a job checked again delay_loop after its last
        # due time lands behind every job of the same delay_loop popped before it, so one
        # FIFO per delay_loop stays in due order; popping a 10,000-entry heap of tuples cost
        # about 2 us a check (py-spy: 7 % of TCP_CHECK's process). Anything else (first
        # checks, retries, a late cadence) goes to the heap.
        self._lines: dict[float, deque] = {}
        self._wake_at = float("-inf")        # when the waiting dispatcher wakes anyway
        self._sequence = itertools.count()
        self._ready: hub.Queue = hub.Queue()
        self._wake = hub.Event()
        self._greenlets: list[hub.Greenlet] = []
        self.listeners: list[Callable[[Job, CheckResult], None]] = []   # on up/down changes
        # on a change of what a result asks of the pool besides up/down: its weight
        # (misc_dynamic, FILE_CHECK, AGENT_CHECK) or its agent's state
        self.effect_listeners: list[Callable[[Job, CheckResult], None]] = []
        self.heartbeat = 0.0                 # last time the loop turned (for /healthz)
        self.lateness: list[float] = []      # recent start delays past the due time
        self._lateness_at = 0
        self.lateness_samples = lateness_samples
        self.crashes = 0
        self.reply_errors: dict[tuple[str, str], int] = {}   # (checker kind, reason) -> count

    def add(self, key: tuple[str, str, str], checker: Any, settings: CheckSettings,
            health: Health | None = None) -> Job:
        """``health`` carries a server's state across a reload; new ones start as keepalived
        starts them (up, or down with alpha)."""
        job = Job(key, checker, settings, health or initial_health(settings))
        # on the loop: a checker with start() that does not say otherwise (SSL_GET has
        # start() through HTTP_GET's class, but runs in a worker greenlet)
        job.callback = getattr(checker, "on_loop", hasattr(checker, "start"))
        job.done = functools.partial(self._finished, job)
        job.due = self.clock.now() + self.rng.uniform(0, max(settings.warmup, 0.0))
        self.jobs.append(job)
        self._push(job)
        return job

    def remove(self, *jobs: Job) -> None:
        """Their deadlines stay queued and are skipped when due; an attempt in flight
        finishes unheard (it holds its own reference to ``done``)."""
        for job in jobs:
            job.removed = True
            # job.done refers to the job: a cycle, which only the collector frees, and
            # never once a reload has frozen it (gc.freeze): every changed or removed
            # server's job stayed (bench/soak.py: 1,200 objects a reload at 2,000 servers).
            job.done = None
        self.jobs = [job for job in self.jobs if not job.removed]

    def _push(self, job: Job, cadence: float | None = None) -> None:
        """Queue ``job`` at ``job.due``: on the FIFO of ``cadence`` (its delay_loop) when
        that keeps the FIFO in order, else on the heap."""
        due = job.due
        entry = (due, next(self._sequence), job)
        if cadence is not None:
            line = self._lines.get(cadence)
            if line is None:
                line = self._lines[cadence] = deque()
            if not line or line[-1][0] <= due:
                line.append(entry)
            else:
                _heappush(self._heap, entry)
        else:
            _heappush(self._heap, entry)
        if due < self._wake_at:              # only an earlier deadline needs a wake-up
            self._wake.set()

    def _earliest(self) -> tuple[Any, Any]:
        """The earliest entry and where it is (the heap or a FIFO); (None, None) if none."""
        heap = self._heap
        best, where = (heap[0], heap) if heap else (None, None)
        for line in self._lines.values():
            if line and (best is None or line[0] < best):
                best, where = line[0], line
        return best, where

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        self._greenlets.append(hub.supervise(self._dispatch, name="check scheduler"))
        for number in range(self.workers):
            self._greenlets.append(hub.supervise(self._work, name=f"check worker {number}"))

    def stop(self) -> None:
        hub.killall(self._greenlets, block=False)
        self._greenlets.clear()

    def _dispatch(self) -> None:
        """Start what is due, at most BATCH per loop turn: the results of the checks just
        started must be read while they are fresh, or they look slow and fall due together
        again (a herd that grows with every round)."""
        heap = self._heap
        clock = self.clock
        lateness = self.lateness
        earliest = self._earliest
        lines = self._lines
        while True:
            self._wake_at = float("-inf")    # running: no push needs to wake it
            now = clock.now()
            self.heartbeat = now
            started = 0
            while started < BATCH:
                entry, where = (heap[0], heap) if heap else (None, None)   # _earliest(),
                for line in lines.values():                                # inlined
                    if line and (entry is None or line[0] < entry):
                        entry, where = line[0], line
                if entry is None or entry[0] > now:
                    break
                if where is heap:
                    _heappop(heap)
                else:
                    where.popleft()
                due, _, job = entry
                if job.removed or job.running:
                    continue
                late = now - due
                if len(lateness) < self.lateness_samples:
                    lateness.append(late)
                else:                      # a ring: the most recent lateness_samples
                    lateness[self._lateness_at] = late
                    self._lateness_at = (self._lateness_at + 1) % self.lateness_samples
                job.running = True
                started += 1
                if job.callback:             # on the loop (TCP_CHECK, HTTP_GET)
                    try:
                        job.checker.start(job.done)
                    except Exception as exc:  # a checker bug must not stop the dispatcher
                        self.crashes += 1
                        self._finished(job, CheckResult(False, 0.0,
                                                        f"checker crashed: {exc!r}"))
                else:
                    self._ready.put(job)
            if started == BATCH:
                # Let the loop run its timers and I/O (the replies of the checks just started,
                # a VRRP advert due), then go on. Not sleep(0): gevent runs 50 such callbacks
                # before it looks at the clock, so a backlog started 6,400 checks in one go
                # and a MASTER's adverts waited behind them (issue 17: a false failover at
                # advert_int 0.02 s on a busy host).
                hub.breathe()
                continue
            self._wake.clear()
            entry, _ = earliest()
            now = clock.now()
            wait = min(entry[0] - now, 1.0) if entry is not None else 1.0
            if wait > 0:
                self._wake_at = now + max(wait, TICK)
                clock.wait(self._wake, max(wait, TICK))

    def _work(self) -> None:
        """One attempt at a time, under a timer of the clock raised in this very greenlet
        (cheaper than a greenlet per attempt; the timer is a BaseException, which checkers
        do not catch)."""
        while True:
            job = self._ready.get()
            deadline = getattr(job.checker, "hard_deadline", None) or \
                job.settings.connect_timeout + HARD_DEADLINE_SLACK
            started = self.clock.now()
            timer = self.clock.timeout(deadline)
            try:
                result = job.checker.check()
            except Exception as exc:        # a checker bug: its server fails this attempt
                self.crashes += 1
                result = CheckResult(False, self.clock.now() - started,
                                     f"checker crashed: {exc!r}")
            except BaseException as fired:  # its timer, or a kill that must go on up
                if fired is not timer:
                    raise
                result = CheckResult(False, self.clock.now() - started,
                                     f"check hung: killed after {deadline:g} s")
            finally:
                timer.close()
            self._finished(job, result)

    def _finished(self, job: Job, result: CheckResult) -> None:
        """Runs in a worker or, for callback checkers, in the loop itself: no blocking."""
        job.running = False
        if job.removed:
            return
        now = self.clock.now()
        previous = job.last
        job.last = result
        job.last_at = now
        if result.reply_error:
            counted = (job.key[2], result.reply_error)
            self.reply_errors[counted] = self.reply_errors.get(counted, 0) + 1
        duration = result.duration
        ok = result.ok
        job.buckets[_bisect_left(DURATION_BUCKETS, duration)] += 1
        job.duration_sum += duration
        job.history.append((duration, ok))
        health = job.health
        settings = job.settings
        if ok and health.up and not health.failures:
            # The steady case, ten thousand times a second: judge() would say "stay up, next
            # at delay_loop"; say it without building a Verdict.
            job.ok += 1
            next_in = settings.delay_loop
            changed = False
        else:
            if result.ok:
                job.ok += 1
            else:
                job.failed += 1
            verdict = judge(job.settings, health, result.ok)
            job.health, next_in, changed = verdict.health, verdict.next_in, verdict.changed
            if not result.ok and health.up and job.settings.log_all_failures:
                # keepalived logs only the fall unless told to log every failure while up
                event(log, "check.attempt_failed", virtual_server=job.key[0],
                      real_server=job.key[1], checker=job.key[2],
                      attempt=health.failures + 1, retry=job.settings.retry,
                      error=result.error or "")
        # A fixed cadence from the last due time, not from when the check ended: the
        # warmup spread survives, and a slow check does not push its server later.
        due = job.due + next_in
        if next_in == settings.delay_loop and due > now:
            job.due = due
            line = self._lines.get(next_in)
            if line and line[-1][0] <= due:  # _push, inlined for the steady case
                line.append((due, next(self._sequence), job))
                if due < self._wake_at:
                    self._wake.set()
            else:
                self._push(job, next_in)
        else:
            job.due = now + next_in
            self._push(job)
        if previous is None:
            effect = result.weight is not None or result.agent is not None
        else:
            effect = result.weight != previous.weight or result.agent != previous.agent
        if effect:
            self._tell(self.effect_listeners, job, result)
        if changed:
            event(log, "check.state", virtual_server=job.key[0], real_server=job.key[1],
                  checker=job.key[2], state="up" if job.health.up else "down",
                  error=result.error or "")
            self._tell(self.listeners, job, result)

    @staticmethod
    def _tell(listeners: list, job: Job, result: CheckResult) -> None:
        for listener in list(listeners):
            try:
                listener(job, result)
            except Exception as exc:         # a listener bug must not stop the checks
                event(log, "check.listener_error", logging.ERROR, error=repr(exc))

    def wall_time(self, monotonic: float) -> float:
        """A monotonic stamp (Job.last_at) as epoch seconds, for people and the API."""
        return self.clock.wall() - (self.clock.now() - monotonic)

    def stalled(self, limit: float = 5.0) -> bool:
        return self.clock.now() - self.heartbeat > limit
