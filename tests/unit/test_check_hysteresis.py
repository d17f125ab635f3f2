"""Retry, rise and alpha with a FakeClock, and the down-time bound the issue names:
delay_loop + retry x (connect_timeout + delay_before_retry) + 1 s."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from director.check.base import CheckSettings, resolve_settings
from director.check.hysteresis import Health, initial_health, judge
from director.clock import FakeClock

SETTINGS = CheckSettings(delay_loop=6, connect_timeout=3, retry=3, delay_before_retry=2,
                         warmup=6, alpha=False)


def test_a_failure_is_retried_then_the_server_goes_down():
    health = initial_health(SETTINGS)
    steps = []
    for _ in range(4):
        verdict = judge(SETTINGS, health, ok=False)
        health = verdict.health
        steps.append((health.up, verdict.next_in, verdict.changed))
    assert steps == [(True, 2, False), (True, 2, False), (True, 2, False), (False, 6, True)]
    assert judge(SETTINGS, health, ok=False) == judge(SETTINGS, Health(up=False), ok=False)
    assert judge(SETTINGS, health, ok=False).next_in == 6          # no retries while down


def test_one_success_clears_the_failures_and_brings_it_up():
    verdict = judge(SETTINGS, Health(up=True, failures=2), ok=True)
    assert verdict.health == Health(up=True) and not verdict.changed
    verdict = judge(SETTINGS, Health(up=False), ok=True)
    assert verdict.health.up and verdict.changed and verdict.next_in == 6


def test_rise_needs_successive_successes():
    settings = CheckSettings(6, 3, 1, 1, 6, alpha=True, rise=3)
    health = initial_health(settings)
    assert health.up is False
    for expected in (False, False, True):
        verdict = judge(settings, health, ok=True)
        health = verdict.health
        assert health.up is expected
    health = judge(settings, Health(up=False, successes=2), ok=False).health
    assert health.successes == 0


@pytest.mark.parametrize("retry, delay_before_retry, connect_timeout", [(0, 1, 3), (1, 1, 5),
                                                                         (3, 2, 3)])
def test_a_dead_server_is_down_within_the_bound(retry, delay_before_retry, connect_timeout):
    """Simulate the scheduler with a FakeClock: the server dies just after a good check and
    every attempt takes the whole connect_timeout."""
    settings = CheckSettings(delay_loop=6, connect_timeout=connect_timeout, retry=retry,
                             delay_before_retry=delay_before_retry, warmup=0, alpha=False)
    clock = FakeClock(start=0)
    health = judge(settings, initial_health(settings), ok=True).health
    died = clock.now()
    clock.advance(settings.delay_loop)
    for _ in range(100):
        clock.advance(connect_timeout)
        verdict = judge(settings, health, ok=False)
        health = verdict.health
        if verdict.changed:
            break
        clock.advance(verdict.next_in)
    assert not health.up
    bound = settings.delay_loop + retry * (connect_timeout + delay_before_retry) + 1
    assert clock.now() - died <= bound + connect_timeout


def test_settings_inherit_from_checker_then_real_then_virtual_server():
    vs = NS(delay_loop=10.0, connect_timeout=None, retry=None, delay_before_retry=None,
            warmup=None, alpha=False)
    rs = NS(delay_loop=None, connect_timeout=4.0, retry=2, delay_before_retry=None,
            warmup=None, alpha=True)
    checker = NS(kind="HTTP_GET", delay_loop=None, connect_timeout=None, retry=5,
                 delay_before_retry=None, warmup=None, alpha=False)
    settings = resolve_settings(vs, rs, checker)
    assert settings == CheckSettings(delay_loop=10.0, connect_timeout=4.0, retry=5,
                                     delay_before_retry=3.0, warmup=10.0, alpha=True)
    dns = resolve_settings(vs, NS(**{**rs.__dict__, "retry": None}),
                           NS(**{**checker.__dict__, "kind": "DNS_CHECK", "retry": None}))
    assert (dns.retry, dns.delay_before_retry) == (3, 10.0)
    assert dns.rise == 1
    rising = resolve_settings(NS(**{**vs.__dict__, "rise": 3}), rs, checker)
    assert rising.rise == 3
