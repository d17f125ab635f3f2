"""The clocks the scheduler waits on: FakeClock wakes sleepers, waiters and timers in deadline
order, each at its own deadline, as a test advances it; MonotonicClock does the same on the
real loop. Used as a plain number, FakeClock loads no gevent (the pure VRRP tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from director import hub
from director.clock import FakeClock, MonotonicClock

T0 = 1000.0


def spawn(function, *args):
    return hub.spawn(function, *args, report=False)


def test_sleepers_wake_in_order_each_at_its_own_time():
    clock, woken = FakeClock(T0), []

    def sleeper(name, seconds, times):
        for _ in range(times):
            clock.sleep(seconds)
            woken.append((name, clock.now()))

    spawn(sleeper, "a", 0.25, 3)
    spawn(sleeper, "b", 0.5, 1)
    clock.advance(0)                       # they start and go to sleep; no time passes
    assert woken == []
    assert clock.advance(0.625) == T0 + 0.625
    # a sleeps again on waking, within the same advance, and is woken again on time; of
    # two deadlines at one time, the one armed first goes first
    assert woken == [("a", T0 + 0.25), ("b", T0 + 0.5), ("a", T0 + 0.5)]
    clock.advance(1)
    assert woken[-1] == ("a", T0 + 0.75)


def test_wait_returns_when_the_event_is_set_or_at_its_timeout():
    clock, results = FakeClock(T0), []
    event = hub.Event()

    def waiter(timeout):
        results.append((clock.wait(event, timeout), clock.now()))

    spawn(waiter, 1.0)
    spawn(waiter, 0.25)
    clock.advance(0.5)                     # the short one times out at its deadline
    assert results == [(False, T0 + 0.25)]
    event.set()
    clock.advance(0)                       # the long one sees the event, at once
    assert results == [(False, T0 + 0.25), (True, T0 + 0.5)]
    clock.advance(1)
    assert len(results) == 2               # its timer went with it
    assert clock.wait(event, 5) is True    # set already: no wait at all


def test_a_timeout_raises_itself_at_its_deadline_unless_closed():
    clock, seen = FakeClock(T0), []

    def guarded(seconds, work):
        timer = clock.timeout(seconds)
        try:
            clock.sleep(work)
            seen.append(("done", clock.now()))
        except BaseException as fired:
            seen.append(("expired" if fired is timer else "other", clock.now()))
        finally:
            timer.close()
        try:
            clock.sleep(10)                # a timer closed in time never fires later
            seen.append(("slept", clock.now()))
        except BaseException:
            seen.append(("late", clock.now()))

    spawn(guarded, 0.5, 2.0)
    spawn(guarded, 1.0, 0.25)
    clock.advance(20)
    assert seen == [("done", T0 + 0.25), ("expired", T0 + 0.5), ("slept", T0 + 10.25),
                    ("slept", T0 + 10.5)]


def test_moving_it_back_is_refused():
    clock = FakeClock(T0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(T0 - 1)
    assert clock.set(T0 + 2) == T0 + 2 and clock.wall() == T0 + 2 + 1_764_000_000.0


def test_as_a_plain_number_it_loads_no_gevent():
    code = ("import sys\nfrom director.clock import FakeClock\nclock = FakeClock(0)\n"
            "clock.advance(5)\nclock.set(7)\nassert clock.now() == 7\n"
            "print('gevent' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_monotonic_clock_waits_on_the_real_loop():
    clock = MonotonicClock()
    event = hub.Event()
    started = clock.now()
    assert clock.wait(event, 0.01) is False and clock.now() - started >= 0.01
    hub.spawn(event.set, report=False)
    assert clock.wait(event, 5.0) is True and clock.now() - started < 5.0
    timer = clock.timeout(0.01)
    with pytest.raises(BaseException) as raised:
        clock.sleep(5.0)
    timer.close()
    assert raised.value is timer and clock.now() - started < 5.0
