"""What director asks a BGP engine to do, as values: the peers to open sessions with, the routes
to announce, and what the engine reports back. The engine (ExaBGP first; engine.py's Protocol
for a second) does BGP; director never speaks BGP itself.

These are the seam between the configuration (the ``bgp`` block and each virtual server's
``bgp_announce``), the pure announcer that decides what should be announced, and the engine
driver that makes it so.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Peer:
    """One BGP neighbour (the upstream router)."""

    address: str                        # the neighbour's address
    peer_as: int
    local_as: int
    router_id: str
    local_address: str | None = None    # None: the engine's choice (the route's source)
    hold_time: int = 9                  # seconds; keepalives every hold_time / 3
    port: int = 179
    # never in a repr: a Peer logged or shown in a traceback must not leak it
    md5_password: str | None = field(default=None, repr=False)
    passive: bool = False               # wait for the router to connect
    ttl: int | None = None              # multihop: the TTL of the session's packets
    description: str | None = None      # for people (the engine's neighbour description)


@dataclass(frozen=True)
class Route:
    """One prefix as announced: its path attributes. Two Routes are equal when a router would
    see the same UPDATE."""

    prefix: str                          # "192.0.2.10/32", "2001:db8::10/128"
    next_hop: str = "self"               # "self" or an address
    med: int | None = None
    communities: tuple[str, ...] = ()    # "65000:100"
    large_communities: tuple[str, ...] = ()   # "65000:1:2"


@dataclass(frozen=True)
class RouteCommand:
    """One thing the engine is asked to do for one peer: ``announce`` a route (new, or with
    changed attributes: it replaces the one announced before) or ``withdraw`` it."""

    action: str                          # "announce" or "withdraw"
    peer: str                            # the neighbour's address
    route: Route                         # withdraw: the route as it was announced


@dataclass(frozen=True)
class Session:
    """A peer's session as the engine last reported it."""

    peer: str                            # the neighbour's address
    state: str                           # "up", "down", "connecting"
    since: float                         # monotonic time of the last change
    last_error: str | None = None        # why it went down, when known
    flaps: int = 0                       # times it left "up"
    failed_connects: int = 0             # connections tried that closed before "up"
