"""check/poller.py: sockets waited on in one epoll set, deadlines swept from FIFOs.

Real sockets (a socketpair) and the real loop; each wait is bounded by a deadline."""

from __future__ import annotations

import socket
import time

from director import hub
from director.check.checker import CheckResult
from director.check.poller import EPOLLIN, SWEEP_PERIOD, Poller

WITHIN = 5.0


def wait_for(condition, within=WITHIN):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        hub.sleep(0.005)


class Attempt:
    def __init__(self, timeout, live=True):
        self.deadline = time.monotonic() + timeout
        self.live = live
        self.events: list[int] = []
        self.expired_at = None

    def on_event(self, events):
        self.events.append(events)

    def expire(self):
        self.live = False
        self.expired_at = time.monotonic()


def test_a_ready_socket_reaches_its_attempt_and_a_forgotten_one_does_not():
    poller = Poller()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        first, second = Attempt(60), Attempt(60)
        poller.want(a.fileno(), EPOLLIN, first)
        poller.want(c.fileno(), EPOLLIN, second)
        poller.forget(c.fileno())
        b.send(b"x")
        d.send(b"y")
        wait_for(lambda: first.events)
        assert first.events[0] & EPOLLIN
        hub.sleep(0.05)
        assert second.events == []
    finally:
        for sock in (a, b, c, d):
            sock.close()


def test_deadlines_expire_in_order_and_ended_attempts_are_skipped():
    poller = Poller()
    short, long_, ended = Attempt(0.05), Attempt(0.2), Attempt(0.01, live=False)
    other = Attempt(0.1)                    # another timeout value: a FIFO of its own
    for timeout, attempt in ((0.05, short), (0.2, long_), (0.01, ended), (0.1, other)):
        poller.expire_after(timeout, attempt)
    wait_for(lambda: long_.expired_at is not None)
    assert ended.expired_at is None
    for attempt in (short, other, long_):
        assert attempt.expired_at >= attempt.deadline
        assert attempt.expired_at < attempt.deadline + SWEEP_PERIOD + 1.0
    assert short.expired_at <= other.expired_at <= long_.expired_at
    assert not poller._sweeping or wait_for(lambda: not poller._sweeping) is None


def test_passed_equals_the_dataclass():
    result = CheckResult.passed(0.25)
    assert result == CheckResult(True, 0.25)
    assert result.detail == {} and result.detail is not CheckResult.passed(0.25).detail
    assert repr(result) == repr(CheckResult(True, 0.25))


def test_an_attempt_that_raises_is_logged_and_still_expires(caplog):
    poller = Poller()
    a, b = socket.socketpair()

    class Broken(Attempt):
        def on_event(self, events):
            raise RuntimeError("checker bug")

    try:
        broken, fine = Broken(0.1), Attempt(60)
        c, d = socket.socketpair()
        poller.want(a.fileno(), EPOLLIN, broken)
        poller.expire_after(0.1, broken)
        poller.want(c.fileno(), EPOLLIN, fine)
        b.send(b"x")
        d.send(b"y")
        wait_for(lambda: broken.expired_at is not None and fine.events)
        assert poller.errors == 1
        assert "check.poller_error" in caplog.text and "checker bug" in caplog.text
    finally:
        for sock in (a, b, c, d):
            sock.close()


class Answers(Attempt):
    """Ends at its first event, as a TCP_CHECK connect does."""

    def on_event(self, events):
        self.events.append(events)
        self.live = False


def test_after_a_stall_what_answered_is_not_a_timeout(monkeypatch):
    """The loop stalls past every deadline while all the sockets become ready (more than
    one poll's worth): the sweep that follows must credit them, not time them out."""
    import director.check.poller as poller_module
    monkeypatch.setattr(poller_module, "BATCH_EVENTS", 4)
    poller = Poller()
    pairs = [socket.socketpair() for _ in range(10)]
    try:
        attempts = [Answers(0.01) for _ in pairs]
        for (mine, theirs), attempt in zip(pairs, attempts):
            poller.want(mine.fileno(), EPOLLIN, attempt)
            poller.expire_after(0.01, attempt)
            theirs.send(b"x")
        time.sleep(0.1)                   # the stall: no yield to the loop
        wait_for(lambda: all(not attempt.live for attempt in attempts))
        assert [attempt.expired_at for attempt in attempts] == [None] * 10
        assert all(attempt.events for attempt in attempts)
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()
