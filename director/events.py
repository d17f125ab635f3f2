"""What happened, for people: VRRP transitions, real servers up and down, quorum changes,
reloads, notifications and admin actions, numbered and kept in a bounded ring.

``/api/v1/events?since=ID`` reads the ring; ``/api/v1/stream`` subscribes. A subscriber has
a bounded queue: one that does not keep up is dropped (it reconnects with Last-Event-ID and
catches up from the ring) rather than holding memory or slowing the engines that publish.
Publishing never blocks and never raises into the publisher.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import hub

CAPACITY = 5000                 # events kept for /api/v1/events and reconnecting streams
SUBSCRIBER_QUEUE = 1000         # events a stream may fall behind before it is dropped


@dataclass(frozen=True)
class Event:
    id: int
    at: float                   # epoch seconds
    kind: str                   # one of state.EVENT_KINDS
    fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "kind": self.kind, **self.fields}


class Subscription:
    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.queue: hub.Queue = hub.Queue(SUBSCRIBER_QUEUE)
        self.dropped = False

    def get(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` seconds (time for a keep-alive)."""
        try:
            return self.queue.get(timeout=timeout)
        except hub.Empty:
            return None

    def close(self) -> None:
        self.events.subscribers.discard(self)


class EventLog:
    def __init__(self, capacity: int = CAPACITY, clock=time.time) -> None:
        self.ring: deque[Event] = deque(maxlen=capacity)
        self.subscribers: set[Subscription] = set()
        self.listeners: list = []        # called with each event, in add(): must not block
        self._ids = itertools.count(1)
        self._clock = clock
        self.dropped_subscribers = 0

    def add(self, kind: str, **fields: Any) -> Event:
        event = Event(next(self._ids), round(self._clock(), 3), kind, fields)
        self.ring.append(event)
        for listener in self.listeners:
            listener(event)
        for subscriber in list(self.subscribers):
            try:
                subscriber.queue.put_nowait(event)
            except hub.Full:
                subscriber.dropped = True
                self.subscribers.discard(subscriber)
                self.dropped_subscribers += 1
        return event

    def since(self, last_id: int = 0, limit: int = 500) -> list[Event]:
        """Events after ``last_id``, oldest first, at most ``limit`` (the most recent)."""
        newer = itertools.takewhile(lambda event: event.id > last_id, reversed(self.ring))
        return list(reversed(list(itertools.islice(newer, limit))))

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self.subscribers.add(subscription)
        return subscription
