"""What should be announced over BGP, and why: pure functions of the configuration and of
what is live (the virtual servers' health, the VRRP roles, the maintenance files that
exist), no I/O and no clock. The engine driver sends what ``changes`` returns.

The rules, per prefix (a virtual server's bgp_announce prefix; several virtual servers may
name one, e.g. a VIP's ports, and their blocks are then the same: config/validate_bgp.py):

- every condition that holds gives an outcome: its vrrp_instance is not MASTER (withdraw:
  the VIP is not here), its maintenance_file exists (maintenance_med, else withdraw), one of
  its virtual servers has lost its quorum or has no live real server of weight above 0
  (down_med, else withdraw);
- the least preferred outcome wins: a withdrawal, else the highest MED (a missing MED is the
  best, as routers read it); with no such condition the route is announced with med,
  cause ``healthy``;
- so a prefix is announced as healthy only while *all* its virtual servers are: a director
  that cannot serve every port of the VIP lets the other directors take its flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..names import virtual_server_name
from .model import Peer, Route, RouteCommand

HEALTHY = "healthy"
SHUTDOWN = "shutdown"
MASTER = "MASTER"


@dataclass(frozen=True)
class Health:
    """What the announcer needs of one virtual server's live state."""

    quorum_ok: bool
    live: int                    # real servers up, not drained, with a weight above 0


@dataclass(frozen=True)
class Decision:
    """A prefix's fate: announced (``route``) or withdrawn (``route`` None), why, and to
    which peers."""

    prefix: str
    route: Route | None
    cause: str
    peers: tuple[str, ...]

    @property
    def announced(self) -> bool:
        return self.route is not None


@dataclass(frozen=True)
class Announced:
    """A prefix as configured: its bgp_announce block, the virtual servers that name it
    (their health decides it) and its peers."""

    block: Any
    virtual_servers: tuple[str, ...]
    peers: tuple[str, ...]


def peers_of(config: Any) -> tuple[Peer, ...]:
    """The bgp block's peers as the engine takes them: each peer's own hold_time, else the
    block's; the block's AS and router id."""
    bgp = config.bgp
    if bgp is None:
        return ()
    return tuple(Peer(address=peer.address, peer_as=peer.peer_as, local_as=bgp.local_as,
                      router_id=bgp.router_id, local_address=peer.local_address,
                      hold_time=bgp.hold_time if peer.hold_time is None else peer.hold_time,
                      port=peer.port,
                      md5_password=None if peer.md5_password is None
                      else peer.md5_password.reveal(),
                      passive=peer.passive, ttl=peer.ttl, description=peer.description)
                 for peer in bgp.peers)


def announced(config: Any) -> dict[str, Announced]:
    """Prefix -> what announces it, in the file's order."""
    everyone = tuple(peer.address for peer in config.bgp.peers) if config.bgp else ()
    found: dict[str, Announced] = {}
    for server in config.virtual_servers:
        block = server.bgp_announce
        if block is None:
            continue
        name = virtual_server_name(server)
        known = found.get(block.prefix)
        if known is None:
            found[block.prefix] = Announced(block, (name,), block.peers or everyone)
        else:
            found[block.prefix] = Announced(known.block, known.virtual_servers + (name,),
                                            known.peers)
    return found


def route(block: Any, med: int | None) -> Route:
    return Route(prefix=block.prefix, next_hop=block.next_hop, med=med,
                 communities=tuple(block.communities or ()),
                 large_communities=tuple(block.large_communities or ()))


def _outcomes(item: Announced, health: Mapping[str, Health], roles: Mapping[str, str],
              maintenance: frozenset[str] | set[str]) -> Iterable[tuple[Route | None, str]]:
    """(route or None, cause) for every condition against announcing as healthy."""
    block = item.block
    if block.vrrp_instance is not None:
        role = roles.get(block.vrrp_instance)
        if role != MASTER:
            yield None, f"{block.vrrp_instance} is {role or 'not running'}"
    if block.maintenance_file is not None and block.maintenance_file in maintenance:
        yield (None if block.maintenance_med is None else route(block, block.maintenance_med),
               f"maintenance ({block.maintenance_file})")
    down = None if block.down_med is None else route(block, block.down_med)
    for name in item.virtual_servers:
        state = health.get(name)
        if state is None:
            yield down, f"no health known yet for {name}"
        elif not state.quorum_ok:
            yield down, f"quorum lost on {name}"
        elif state.live == 0:
            yield down, f"all servers drained on {name}"


def _preference(outcome: tuple[Route | None, str]) -> tuple[int, int]:
    """Lower is less preferred: a withdrawal, then the highest MED (none counts as 0)."""
    found = outcome[0]
    return (0, 0) if found is None else (1, -(found.med or 0))


def desired(config: Any, health: Mapping[str, Health], roles: Mapping[str, str],
            maintenance: frozenset[str] | set[str]) -> dict[str, Decision]:
    """Prefix -> Decision. ``health``: virtual server name -> Health (a virtual server
    missing from it counts as unhealthy: not checked yet); ``roles``: VRRP instance -> its
    state (MASTER, BACKUP, FAULT...); ``maintenance``: the maintenance files that exist."""
    decisions: dict[str, Decision] = {}
    for prefix, item in announced(config).items():
        outcomes = list(_outcomes(item, health, roles, maintenance))
        if outcomes:
            chosen, cause = min(outcomes, key=_preference)   # the first of the least preferred
        else:
            chosen, cause = route(item.block, item.block.med), HEALTHY
        decisions[prefix] = Decision(prefix, chosen, cause, item.peers)
    return decisions


def shutdown(current: Mapping[str, Decision]) -> dict[str, Decision]:
    """Everything withdrawn from the peers it was for, cause ``shutdown``."""
    return {prefix: Decision(prefix, None, SHUTDOWN, decision.peers)
            for prefix, decision in current.items()}


def _routes(decisions: Mapping[str, Decision]) -> dict[tuple[str, str], Route]:
    return {(peer, prefix): decision.route for prefix, decision in decisions.items()
            if decision.route is not None for peer in decision.peers}


def changes(before: Mapping[str, Decision], after: Mapping[str, Decision]
            ) -> list[RouteCommand]:
    """What to send to go from ``before`` to ``after``, per peer and prefix: withdrawals
    first, then announcements. A route announced again unchanged is no change; one whose
    attributes changed is announced again (it replaces the old one at the router)."""
    old, new = _routes(before), _routes(after)
    commands = [RouteCommand("withdraw", peer, announced_route)
                for (peer, prefix), announced_route in old.items() if (peer, prefix) not in new]
    commands += [RouteCommand("announce", peer, wanted)
                 for (peer, prefix), wanted in new.items() if old.get((peer, prefix)) != wanted]
    return commands
