"""The check scheduler: every (virtual server, real server, checker) is a Job with a deadline.

One greenlet keeps the deadlines in a heap and starts what is due. Checkers with ``start()``
(TCP) run as callbacks on the loop; the others run in a bounded set of worker greenlets, each
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

HARD_DEADLINE_SLACK = 1.0       # beyond connect_timeout before a worker kills an attempt
LATENESS_SAMPLES = 4096         # the most recent start delays, for the bench and the metrics
BATCH = 128                     # checks started per loop turn before the loop may run again
TICK = 0.005                    # the dispatcher wakes at most this often: each wake-up costs a
                                # greenlet switch, so ten thousand checks a second start in
                                # batches (lateness stays a few ms, far under the 50 ms goal)
HISTORY = 40                    # recent (duration, ok) per job: the dashboard's sparkline


@dataclass(eq=False)
class Job:
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
        job.callback = hasattr(checker, "start")
        job.done = functools.partial(self._finished, job)
        job.due = self.clock.now() + self.rng.uniform(0, max(settings.warmup, 0.0))
        self.jobs.append(job)
        self._push(job)
        return job

    def remove(self, *jobs: Job) -> None:
        """Their deadlines stay in the heap and are skipped when due; an attempt in flight
        finishes unheard (it holds its own reference to ``done``)."""
        for job in jobs:
            job.removed = True
            # job.done refers to the job: a cycle, which only the collector frees, and
            # never once a reload has frozen it (gc.freeze): every changed or removed
            # server's job stayed (bench/soak.py: 1,200 objects a reload at 2,000 servers).
            job.done = None
        self.jobs = [job for job in self.jobs if not job.removed]

    def _push(self, job: Job) -> None:
        heap = self._heap
        if not heap or job.due < heap[0][0]:    # only an earlier deadline needs a wake-up
            self._wake.set()
        heapq.heappush(heap, (job.due, next(self._sequence), job))

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
        while True:
            now = clock.now()
            self.heartbeat = now
            started = 0
            while heap and heap[0][0] <= now and started < BATCH:
                due, _, job = heapq.heappop(heap)
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
                if job.callback:
                    self._start_callback(job)
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
            wait = min(heap[0][0] - clock.now(), 1.0) if heap else 1.0
            if wait > 0:
                clock.wait(self._wake, max(wait, TICK))

    def _start_callback(self, job: Job) -> None:
        try:
            job.checker.start(job.done)
        except Exception as exc:            # a checker bug must not stop the dispatcher
            self.crashes += 1
            self._finished(job, CheckResult(False, 0.0, f"checker crashed: {exc!r}"))

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
        job.last, job.last_at = result, now
        if result.reply_error:
            counted = (job.key[2], result.reply_error)
            self.reply_errors[counted] = self.reply_errors.get(counted, 0) + 1
        duration = result.duration
        job.buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        job.duration_sum += duration
        job.history.append((duration, result.ok))
        health = job.health
        if result.ok and health.up and not health.failures:
            # The steady case, ten thousand times a second: judge() would say "stay up, next
            # at delay_loop"; say it without building a Verdict.
            job.ok += 1
            next_in, changed = job.settings.delay_loop, False
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
        if next_in == job.settings.delay_loop and job.due + next_in > now:
            # A fixed cadence from the last due time, not from when the check ended: the
            # warmup spread survives, and a slow check does not push its server later.
            job.due += next_in
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
