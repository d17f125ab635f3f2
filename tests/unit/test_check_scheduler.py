"""The scheduler: results drive up/down; a checker that hangs or raises costs only its own
server an attempt and delays no other check; first checks are spread over warmup."""

from __future__ import annotations

import random
import time

from director import hub
from director.check.checker import CheckResult, CheckSettings
from director.check.scheduler import Scheduler
from director.clock import MonotonicClock

FAST = CheckSettings(delay_loop=0.05, connect_timeout=0.2, retry=0, delay_before_retry=0.01,
                     warmup=0.0, alpha=False)


class Fixed:
    """A greenlet checker answering what it is told, counting its calls."""

    def __init__(self, ok=True):
        self.ok, self.calls = ok, []

    def check(self):
        self.calls.append(time.monotonic())
        return CheckResult(self.ok, 0.001, None if self.ok else "told to fail")


class Hangs:
    def check(self):
        hub.sleep(3600)


class Raises:
    def check(self):
        raise RuntimeError("checker bug")


class Callback:
    """A loop-callback checker (start()), like TCP_CHECK."""

    def __init__(self):
        self.calls = 0

    def start(self, done):
        self.calls += 1
        hub.call_later(0.001, lambda: done(CheckResult(True, 0.001)))


def run_for(scheduler, seconds):
    scheduler.start()
    try:
        hub.sleep(seconds)
    finally:
        scheduler.stop()


def test_hanging_and_raising_checkers_do_not_delay_the_others():
    scheduler = Scheduler(MonotonicClock(), workers=4)
    healthy, fast = Fixed(), Callback()
    hung = scheduler.add(("vs", "hung", "X"), Hangs(), FAST)
    crashing = scheduler.add(("vs", "crash", "X"), Raises(), FAST)
    good = scheduler.add(("vs", "good", "X"), healthy, FAST)
    scheduler.add(("vs", "fast", "X"), fast, FAST)
    run_for(scheduler, 1.6)     # the hung attempt is killed at 0.2 + 1.0 s
    # 1.6 s at a 50 ms loop: about 30 checks each, whatever the broken ones do
    assert len(healthy.calls) >= 20 and fast.calls >= 20
    gaps = [b - a for a, b in zip(healthy.calls, healthy.calls[1:], strict=False)]
    assert max(gaps) < 0.2, gaps
    assert good.health.up and good.last.ok
    assert not hung.health.up and "check hung: killed after 1.2 s" in hung.last.error
    assert not crashing.health.up and "checker crashed: RuntimeError('checker bug')" in \
        crashing.last.error
    assert scheduler.crashes >= 1


def test_listeners_hear_up_and_down_changes_only():
    scheduler = Scheduler(MonotonicClock(), workers=2)
    flaky = Fixed(ok=True)
    job = scheduler.add(("vs", "rs", "X"), flaky, FAST)
    changes = []
    scheduler.listeners.append(lambda job, result: changes.append((job.health.up, result.error)))
    scheduler.start()
    try:
        hub.sleep(0.2)
        flaky.ok = False
        hub.sleep(0.3)
        flaky.ok = True
        hub.sleep(0.3)
    finally:
        scheduler.stop()
    assert changes == [(False, "told to fail"), (True, None)]
    assert job.ok > 2 and job.failed > 2


def test_first_checks_are_spread_over_warmup():
    scheduler = Scheduler(MonotonicClock(), workers=1, rng=random.Random(7))
    settings = CheckSettings(60, 1, 1, 1, warmup=10.0, alpha=False)
    start = time.monotonic()
    dues = sorted(scheduler.add(("vs", str(i), "X"), Fixed(), settings).due - start
                  for i in range(1000))
    assert 0 <= dues[0] < 0.1 and 9.9 < dues[-1] <= 10.01
    assert 4.0 < dues[500] < 6.0          # uniform, not bunched


def test_a_stalled_dispatcher_is_visible():
    scheduler = Scheduler(MonotonicClock(), workers=1)
    assert scheduler.stalled(limit=0.0)
    scheduler.start()
    try:
        hub.sleep(0.05)
        assert not scheduler.stalled(limit=1.0)
    finally:
        scheduler.stop()
