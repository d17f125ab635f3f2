"""The scheduler, driven by a FakeClock: results drive up/down; a checker that hangs or raises
costs only its own server an attempt and delays no other check; retries, cadence and first
checks fall exactly where the settings put them.

Every wait of the scheduler goes through its Clock, so advancing a FakeClock runs it tick by
tick: the times below are exact (binary fractions of a second, so sums do not round), and no
test sleeps. The last test runs it on the real clock, as the daemon does."""

from __future__ import annotations

import random

import pytest

from director import hub
from director.check.checker import CheckResult, CheckSettings
from director.check.scheduler import Scheduler
from director.clock import FakeClock, MonotonicClock

T0 = 1000.0                      # FakeClock's start
FAST = CheckSettings(delay_loop=0.125, connect_timeout=0.25, retry=0, delay_before_retry=0.0625,
                     warmup=0.0, alpha=False)


class Fixed:
    """A greenlet checker answering what it is told after ``takes`` seconds of the clock,
    recording when it started."""

    def __init__(self, clock, ok=True, takes=0.0):
        self.clock, self.ok, self.takes, self.calls = clock, ok, takes, []

    def check(self):
        self.calls.append(self.clock.now())
        if self.takes:
            self.clock.sleep(self.takes)
        return CheckResult(self.ok, self.takes, None if self.ok else "told to fail")


class Hangs:
    def __init__(self, clock):
        self.clock = clock

    def check(self):
        self.clock.sleep(3600)


class Raises:
    def check(self):
        raise RuntimeError("checker bug")


class Callback:
    """A loop-callback checker (start()), like TCP_CHECK."""

    def __init__(self, clock):
        self.clock, self.calls = clock, []

    def start(self, done):
        self.calls.append(self.clock.now())
        done(CheckResult(True, 0.0))


class BlocksTheLoop:
    """A callback checker that misbehaves once: its first start() waits a minute, holding
    the dispatcher."""

    def __init__(self, clock):
        self.clock, self.calls = clock, 0

    def start(self, done):
        self.calls += 1
        if self.calls == 1:
            self.clock.sleep(60)
        done(CheckResult(True, 0.0))


def every(step, until, start=T0):
    return [start + step * n for n in range(int((until - start) / step) + 1)]


@pytest.fixture
def clock():
    return FakeClock(start=T0)


@pytest.fixture
def scheduler(clock):
    scheduler = Scheduler(clock, workers=4)
    yield scheduler
    scheduler.stop()


def test_checks_start_on_the_clocks_cadence(clock, scheduler):
    greenlet, callback = Fixed(clock), Callback(clock)
    scheduler.add(("vs", "a", "X"), greenlet, FAST)
    scheduler.add(("vs", "b", "X"), callback, FAST)
    scheduler.start()
    clock.advance(1.0)
    assert greenlet.calls == every(0.125, T0 + 1.0) == callback.calls
    assert max(scheduler.lateness) == 0.0


def test_hanging_and_raising_checkers_do_not_delay_the_others(clock, scheduler):
    healthy, fast = Fixed(clock), Callback(clock)
    hung = scheduler.add(("vs", "hung", "X"), Hangs(clock), FAST)
    crashing = scheduler.add(("vs", "crash", "X"), Raises(), FAST)
    scheduler.add(("vs", "good", "X"), healthy, FAST)
    scheduler.add(("vs", "fast", "X"), fast, FAST)
    scheduler.start()
    clock.advance(1.0)
    assert hung.last is None                    # still hanging at 1 s ...
    clock.advance(1.0)
    # ... killed at its hard deadline, connect_timeout + 1 s, to the tick
    assert not hung.health.up and hung.last.error == "check hung: killed after 1.25 s"
    assert hung.last_at == T0 + 1.25 and hung.last.duration == 1.25
    assert not crashing.health.up and crashing.last.error == \
        "checker crashed: RuntimeError('checker bug')"
    assert scheduler.crashes == crashing.failed == 17      # every 0.125 s from 0 to 2 s
    assert healthy.calls == every(0.125, T0 + 2.0) == fast.calls


