"""The check scheduler: every (virtual server, real server, checker) is a Job with a deadline.

One greenlet keeps the deadlines (duequeue.py: a FIFO per delay_loop for the steady cadence,
a heap for the rest) and starts what is due, a batch per wake-up. Checkers with ``start()``
(TCP_CHECK, plain HTTP_GET) run as callbacks on the loop (poller.py); the others run in a
bounded set of worker greenlets, each attempt under a hard deadline (the checker's
``hard_deadline`` when it has one: an SMTP conversation or several urls take longer than one
connect_timeout), so a checker that hangs or raises costs its own server one failed attempt
and delays nobody else. First checks are spread over ``warmup`` (jitter, never a thundering
herd). The pure rule of hysteresis.py turns results into up/down. Every wait, and the hard
deadline, is the Clock's: on a FakeClock the scheduler runs tick by tick as a test advances it.

A steady pass (up, no retry pending, and nothing to say but the duration: checker.PASSED)
is counted in place: no CheckResult, history tuple or queue entry is made for it, so that
ten thousand a second leave the collector nothing to do (bench/check_tcp_scale.py prints
its collections) and cost the interpreter only their counters and next deadline.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .. import hub
from ..clock import Clock
from ..log import event
# director_check_duration_seconds' buckets: each result adds one to one bucket of its job
# (a list slot, not a metric object); the metrics add them up when scraped.
from ..state import DURATION_BUCKETS
from .checker import PASSED, CheckResult, CheckSettings
from .duequeue import DueQueue
from .hysteresis import Health, initial_health, judge

log = logging.getLogger("director.check")
_bisect_left = bisect.bisect_left
_copysign = math.copysign

HARD_DEADLINE_SLACK = 1.0       # beyond connect_timeout before a worker kills an attempt
LATENESS_SAMPLES = 4096         # the most recent start delays, for the bench and the metrics
BATCH = 128                     # checks started per loop turn before the loop may run again
TICK = 0.005                    # the dispatcher wakes at most this often: each wake-up costs a
                                # greenlet switch, so ten thousand checks a second start in
                                # batches (lateness stays a few ms, far under the 50 ms goal)
HISTORY = 40                    # recent results per job: the dashboard's sparkline


def history_point(value: float) -> tuple[float, bool]:
    """A Job.recent entry as (duration, ok). An entry is the attempt's duration, negated for a
    failure (the sign bit tells: a failure of 0 s is -0.0): one float per check, where a
    (duration, ok) tuple per check was one more object for the collector to move and 40 per
    job kept (bench/check_tcp_scale.py: 10,000 jobs)."""
    return (-value, False) if _copysign(1.0, value) < 0 else (value, True)


@dataclass(eq=False, slots=True)   # slots: one object less to fetch per check (10,000 jobs
class Job:                          # do not stay in the caches)
    key: tuple[str, str, str]            # virtual server, real server, checker kind
    checker: Any
    settings: CheckSettings
    health: Health
    due: float = 0.0
    seq: int = 0                         # its place among equal due times (DueQueue)
    running: bool = False
    # The last result as its checker gave it: a pass with nothing else to say is the shared
    # checker.PASSED, whose duration is last_duration (``last`` gives it whole).
    result: CheckResult | None = None
    last_duration: float = 0.0
    last_at: float | None = None         # monotonic time of the last result (see wall_time)
    ok: int = 0                          # attempts that passed
    failed: int = 0                      # attempts that failed
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=HISTORY))   # history_point's
    removed: bool = False
    callback: bool = False               # the checker runs on the loop (start()), no greenlet
    done: Any = None                     # bound once: called with the result

    @property
    def last(self) -> CheckResult | None:
        """The last result, None before the first (a shared PASSED is made whole here, for
        the reader that wants one: the check path never builds it)."""
        result = self.result
        return CheckResult.passed(self.last_duration) if result is PASSED else result

    @last.setter
    def last(self, result: CheckResult | None) -> None:
        self.result = result
        self.last_duration = 0.0 if result is None else result.duration

    def history(self) -> list[tuple[float, bool]]:
        """The recent (duration, ok), oldest first."""
        return [history_point(value) for value in self.recent]


class Scheduler:
    def __init__(self, clock: Clock, workers: int = 256, rng: random.Random | None = None,
                 lateness_samples: int = LATENESS_SAMPLES) -> None:
        self.clock = clock
        self._now = clock.now
        self.workers = workers
        self.rng = rng or random.Random()
        self.jobs: list[Job] = []
        self._queue = DueQueue()
        self._wake_at = float("-inf")        # when the waiting dispatcher wakes anyway
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
        """Queue ``job`` at ``job.due`` (on the FIFO of ``cadence``, its delay_loop, when
        that keeps the FIFO in order) and wake the dispatcher if it sleeps past it."""
        self._queue.push(job, cadence)
        if job.due < self._wake_at:          # only an earlier deadline needs a wake-up
            self._wake.set()

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
        again (a herd that grows with every round). What is due comes out of the queue as
        one batch per wake-up (DueQueue.pop_due), not one look at every line per check."""
        clock = self.clock
        queue = self._queue
        lateness = self.lateness
        ready = self._ready
        while True:
            self._wake_at = float("-inf")    # running: no push needs to wake it
            now = clock.now()
            self.heartbeat = now
            batch = queue.pop_due(now, BATCH)
            samples = self.lateness_samples
            for job in batch:
                if job.removed or job.running:
                    continue
                if len(lateness) < samples:
                    lateness.append(now - job.due)
                else:                        # a ring: the most recent lateness_samples
                    at = self._lateness_at
                    lateness[at] = now - job.due
                    self._lateness_at = (at + 1) % samples
                job.running = True
                if job.callback:             # on the loop (TCP_CHECK, HTTP_GET)
                    try:
                        job.checker.start(job.done)
                    except Exception as exc:  # a checker bug must not stop the dispatcher
                        self.crashes += 1
                        if job.running:      # no result yet: this attempt failed. (One that
                            # was given stands: a second would queue the job twice.)
                            self._finished(job, CheckResult(False, 0.0,
                                                            f"checker crashed: {exc!r}"))
                else:
                    ready.put(job)
            if len(batch) == BATCH:
                # Let the loop run its timers and I/O (the replies of the checks just started,
                # a VRRP advert due), then go on. Not sleep(0): gevent runs 50 such callbacks
                # before it looks at the clock, so a backlog started 6,400 checks in one go
                # and a MASTER's adverts waited behind them (issue 17: a false failover at
                # advert_int 0.02 s on a busy host).
                hub.breathe()
                continue
            self._wake.clear()
            earliest = queue.earliest()
            now = clock.now()
            wait = min(earliest - now, 1.0) if earliest is not None else 1.0
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

    def _finished(self, job: Job, result: CheckResult, duration: float | None = None) -> None:
        """A checker's ``done``, once per start: ``done(result)``, or ``done(PASSED,
        duration)`` for a pass with nothing else to say (no CheckResult made per check).
        Runs in a worker or, for callback checkers, in the loop itself: no blocking."""
        job.running = False
        if job.removed:
            return
        now = self._now()
        previous = job.result
        if duration is None:
            duration = result.duration
        elif result is not PASSED and duration != result.duration:
            result = replace(result, duration=duration)
        job.result = result
        job.last_duration = duration
        job.last_at = now
        job.buckets[_bisect_left(DURATION_BUCKETS, duration)] += 1
        job.duration_sum += duration
        health = job.health
        settings = job.settings
        if result is PASSED and previous is PASSED and health.up and not health.failures:
            # The steady case, ten thousand times a second: judge() would say "stay up, next
            # at delay_loop", and nothing differs from the last result (no weight, agent or
            # reply error to tell): counters and the next deadline only.
            job.ok += 1
            job.recent.append(duration)
            next_in = settings.delay_loop
            due = job.due + next_in
            if due > now:
                job.due = due
                self._queue.push(job, next_in)
                if due < self._wake_at:
                    self._wake.set()
            else:
                job.due = now + next_in
                self._push(job)
            return
        self._judged(job, previous, result, duration, now)

    def _judged(self, job: Job, previous: CheckResult | None, result: CheckResult,
                duration: float, now: float) -> None:
        """The rest of _finished for every result but a steady pass: hysteresis, the reply
        error's count, the log lines, the listeners."""
        ok = result.ok
        job.recent.append(duration if ok else -duration)
        if result.reply_error:
            counted = (job.key[2], result.reply_error)
            self.reply_errors[counted] = self.reply_errors.get(counted, 0) + 1
        health = job.health
        settings = job.settings
        if ok and health.up and not health.failures:
            # judge() would say "stay up, next at delay_loop": say it without a Verdict
            # (HTTP_GET's passes come this way, each a CheckResult of its own)
            job.ok += 1
            next_in = settings.delay_loop
            changed = False
        else:
            if ok:
                job.ok += 1
            else:
                job.failed += 1
            verdict = judge(settings, health, ok)
            job.health, next_in, changed = verdict.health, verdict.next_in, verdict.changed
        if not ok and health.up and settings.log_all_failures:
            # keepalived logs only the fall unless told to log every failure while up
            event(log, "check.attempt_failed", virtual_server=job.key[0],
                  real_server=job.key[1], checker=job.key[2],
                  attempt=health.failures + 1, retry=settings.retry,
                  error=result.error or "")
        # A fixed cadence from the last due time, not from when the check ended: the
        # warmup spread survives, and a slow check does not push its server later.
        due = job.due + next_in
        if next_in == settings.delay_loop and due > now:
            job.due = due
            self._push(job, next_in)
        else:
            job.due = now + next_in
            self._push(job)
        if previous is None:
            effect = result.weight is not None or result.agent is not None
        else:
            effect = result.weight != previous.weight or result.agent != previous.agent
        if effect or changed:
            told = job.last if result is PASSED else result     # listeners get it whole
            if effect:
                self._tell(self.effect_listeners, job, told)
            if changed:
                event(log, "check.state", virtual_server=job.key[0], real_server=job.key[1],
                      checker=job.key[2], state="up" if job.health.up else "down",
                      error=result.error or "")
                self._tell(self.listeners, job, told)

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
