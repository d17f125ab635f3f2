"""The scheduler's deadlines (check/duequeue.py) and the steady pass's bookkeeping: jobs come
out in (due, push order) over every FIFO and the heap, whatever the batch limit; a history
entry is a signed float; a shared PASSED is given whole to a reader."""

from __future__ import annotations

import random

from director.check.checker import PASSED, CheckResult, CheckSettings
from director.check.duequeue import DueQueue
from director.check.hysteresis import Health
from director.check.scheduler import HISTORY, Job, history_point


class Item:
    __slots__ = ("name", "due", "seq")

    def __init__(self, name, due):
        self.name, self.due, self.seq = name, due, 0

    def __repr__(self):
        return f"{self.name}@{self.due}"


def names(items):
    return [item.name for item in items]


def test_an_empty_queue_has_nothing_due():
    queue = DueQueue()
    assert queue.pop_due(1e9, 10) == [] and queue.earliest() is None and len(queue) == 0


def test_fifos_and_the_heap_merge_in_due_then_push_order():
    queue = DueQueue()
    queue.push(Item("a1", 1.0), cadence=1.0)
    queue.push(Item("b1", 1.0), cadence=2.0)      # same due, pushed later: after a1
    queue.push(Item("h", 0.5))                     # the heap, earliest
    queue.push(Item("a2", 1.5), cadence=1.0)
    queue.push(Item("tie", 1.0))                   # the heap, same due as a1, b1: after them
    queue.push(Item("b2", 3.0), cadence=2.0)
    assert queue.earliest() == 0.5 and len(queue) == 6
    assert names(queue.pop_due(0.9, 100)) == ["h"]
    assert names(queue.pop_due(2.0, 100)) == ["a1", "b1", "tie", "a2"]
    assert queue.earliest() == 3.0
    assert names(queue.pop_due(10.0, 100)) == ["b2"] and len(queue) == 0


def test_a_push_that_would_break_a_fifos_order_goes_to_the_heap():
    queue = DueQueue()
    queue.push(Item("late", 5.0), cadence=1.0)
    queue.push(Item("early", 2.0), cadence=1.0)    # before the FIFO's last: the heap
    assert names(queue.pop_due(10.0, 100)) == ["early", "late"]


def test_the_limit_cuts_a_batch_and_the_next_goes_on_where_it_stopped():
    queue = DueQueue()
    for number in range(10):
        queue.push(Item(str(number), float(number)), cadence=1.0)
    assert names(queue.pop_due(100.0, 4)) == ["0", "1", "2", "3"]
    assert names(queue.pop_due(100.0, 4)) == ["4", "5", "6", "7"]
    assert names(queue.pop_due(100.0, 4)) == ["8", "9"]


def test_pop_due_matches_a_sort_on_random_pushes():
    """Against the obvious model: every item pushed, sorted by (due, push order), taken
    in slices; pushes land on three FIFOs or the heap, out of order or not."""
    rng = random.Random(17)
    for _ in range(200):
        queue = DueQueue()
        pushed = []
        for number in range(rng.randrange(1, 40)):
            item = Item(str(number), float(rng.randrange(0, 12)))
            queue.push(item, rng.choice((None, 1.0, 2.0, 3.0)))
            pushed.append(item)
        expected = sorted(pushed, key=lambda item: (item.due, int(item.name)))
        now = float(rng.randrange(0, 14))
        limit = rng.randrange(1, 10)
        got = []
        while True:
            batch = queue.pop_due(now, limit)
            assert len(batch) <= limit
            got.extend(batch)
            if len(batch) < limit:
                break
        assert names(got) == names(item for item in expected if item.due <= now)
        assert len(queue) == len(pushed) - len(got)
        left = [item for item in expected if item.due > now]
        assert queue.earliest() == (left[0].due if left else None)


def test_a_history_entry_is_the_duration_negated_for_a_failure():
    assert history_point(0.25) == (0.25, True)
    assert history_point(-0.25) == (0.25, False)
    assert history_point(0.0) == (0.0, True)
    assert history_point(-0.0) == (0.0, False)      # a failure that took no time


SETTINGS = CheckSettings(delay_loop=1.0, connect_timeout=1.0, retry=0, delay_before_retry=1.0,
                         warmup=0.0, alpha=False)


def test_a_jobs_last_result_is_whole_for_its_readers():
    job = Job(("vs", "rs", "TCP_CHECK"), None, SETTINGS, Health(up=True))
    assert job.last is None and job.history() == []
    job.result, job.last_duration = PASSED, 0.125
    last = job.last
    assert last == CheckResult(True, 0.125) and last is not PASSED
    job.last = CheckResult(False, 0.5, "refused")        # set whole (tests, a migration)
    assert job.result.error == "refused" and job.last_duration == 0.5
    job.recent.extend([0.5] * (HISTORY + 3) + [-0.25])
    assert len(job.history()) == HISTORY and job.history()[-1] == (0.25, False)


