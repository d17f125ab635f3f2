"""How late something ran past its due time: the main loop's timer (director/looplag.py) and
each VRRP master's adverts (vrrp/instance.py). Pure, and cheap where it is fed: one bucket
increment, one addition and one slot of a ring per sample; the p99, the maximum and the
figure are worked out when a view is asked for (a request, a scrape).

It imports nothing of director's at module level: an instance makes one at start-up, and the
views (director/state.py) are not on the way to the first advert.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import LatenessView

# 1 ms to 10 s, state.DURATION_BUCKETS' bounds (the views are not imported here): an advert
# on time is late by less than the first; one late by the last has missed several master
# down intervals.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECENT = 256            # samples kept for the p99 and the maximum (4 minutes of adverts at 1 s)


class Lateness:
    """Every sample counted in BUCKETS (the Prometheus histogram), the last RECENT kept."""

    __slots__ = ("buckets", "total", "recent", "_next", "_keep")

    def __init__(self, keep: int = RECENT) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)       # not cumulative; the last is +Inf
        self.total = 0.0
        self.recent: list[float] = []
        self._next = 0
        self._keep = keep

    def add(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        if len(self.recent) < self._keep:
            self.recent.append(seconds)
        else:                                   # a ring: overwrite the oldest
            self.recent[self._next] = seconds
            self._next = (self._next + 1) % self._keep

    def view(self) -> LatenessView:
        from .state import LatenessView
        return LatenessView(BUCKETS, tuple(self.buckets), self.total,
                            tuple(self.recent[self._next:] + self.recent[:self._next]))