def test_listeners_hear_up_and_down_changes_only(clock, scheduler):
    flaky = Fixed(clock)
    job = scheduler.add(("vs", "rs", "X"), flaky, FAST)
    changes = []
    scheduler.listeners.append(lambda job, result: changes.append(
        (clock.now(), job.health.up, result.error)))
    scheduler.start()
    clock.advance(0.25)          # good at 0, 0.125, 0.25
    flaky.ok = False
    clock.advance(0.375)         # failed at 0.375 (down: retry 0), 0.5, 0.625
    flaky.ok = True
    clock.advance(0.375)         # good at 0.75 (up: rise 1), 0.875, 1.0
    assert changes == [(T0 + 0.375, False, "told to fail"), (T0 + 0.75, True, None)]
    assert (job.ok, job.failed) == (6, 3)


def test_a_failed_attempt_is_retried_delay_before_retry_apart(clock, scheduler):
    settings = CheckSettings(delay_loop=0.5, connect_timeout=0.25, retry=2,
                             delay_before_retry=0.0625, warmup=0.0, alpha=False)
    failing = Fixed(clock, ok=False)
    scheduler.add(("vs", "rs", "X"), failing, settings)
    downs = []
    scheduler.listeners.append(lambda job, result: downs.append(clock.now()))
    scheduler.start()
    clock.advance(1.25)
    # the attempt and its two retries, down at the last; then once a delay_loop
    assert failing.calls == [T0, T0 + 0.0625, T0 + 0.125, T0 + 0.625, T0 + 1.125]
    assert downs == [T0 + 0.125]


def test_a_slow_check_keeps_its_servers_cadence(clock, scheduler):
    """The next check is due a delay_loop after the last was due, not after it ended."""
    slow = Fixed(clock, takes=0.0625)
    scheduler.add(("vs", "rs", "X"), slow, CheckSettings(0.25, 0.25, 0, 0.0625, 0.0, False))
    scheduler.start()
    clock.advance(1.0)
    assert slow.calls == every(0.25, T0 + 1.0)


def test_a_job_added_while_the_dispatcher_waits_starts_at_once(clock, scheduler):
    scheduler.add(("vs", "a", "X"), Fixed(clock), CheckSettings(60, 1, 0, 1, 0.0, False))
    scheduler.start()
    clock.advance(0.0625)                         # the dispatcher waits, for up to 1 s
    late = Fixed(clock)
    scheduler.add(("vs", "b", "X"), late, FAST)
    clock.advance(0)                              # let it run; no time passes
    assert late.calls == [T0 + 0.0625]


def test_first_checks_are_spread_over_warmup(clock):
    scheduler = Scheduler(clock, workers=1, rng=random.Random(7))
    settings = CheckSettings(60, 1, 1, 1, warmup=10.0, alpha=False)
    dues = sorted(scheduler.add(("vs", str(i), "X"), Fixed(clock), settings).due - T0
                  for i in range(1000))
    assert 0 <= dues[0] < 0.1 and 9.9 < dues[-1] <= 10.0
    assert 4.0 < dues[500] < 6.0          # uniform, not bunched


def test_a_stalled_dispatcher_is_visible(clock, scheduler):
    scheduler.add(("vs", "a", "X"), Fixed(clock), CheckSettings(60, 1, 0, 1, 0.0, False))
    scheduler.start()
    clock.advance(10)            # nothing due for a minute: the loop still turns every second
    assert not scheduler.stalled(limit=5.0)
    scheduler.add(("vs", "b", "X"), BlocksTheLoop(clock), FAST)
    clock.advance(10)            # its start() holds the dispatcher
    assert scheduler.stalled(limit=5.0)
    clock.advance(60)            # let go
    assert not scheduler.stalled(limit=5.0)


def wait_for(condition, within=5.0):
    """Poll on the real loop until ``condition()`` holds; fail after ``within`` seconds."""
    deadline = MonotonicClock().now() + within
    while not condition():
        assert MonotonicClock().now() < deadline, "condition not met in time"
        hub.sleep(0.005)


def test_on_the_real_clock_checks_run_and_a_hung_one_is_killed():
    clock = MonotonicClock()
    scheduler = Scheduler(clock, workers=2)
    good = Fixed(clock)
    hung = Hangs(clock)
    hung.hard_deadline = 0.05       # the checker's own hard deadline, as SMTP's and HTTP's
    stuck = scheduler.add(("vs", "hung", "X"), hung, FAST)
    scheduler.add(("vs", "good", "X"), good, FAST)
    scheduler.start()
    try:
        wait_for(lambda: len(good.calls) >= 3 and stuck.last is not None)
    finally:
        scheduler.stop()
    assert stuck.last.error == "check hung: killed after 0.05 s"
    assert 0.05 <= stuck.last.duration < 1.0


