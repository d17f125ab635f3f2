"""How long the cyclic garbage collector held the process, by generation.

A collection runs on the loop's thread with the GIL held: while it runs no advert goes out and
no check result is read. Its passes are the one stall the code cannot see from where it
runs, so they are timed here (``gc.callbacks``: a start and a stop per collection, a few
dozen a second at 10,000 checks a second) and the main loop's lag measure (looplag.py) tells
a late timer made by the collector from one made by code that did not yield.
"""

from __future__ import annotations

import gc
import time
from typing import Any

GENERATIONS = 3


class GcClock:
    def __init__(self) -> None:
        self.seconds = [0.0] * GENERATIONS      # time in collections, per generation
        self.collections = [0] * GENERATIONS
        self.longest = 0.0                        # the longest single pause, seconds
        self._started = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # perf_counter, not monotonic: the pauses are a fraction of a millisecond to a few
        # tens, and this runs inside the collection's own time
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info.get("generation", GENERATIONS - 1)
        self.seconds[generation] += pause
        self.collections[generation] += 1
        if pause > self.longest:
            self.longest = pause

    def total(self) -> float:
        return sum(self.seconds)
