"""The check scheduler: every (virtual server, real server, checker) is a Job with a deadline.

One greenlet keeps the deadlines in a heap and starts what is due. Checkers with ``start()``
(TCP) run as callbacks on the loop; the others run in a bounded set of worker greenlets, each
attempt under a hard deadline (the checker's ``hard_deadline`` when it has one: an SMTP
conversation or several urls take longer than one connect_timeout), so a checker that hangs
or raises costs its own server one failed attempt and delays nobody else. First checks are spread over ``warmup`` (jitter, never
a thundering herd). The pure rule of hysteresis.py turns results into up/down.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import hub
from ..clock import Clock
from ..log import event
from .base import CheckResult, CheckSettings
from .hysteresis import Health, initial_health, judge

log = logging.getLogger("director.check")

HARD_DEADLINE_SLACK = 1.0       # beyond connect_timeout before a worker kills an attempt
LATENESS_SAMPLES = 4096         # the most recent start delays, for the bench and the metrics
BATCH = 128                     # checks started per loop turn before the loop may run again


@dataclass(eq=False)
class Job:
    key: tuple[str, str, str]            # virtual server, real server, checker kind
    checker: Any
    settings: CheckSettings
    health: Health
    due: float = 0.0
    running: bool = False
    last: CheckResult | None = None
    last_at: float | None = None         # wall clock of the last result
    counts: dict[str, int] = field(default_factory=dict)    # "ok"/"failed" -> attempts
    removed: bool = False
    callback: bool = False               # the checker runs on the loop (start()), no greenlet
    done: Any = None                     # bound once: called with the result


class Scheduler:
    def __init__(self, clock: Clock, workers: int = 256,
                 rng: random.Random | None = None) -> None:
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
        self.heartbeat = 0.0                 # last time the loop turned (for /healthz)
        self.lateness: list[float] = []      # recent start delays past the due time
        self._lateness_at = 0
        self.crashes = 0

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

    def remove(self, job: Job) -> None:
        job.removed = True
        self.jobs.remove(job)

    def _push(self, job: Job) -> None:
        heap = self._heap
        if not heap or job.due < heap[0][0]:    # only an earlier deadline needs a wake-up
            self._wake.set()
        heapq.heappush(heap, (job.due, next(self._sequence), job))

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        self._greenlets.append(hub.spawn(self._dispatch, name="check scheduler"))
        for number in range(self.workers):
            self._greenlets.append(hub.spawn(self._work, name=f"check worker {number}"))

    def stop(self) -> None:
        hub.killall(self._greenlets, block=False)
        self._greenlets.clear()

    def _dispatch(self) -> None:
        """Start what is due, at most BATCH per loop turn: the results of the checks just
        started must be read while they are fresh, or they look slow and fall due together
        again (a herd that grows with every round)."""
        heap = self._heap
        clock = self.clock
        while True:
            now = clock.now()
            self.heartbeat = now
            started = 0
            while heap and heap[0][0] <= now and started < BATCH:
                due, _, job = heapq.heappop(heap)
                if job.removed or job.running:
                    continue
                self._note_lateness(now - due)
                job.running = True
                started += 1
                if job.callback:
                    self._start_callback(job)
                else:
                    self._ready.put(job)
            if started == BATCH:
                hub.sleep(0)                 # let the loop deliver results, then go on
                continue
            self._wake.clear()
            wait = min(heap[0][0] - clock.now(), 1.0) if heap else 1.0
            if wait > 0:
                self._wake.wait(wait)

    def _note_lateness(self, late: float) -> None:
        samples = self.lateness
        if len(samples) < LATENESS_SAMPLES:
            samples.append(late)
        else:                                  # a ring: the most recent LATENESS_SAMPLES
            samples[self._lateness_at] = late
            self._lateness_at = (self._lateness_at + 1) % LATENESS_SAMPLES

    def _start_callback(self, job: Job) -> None:
        try:
            job.checker.start(job.done)
        except Exception as exc:            # a checker bug must not stop the dispatcher
            self.crashes += 1
            self._finished(job, CheckResult(False, 0.0, f"checker crashed: {exc!r}"))

    def _work(self) -> None:
        while True:
            job = self._ready.get()
            deadline = getattr(job.checker, "hard_deadline", None) or \
                job.settings.connect_timeout + HARD_DEADLINE_SLACK
            started = self.clock.now()
            attempt = hub.spawn(job.checker.check, name=f"check {job.key[1]}", report=False)
            attempt.join(deadline)
            if not attempt.ready():
                attempt.kill(block=False)
                result = CheckResult(False, self.clock.now() - started,
                                     f"check hung: killed after {deadline:g} s")
            elif not attempt.successful():
                self.crashes += 1
                result = CheckResult(False, self.clock.now() - started,
                                     f"checker crashed: {attempt.exception!r}")
            else:
                result = attempt.value
            self._finished(job, result)

    def _finished(self, job: Job, result: CheckResult) -> None:
        """Runs in a worker or, for callback checkers, in the loop itself: no blocking."""
        job.running = False
        if job.removed:
            return
        job.last, job.last_at = result, self.clock.wall()
        outcome = "ok" if result.ok else "failed"
        job.counts[outcome] = job.counts.get(outcome, 0) + 1
        verdict = judge(job.settings, job.health, result.ok)
        job.health = verdict.health
        now = self.clock.now()
        if verdict.next_in == job.settings.delay_loop and job.due + verdict.next_in > now:
            # A fixed cadence from the last due time, not from when the check ended: the
            # warmup spread survives, and a slow check does not push its server later.
            job.due += verdict.next_in
        else:
            job.due = now + verdict.next_in
        self._push(job)
        if verdict.changed:
            event(log, "check.state", virtual_server=job.key[0], real_server=job.key[1],
                  checker=job.key[2], state="up" if job.health.up else "down",
                  error=result.error or "")
            for listener in list(self.listeners):
                try:
                    listener(job, result)
                except Exception as exc:     # a listener bug must not stop the checks
                    event(log, "check.listener_error", logging.ERROR, error=repr(exc))

    def stalled(self, limit: float = 5.0) -> bool:
        return self.clock.now() - self.heartbeat > limit
