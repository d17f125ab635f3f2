"""The check scheduler's deadlines: jobs in due order, popped a batch at a time.

Pure (no clock, no loop): the scheduler says what ``now`` is. A job is any object with
writable ``due`` and ``seq`` attributes; the queue holds each job at most once (a job is
pushed again only after it was popped and run), so the job's own ``due`` and ``seq`` are its
entry's and a FIFO can hold the job itself, no tuple per check.

Two kinds of line. The steady cadence, a job due again delay_loop after its last due time,
lands behind every job of the same delay_loop pushed before it, so one FIFO per delay_loop
stays in due order: appending and popping at its ends is all it costs (popping a heap of
10,000 tuples cost about 2 us a check, py-spy: 7 % of TCP_CHECK's process). Anything else
(first checks, retries, a cadence that would break a FIFO's order) goes to a heap of
``(due, seq, job)``. Jobs come out in (due, seq) order over all lines: ties in push order.

``pop_due`` drains a batch in one pass: it finds the line with the earliest front once,
then pops from it for as long as its front stays due and ahead of every other line's front.
With one delay_loop and no retries pending (ten thousand servers checked every second),
that is one scan of the lines per wake-up, not one per check.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Any

INFINITY = float("inf")
_heappush = heapq.heappush
_heappop = heapq.heappop


class DueQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._lines: dict[float, deque] = {}      # delay_loop -> jobs in due order
        self._sequence = itertools.count()

    def push(self, job: Any, cadence: float | None = None) -> None:
        """Queue ``job`` at ``job.due``: on the FIFO of ``cadence`` (its delay_loop) when that
        keeps the FIFO in order, else on the heap."""
        due = job.due
        job.seq = seq = next(self._sequence)
        if cadence is not None:
            line = self._lines.get(cadence)
            if line is None:
                line = self._lines[cadence] = deque()
            if not line or line[-1].due <= due:
                line.append(job)
                return
        _heappush(self._heap, (due, seq, job))

    def earliest(self) -> float | None:
        """The earliest due time queued, None if nothing is."""
        best = self._heap[0][0] if self._heap else INFINITY
        for line in self._lines.values():
            if line and line[0].due < best:
                best = line[0].due
        return None if best == INFINITY else best

    def __len__(self) -> int:
        return len(self._heap) + sum(len(line) for line in self._lines.values())

    def pop_due(self, now: float, limit: int) -> list[Any]:
        """Up to ``limit`` jobs due at ``now`` (due <= now), earliest first, taken out."""
        out: list[Any] = []
        heap = self._heap
        lines = [line for line in self._lines.values() if line]
        while len(out) < limit:
            # the line whose front comes first, and the runner-up's front (due, seq)
            first: Any = None
            first_due = second_due = INFINITY
            first_seq = second_seq = 0
            if heap:
                first_due, first_seq, _ = heap[0]
                first = heap
            for line in lines:
                if not line:
                    continue
                front = line[0]
                due, seq = front.due, front.seq
                if due < first_due or (due == first_due and seq < first_seq):
                    second_due, second_seq = first_due, first_seq
                    first, first_due, first_seq = line, due, seq
                elif due < second_due or (due == second_due and seq < second_seq):
                    second_due, second_seq = due, seq
            if first is None or first_due > now:
                break
            if first is heap:
                out.append(_heappop(heap)[2])
                continue
            # drain this FIFO while its front is due and ahead of every other front
            line = first
            popleft = line.popleft
            append = out.append
            room = limit - len(out)
            while room and line:
                job = line[0]
                due = job.due
                if due > now or due > second_due or (due == second_due and
                                                     job.seq > second_seq):
                    break
                popleft()
                append(job)
                room -= 1
        return out
