"""Slow start (director extension ``slow_start SECONDS``, HAProxy's ``slowstart``): a real
server that comes back ramps its weight up to its full weight over that time, so that a cold
server (empty caches, connection pools, JIT) is not handed its whole share of new
connections at once.

Pure: the ramp is a function of (since, now, duration) and the tracker (``Ramps``) is told
the time; the load balancer owns one, calls ``observe`` with what the checks say and wakes
up at ``next_step``.

- What ramps: a real server becoming *serving* (up and not drained) again: a rise after it
  was seen failing (its checks failed at least once since the daemon started, or it went
  down), or a restore from a drain (the operator's maintenance: it had no new connections
  for the drain's length, like HAProxy leaving MAINT). What does not: the first verdict on
  a server (at daemon start-up, and for one a reload adds), even with ``alpha``: as HAProxy
  ("slowstart is never applied when haproxy starts"), a director restarted under load must
  not cut every server to weight 1; a server that starts down with ``alpha`` and whose
  first checks pass comes in at full weight.
- The shape: ``STEPS`` equal steps, each at least ``MIN_STEP`` seconds; the weight at step k
  of n is ceil(weight * k / n), at least 1 (0 would leave a pool whose only server ramps
  with nobody to serve; HAProxy starts at 1 too): from 1 at the rise to the full weight
  ``duration`` seconds later, one kernel write per step and server at most.
- It scales the weight the checks ask for (misc_dynamic, FILE_CHECK) like the configured
  one; a drain wins (0); the quorum counts a ramping server at its full weight (the ramp
  shares new connections out, it does not decide whether the service is up).
- A server that goes down, or is drained, during its ramp loses it; the next rise starts
  a new one. A reload that changes only slow_start keeps the ramps in progress (their start
  stays; the new duration applies from the next step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Hashable

STEPS = 20                  # steps of a ramp: at least the 10 issue 16 asks for
MIN_STEP = 0.1              # seconds: no faster (each step is a converge)
MIN_SECONDS = 1.0           # the shortest slow_start: 10 steps of MIN_STEP
EPSILON = 0.001             # a timer firing this early still counts as on its step


def step_seconds(duration: float) -> float:
    return max(MIN_STEP, duration / STEPS)


def fraction(since: float, now: float, duration: float) -> float | None:
    """How far along its ramp a server that became serving at ``since`` is at ``now``, in
    whole steps (so the weight changes only on a step); None when there is no ramp (off,
    or over)."""
    if duration <= 0 or now - since + EPSILON >= duration:
        return None
    step = step_seconds(duration)
    steps = math.floor(max(0.0, now - since + EPSILON) / step)
    return min(1.0, steps * step / duration)


def ramped_weight(weight: int, ramp: float | None) -> int:
    """``weight`` (configured or asked for by the checks) at ``ramp`` of its ramp."""
    if ramp is None or weight <= 0:
        return weight
    return max(1, min(weight, math.ceil(weight * ramp - 1e-9)))


@dataclass
class Ramp:
    since: float                # monotonic: when the server became serving
    duration: float             # seconds, as last configured


class Ramps:
    """Each real server's last seen state and the ramps in progress, by a key the caller
    chooses (the load balancer: virtual server name, address, port)."""

    def __init__(self) -> None:
        self.seen: dict[Hashable, tuple[bool, bool]] = {}      # key -> (up, drained)
        self.ramps: dict[Hashable, Ramp] = {}
        self.went_down: set[Hashable] = set()  # seen going from up to down

    def observe(self, key: Hashable, up: bool, drained: bool, now: float,
                seen_failed: Callable[[], bool] = lambda: True) -> bool:
        """What the checks say of a server now. ``seen_failed``: whether its checks have
        ever failed (asked only on a rise). True if this starts a ramp."""
        before = self.seen.get(key)
        if before == (up, drained):
            return False
        self.seen[key] = (up, drained)
        if before is not None and before[0] and not up:
            self.went_down.add(key)
        if not up or drained:
            self.ramps.pop(key, None)
            return False
        if before is None:                      # first verdict: start-up, or a reload
            return False
        was_up, was_drained = before
        if (was_up and was_drained) or \
                (not was_up and (key in self.went_down or seen_failed())):
            self.ramps[key] = Ramp(now, 0.0)
            return True
        return False

    def fraction(self, key: Hashable, now: float, duration: float) -> float | None:
        """The ramp of ``key`` now, with ``duration`` its slow_start; None: full weight. A
        ramp that is over is forgotten."""
        ramp = self.ramps.get(key)
        if ramp is None:
            return None
        ramp.duration = duration
        found = fraction(ramp.since, now, duration)
        if found is None:
            del self.ramps[key]
        return found

    def next_step(self, now: float) -> float | None:
        """When the next step of a ramp in progress is due (monotonic), None if none is."""
        due = None
        for ramp in self.ramps.values():
            if ramp.duration <= 0:
                continue
            step = step_seconds(ramp.duration)
            elapsed = max(0.0, now - ramp.since + EPSILON)
            at = ramp.since + min(ramp.duration, (math.floor(elapsed / step) + 1) * step)
            due = at if due is None else min(due, at)
        return due

    def keep(self, keys: set) -> None:
        """After a reload: forget the servers it removed."""
        self.seen = {key: value for key, value in self.seen.items() if key in keys}
        self.ramps = {key: value for key, value in self.ramps.items() if key in keys}
        self.went_down &= keys

    def view(self, key: Hashable, now: float) -> tuple[float, float, float] | None:
        """(since, duration, fraction) of the ramp of ``key``, None if it has none."""
        ramp = self.ramps.get(key)
        if ramp is None or ramp.duration <= 0:
            return None
        found = fraction(ramp.since, now, ramp.duration)
        return None if found is None else (ramp.since, ramp.duration, found)