class Unreadable:
    """A checker whose server's reply cannot be read (director_check_reply_errors_total)."""

    def check(self):
        return CheckResult(False, 0.0, "GET /: reply larger than 16 MiB", reply_error="too_large")


def test_unreadable_replies_are_counted_by_kind_and_reason(clock, scheduler):
    scheduler.add(("vs", "a", "HTTP_GET"), Unreadable(), FAST)
    scheduler.add(("vs", "b", "HTTP_GET"), Unreadable(), FAST)
    scheduler.add(("vs", "c", "HTTP_GET"), Fixed(clock, ok=False), FAST)
    scheduler.start()
    clock.advance(0.25)          # attempts at 0, 0.125, 0.25
    assert scheduler.reply_errors == {("HTTP_GET", "too_large"): 6}


class Toggles:
    """A loop-callback checker that fails the attempts whose numbers are in ``failing``."""

    def __init__(self, clock, failing=()):
        self.clock, self.calls, self.failing = clock, [], set(failing)

    def start(self, done):
        self.calls.append(self.clock.now())
        done(CheckResult(len(self.calls) not in self.failing, 0.0))


def test_cadences_and_retries_mix_in_due_order(clock, scheduler):
    """Jobs of two delay_loops (each its own FIFO) and a job whose retry leaves the cadence
    (the heap) each start exactly on time, and no start is ever late."""
    from dataclasses import replace
    slow = replace(FAST, delay_loop=0.25)
    retrying = replace(FAST, retry=1, delay_before_retry=0.0625)
    fast = [Toggles(clock) for _ in range(3)]
    slow_ones = [Toggles(clock) for _ in range(3)]
    flaky = Toggles(clock, failing={2})
    for number, checker in enumerate(fast):
        scheduler.add(("vs", f"f{number}", "X"), checker, FAST)
    for number, checker in enumerate(slow_ones):
        scheduler.add(("vs", f"s{number}", "X"), checker, slow)
    job = scheduler.add(("vs", "flaky", "X"), flaky, retrying)
    scheduler.start()
    clock.advance(1.0)
    for checker in fast:
        assert checker.calls == every(0.125, T0 + 1.0)
    for checker in slow_ones:
        assert checker.calls == every(0.25, T0 + 1.0)
    # attempt 2 (at 0.125) fails: its retry 0.0625 later, then delay_loop from there
    assert flaky.calls[:3] == [T0, T0 + 0.125, T0 + 0.1875]
    assert flaky.calls[3:] == every(0.125, T0 + 1.0, start=T0 + 0.3125)
    assert job.health.up and max(scheduler.lateness) == 0.0


def test_a_backlog_of_due_checks_lets_the_loop_run_timers_between_batches():
    """Issue 17: a dispatcher behind (start-up, a stalled or CPU-starved process) starts what is
    due BATCH at a time. Between two batches the loop must run its timers and I/O (a VRRP
    instance's advert timer, the replies of the checks just started): ``sleep(0)`` only
    switches to greenlets already runnable, and gevent runs 50 such callbacks before it
    looks at the clock, so 50 batches (6,400 checks) went by before a timer could fire, and
    on a busy host a MASTER's adverts stopped for longer than its backups' master down
    interval. Counted, not timed: how many checks start between two turns of a timer."""
    from director.check.scheduler import BATCH
    clock = MonotonicClock()
    scheduler = Scheduler(clock, workers=0)
    checker = Callback(clock)
    settings = CheckSettings(delay_loop=3600, connect_timeout=1, retry=0,
                             delay_before_retry=1, warmup=0.0, alpha=False)
    total = 100 * BATCH
    for number in range(total):
        scheduler.add(("vs", f"rs{number}", "TCP_CHECK"), checker, settings)
    seen: list[int] = []

    def timer_turns():                  # as the advert timer of a VRRP instance
        for _ in range(100_000):
            seen.append(len(checker.calls))
            if seen[-1] >= total:
                return
            hub.sleep(0.0002)

    probe = hub.spawn(timer_turns)
    scheduler.start()
    try:
        wait_for(lambda: len(checker.calls) >= total, within=30)
        probe.join(timeout=5)
    finally:
        scheduler.stop()
        probe.kill()
    gaps = [b - a for a, b in zip(seen, seen[1:])]
    assert max(gaps) <= 4 * BATCH, f"{max(gaps)} checks started between two timer turns"
