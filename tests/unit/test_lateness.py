"""Lateness: the recorder (director/lateness.py), the main loop's lag monitor and its causes
(director/looplag.py), and what /api/v1/state and /metrics make of them."""

from __future__ import annotations

import gc
import shutil
import subprocess
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest

from director import hub
from director.lateness import BUCKETS, Lateness
from director.looplag import THRESHOLD, MainLoopLag, cause_of, threshold_for
from director.state import DURATION_BUCKETS
from tests.unit.test_web_api import FakeDirector, contract_state
from web import create_app


def test_a_sample_counts_in_the_first_bucket_whose_bound_it_does_not_pass():
    record = Lateness()
    for seconds in (0.0, 0.001, 0.0011, 4.0, 11.0):
        record.add(seconds)
    view = record.view()
    assert view.bounds == BUCKETS == DURATION_BUCKETS       # one scale for durations
    assert view.buckets[0] == 2                         # 0 and exactly 1 ms: le="0.001"
    assert view.buckets[1] == 1                         # 1.1 ms: le="0.0025"
    assert view.buckets[BUCKETS.index(5.0)] == 1
    assert view.buckets[-1] == 1                        # past 10 s: +Inf
    assert view.count == 5 and view.total == pytest.approx(15.0021)


def test_the_recent_samples_are_a_ring_oldest_first():
    record = Lateness(keep=3)
    for seconds in (1, 2, 3, 4, 5):
        record.add(seconds)
    assert record.view().recent == (3, 4, 5)
    assert record.view().count == 5                     # the histogram keeps them all


def test_the_json_has_the_recent_p99_maximum_and_figure():
    record = Lateness()
    for _ in range(99):
        record.add(0.0002)
    record.add(0.3)
    out = record.view().as_json()
    assert out["samples"] == 100 and out["count"] == 100
    assert out["max_seconds"] == 0.3
    assert out["p99_seconds"] == 0.3                    # the 100th of 100
    assert out["recent_buckets"][0] == 99 and out["recent_buckets"][BUCKETS.index(0.5)] == 1
    assert len(out["recent_buckets"]) == len(out["bounds"]) + 1
    assert Lateness().view().as_json()["p99_seconds"] is None


@pytest.mark.parametrize("lag, busy, waiting, kind, text", [
    (4.1, 0.001, 0.002, "held", "held for 4.1 s"),
    (2.0, 1.9, 0.0, "busy", "busy for 1.9 s"),
    (2.0, 0.2, 1.7, "waiting", "waited 1.7 s for a CPU"),
    (3.0, 0.0, None, "held", "this kernel does not say"),
    (0.09, 0.08, 0.0, "busy", "a long computation"),
])
def test_the_cause_is_what_explains_most_of_the_lag(lag, busy, waiting, kind, text):
    cause = cause_of(lag, busy, waiting)
    assert cause.kind == kind and text in cause.text


def test_a_lag_mostly_in_the_garbage_collector_is_named_so():
    cause = cause_of(0.09, 0.08, 0.0, collecting=0.06)
    assert cause.kind == "collecting" and "0.060 s" in cause.text
    assert cause_of(0.09, 0.08, 0.0, collecting=0.02).kind == "busy"
    assert cause_of(2.0, 0.2, 1.7, collecting=0.2).kind == "waiting"


def test_a_real_collection_is_timed_and_named_as_the_stall():
    """A full collection over many tracked objects, run on the loop, is the late tick's
    cause; the state's gc figures count it."""
    events = []
    monitor = MainLoopLag(threshold=0.01, on_late=lambda **fields: events.append(fields))
    garbage = [[i] for i in range(2_000_000)]          # tracked: every pass walks them
    monitor.start()
    try:
        wait_until(lambda: monitor.lag.view().count >= 2, 5.0)
        before = monitor.view().gc_collections[2]
        for _ in range(40):                               # bounded: ~20 ms or more each
            gc.collect()
            if monitor.gc.longest > 0.005:
                break
        wait_until(lambda: monitor.last_late is not None, 5.0)
    finally:
        monitor.stop()
        del garbage
    view = monitor.view()
    assert view.gc_collections[2] > before and view.gc_seconds[2] > 0
    assert view.as_json()["gc"]["longest_pause_seconds"] > 0
    # on a host whose cores are taken the lag may be mostly waiting; never 'held'
    assert monitor.last_late["cause"] in {"collecting", "waiting"}, monitor.last_late
    assert gc.callbacks.count(monitor.gc._callback) == 0       # stop() took it out