class Scripted:
    """A loop checker that ends its attempts as told: ("pass", duration) through the shared
    PASSED, or a CheckResult of its own."""

    def __init__(self, script):
        self.script = list(script)

    def start(self, done):
        step = self.script.pop(0) if self.script else ("pass", 0.001)
        if step[0] == "pass":
            done(PASSED, step[1])
        else:
            done(step[1])


def test_steady_passes_keep_every_observable_of_a_result():
    """The steady pass (no CheckResult made) counts, times, remembers and schedules as any
    result does; the listeners of a change and of an effect get whole results."""
    from director.check.scheduler import Scheduler
    from director.clock import FakeClock
    from director.state import DURATION_BUCKETS

    clock = FakeClock(start=1000.0)
    scheduler = Scheduler(clock, workers=0)
    settings = CheckSettings(delay_loop=0.125, connect_timeout=0.25, retry=0,
                             delay_before_retry=0.0625, warmup=0.0, alpha=False)
    checker = Scripted([("pass", 0.002), ("pass", 0.003), ("fail", CheckResult(False, 0.5, "no")),
                        ("pass", 0.004), ("result", CheckResult(True, 0.001, weight=7)),
                        ("pass", 0.006)])
    job = scheduler.add(("vs", "rs", "TCP_CHECK"), checker, settings)
    changes, effects = [], []
    scheduler.listeners.append(lambda job, result: changes.append(result))
    scheduler.effect_listeners.append(lambda job, result: effects.append(result))
    scheduler.start()
    try:
        clock.advance(0.25)                  # attempts at 0, 0.125, 0.25
        assert (job.ok, job.failed) == (2, 1) and not job.health.up
        assert job.last == CheckResult(False, 0.5, "no") and job.last_at == 1000.25
        clock.advance(0.125)                 # the pass at 0.375 brings it up
        assert job.health.up and changes[-1] == CheckResult(True, 0.004)
        assert job.last == CheckResult(True, 0.004) and job.result is PASSED
        clock.advance(0.25)                  # a weight (an effect), then a pass (another)
        assert [result.weight for result in effects] == [7, None]
        assert effects[-1] == CheckResult(True, 0.006)
        clock.advance(0.125)                 # a steady pass more
        assert job.history() == [(0.002, True), (0.003, True), (0.5, False), (0.004, True),
                                 (0.001, True), (0.006, True), (0.001, True)]
        assert sum(job.buckets) == 7 and job.buckets[len(DURATION_BUCKETS)] == 0
        assert abs(job.duration_sum - 0.517) < 1e-9 and job.last_duration == 0.001
        assert len(changes) == 2 and max(scheduler.lateness) == 0.0
        assert job.due == 1000.0 + 7 * 0.125
    finally:
        scheduler.stop()


class ReportsThenRaises:
    """A loop checker with a bug: it gives its result, then raises."""

    def __init__(self):
        self.calls = 0

    def start(self, done):
        self.calls += 1
        done(PASSED, 0.001)
        raise RuntimeError("after done")


def test_a_checker_that_raises_after_its_result_is_counted_once_and_stays_on_cadence():
    """The crash is counted, the result it gave stands, and the job is queued once: no
    second result, no check of its own or of its neighbours started off its cadence."""
    from director.check.scheduler import Scheduler
    from director.clock import FakeClock

    clock = FakeClock(start=1000.0)
    scheduler = Scheduler(clock, workers=0)
    settings = CheckSettings(delay_loop=0.125, connect_timeout=0.25, retry=0,
                             delay_before_retry=0.0625, warmup=0.0, alpha=False)
    buggy = ReportsThenRaises()
    job = scheduler.add(("vs", "bug", "X"), buggy, settings)
    neighbours = [Scripted([]) for _ in range(3)]
    others = [scheduler.add(("vs", f"n{number}", "X"), checker, settings)
              for number, checker in enumerate(neighbours)]
    scheduler.start()
    try:
        clock.advance(1.0)               # attempts at 0, 0.125, ... 1.0: nine each
        assert buggy.calls == 9 and scheduler.crashes == 9
        assert (job.ok, job.failed) == (9, 0) and job.health.up
        assert [(other.ok, other.failed) for other in others] == [(9, 0)] * 3
        assert max(scheduler.lateness) == 0.0
    finally:
        scheduler.stop()
