"""The BGP announcer's live state as frozen views (the API, the dashboard, the metrics and the
dumps read these, never the service): each peer's session, each prefix's fate and why, the
engine's counters, and the last changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .model import Route, Session


@dataclass(frozen=True)
class PrefixView:
    prefix: str
    announced: bool
    route: Route | None          # as announced (None: withdrawn)
    cause: str                   # healthy, quorum lost on ..., VI_1 is BACKUP, shutdown, ...
    since: float                 # epoch seconds of the last change of announced/route/cause
    peers: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        route = self.route
        return {"prefix": self.prefix, "announced": self.announced, "cause": self.cause,
                "since": self.since, "peers": list(self.peers),
                "med": None if route is None else route.med,
                "next_hop": None if route is None else route.next_hop,
                "communities": [] if route is None else list(route.communities),
                "large_communities": [] if route is None else list(route.large_communities)}


@dataclass(frozen=True)
class ChangeView:
    """One announce or withdraw the announcer decided, with its cause."""

    at: float                    # epoch seconds
    prefix: str
    action: str                  # announce, withdraw
    cause: str

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "prefix": self.prefix, "action": self.action,
                "cause": self.cause}


@dataclass(frozen=True)
class SessionView:
    peer: str
    description: str | None
    state: str                   # up, down, connecting
    since: float                 # epoch seconds
    flaps: int
    failed_connects: int
    last_error: str | None

    @classmethod
    def of(cls, session: Session, description: str | None, wall_offset: float) -> SessionView:
        return cls(session.peer, description, session.state, session.since + wall_offset,
                   session.flaps, session.failed_connects, session.last_error)

    def as_json(self) -> dict[str, Any]:
        return {"peer": self.peer, "description": self.description, "state": self.state,
                "since": self.since, "flaps": self.flaps,
                "failed_connects": self.failed_connects, "last_error": self.last_error}


@dataclass(frozen=True)
class BgpView:
    engine: str                  # exabgp
    running: bool                # the engine runs and the driver talks to it
    sessions: tuple[SessionView, ...]
    prefixes: tuple[PrefixView, ...]
    changes: tuple[ChangeView, ...]      # the last ones, oldest first
    counters: dict[str, int]     # engine restarts, reloads, commands, errors ...
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        return {"engine": self.engine, "running": self.running,
                "sessions": [s.as_json() for s in self.sessions],
                "prefixes": [p.as_json() for p in self.prefixes],
                "changes": [c.as_json() for c in self.changes],
                "counters": dict(self.counters), "last_error": self.last_error}