def test_the_event_threshold_is_the_fastest_advert_interval_at_most_a_second():
    def config(*intervals):
        return SimpleNamespace(vrrp_instances=[SimpleNamespace(advert_int=i) for i in intervals])
    assert threshold_for(config()) == THRESHOLD == 1.0
    assert threshold_for(config(3, 2)) == 1.0
    assert threshold_for(config(1, 0.25)) == 0.25


def wait_until(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        hub.sleep(0.02)


@pytest.mark.parametrize("stall, kind", [("block", "held"), ("spin", "busy")])
def test_a_stalled_loop_is_measured_and_its_cause_named(stall, kind):
    events = []
    monitor = MainLoopLag(threshold=0.2, on_late=lambda **fields: events.append(fields))
    monitor.start()
    try:
        wait_until(lambda: monitor.lag.view().count >= 2, 5.0)
        end = time.monotonic() + 0.5
        if stall == "block":
            time.sleep(0.5)             # a blocking call on the loop: the process did not run
        else:
            # the loop runs code without yielding, for 0.5 s of CPU: on a host whose cores
            # are all taken (CI beside a bench) that is more than 0.5 s of wall time
            spun = time.thread_time() + 0.5
            while time.thread_time() < spun and time.monotonic() < end + 5:
                pass
        wait_until(lambda: monitor.last_late is not None, 5.0)
    finally:
        monitor.stop()
    # A spinning loop on an overloaded host may wait for a CPU longer than it ran: then
    # 'waiting' is the right name; never 'held', which would mean its CPU time was lost.
    expected = {kind, "waiting"} if kind == "busy" else {kind}
    assert monitor.last_late["cause"] in expected, monitor.last_late
    assert 0.3 <= monitor.last_late["lag_seconds"] <= 6.0, monitor.last_late
    assert len(events) == 1 and events[0]["cause"] in expected
    assert monitor.view().as_json()["lag"]["max_seconds"] >= 0.3


def test_state_and_metrics_carry_the_lag_and_the_lateness():
    lateness = Lateness()
    for seconds in (0.0004, 0.0007, 0.02):
        lateness.add(seconds)
    state = contract_state()
    instances = tuple(replace(view, advert_lateness=lateness.view())
                      for view in state.vrrp.instances)
    loop = MainLoopLag(threshold=0.5)
    loop.lag.add(0.0001)
    loop.lag.add(4.2)
    loop.last_late = {"at": 1764000000.0, "lag_seconds": 4.2, "cause": "held",
                      "text": "held for 4.2 s (...)"}
    state = replace(state, vrrp=replace(state.vrrp, instances=instances),
                    main_loop=loop.view())
    director = FakeDirector()
    director.snapshot = lambda with_jobs=False: state
    client = create_app(director).test_client()

    body = client.get("/api/v1/state").get_json()
    assert body["main_loop"]["lag"]["max_seconds"] == 4.2
    assert body["main_loop"]["last_late"]["cause"] == "held"
    assert body["vrrp"]["instances"][0]["advert_lateness"]["max_seconds"] == 0.02

    text = client.get("/metrics").get_data(as_text=True)
    assert 'director_main_loop_lag_seconds_bucket{le="5.0"} 2.0' in text
    assert 'director_main_loop_lag_seconds_count 2.0' in text
    assert 'director_vrrp_advert_lateness_seconds_bucket{instance="VI_1",le="0.001"} 2.0' \
        in text
    assert 'director_vrrp_advert_lateness_seconds_count{instance="VI_1"} 3.0' in text
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                              capture_output=True, timeout=30)
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), \
            done.stdout + done.stderr


def test_a_failing_listener_does_not_stop_the_measure():
    """The lag is measured by a loop timer, not a supervised greenlet: an exception in its
    listener (the event log) must be counted and the timer armed again, or the figure
    would stop without a word."""
    def broken(**fields):
        raise RuntimeError("listener broke")

    before = hub.crashes.get("main loop lag", 0)
    monitor = MainLoopLag(threshold=0.05, on_late=broken)
    monitor.start()
    try:
        wait_until(lambda: monitor.lag.view().count >= 1, 5.0)
        time.sleep(0.2)                               # one late tick: the listener raises
        counted = monitor.lag.view().count
        wait_until(lambda: monitor.lag.view().count >= counted + 3, 5.0)
    finally:
        monitor.stop()
    assert hub.crashes.get("main loop lag", 0) == before + 1
