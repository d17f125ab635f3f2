"""Retry, rise and alpha, written once for every checker (keepalived repeats it at the end
of seven checker files).

keepalived's rule: an attempt that fails is retried ``retry`` times, ``delay_before_retry``
apart; when the last retry fails the server goes down, and checking resumes every
``delay_loop``. One success brings it back up; ``rise`` (HAProxy's, which keepalived lacks)
asks for that many successive good checks first. ``alpha`` starts a server down.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .checker import CheckSettings


@dataclass(frozen=True, slots=True)
class Health:
    up: bool
    failures: int = 0          # failed attempts in a row in the current check
    successes: int = 0         # good checks in a row while down (toward rise)


def initial_health(settings: CheckSettings) -> Health:
    return Health(up=not settings.alpha)


@dataclass(frozen=True, slots=True)
class Verdict:
    health: Health
    next_in: float             # seconds until the next attempt
    changed: bool              # up/down flipped with this result


def judge(settings: CheckSettings, health: Health, ok: bool) -> Verdict:
    if ok:
        if health.up:          # the common case: keep the same (immutable) Health
            steady = health if not health.failures else Health(up=True)
            return Verdict(steady, settings.delay_loop, False)
        successes = health.successes + 1
        if successes >= settings.rise:
            return Verdict(Health(up=True), settings.delay_loop, True)
        # fast_recovery (keepalived: no delay_loop while a recovering server is checked
        # again): the remaining good checks of rise follow at once
        return Verdict(Health(up=False, successes=successes),
                       0.0 if settings.fast_recovery else settings.delay_loop, False)
    if not health.up:          # already down: no retries, just the next check
        return Verdict(Health(up=False), settings.delay_loop, False)
    failures = health.failures + 1
    if failures <= settings.retry:
        return Verdict(replace(health, failures=failures, successes=0),
                       settings.delay_before_retry, False)
    return Verdict(Health(up=False), settings.delay_loop, health.up)
