"""ExaBGP's two text formats, pure: the configuration file director writes for it (one
``neighbor`` per Peer, one API ``process``: the relay) with the environment it runs under,
and the process API (the commands director sends, the lines ExaBGP sends back).

Every value is checked before it is written: a prefix or a community is put into a line
that ExaBGP parses, so a stray ``;`` or newline would be a second command. A Peer that
cannot be written raises ValueError (a configuration error, said once, at start or reload);
a Route that cannot be written is refused by ``route_problem`` (counted by the driver).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import dataclass

from .model import Peer, Route

AS_MAX = 2**32 - 1
MED_MAX = 2**32 - 1
COMMUNITY_RE = re.compile(r"^(\d{1,5}):(\d{1,5})$")
LARGE_COMMUNITY_RE = re.compile(r"^(\d{1,10}):(\d{1,10}):(\d{1,10})$")
# a path ExaBGP's tokeniser reads as one word (no quoting there for `run`)
PLAIN_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+@%=,-]*$")
PROCESS_NAME = "director"


# -- the configuration ------------------------------------------------------------------------

def _address(text: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an IP address") from None


def peer_problem(peer: Peer) -> str | None:
    """Why ExaBGP could not be given ``peer``, or None."""
    try:
        address = _address(peer.address, "the peer address")
        if peer.local_address is not None:
            local = _address(peer.local_address, "local_address")
            if local.version != address.version:
                return (f"peer {peer.address}: local_address {peer.local_address} is not of "
                        "the peer's address family")
        if _address(peer.router_id, "router_id").version != 4:
            return f"peer {peer.address}: router_id {peer.router_id} must be an IPv4 address"
    except ValueError as exc:
        return f"peer {peer.address!r}: {exc}"
    for name, value in (("peer_as", peer.peer_as), ("local_as", peer.local_as)):
        if not 1 <= value <= AS_MAX:
            return f"peer {peer.address}: {name} {value} is not an AS number (1-{AS_MAX})"
    if peer.hold_time != 0 and not 3 <= peer.hold_time <= 65535:
        return f"peer {peer.address}: hold_time {peer.hold_time} is neither 0 nor 3-65535"
    if not 1 <= peer.port <= 65535:
        return f"peer {peer.address}: port {peer.port} is not 1-65535"
    if peer.ttl is not None and not 1 <= peer.ttl <= 255:
        return f"peer {peer.address}: ttl {peer.ttl} is not 1-255"
    if peer.passive and peer.local_address is None:
        # ExaBGP listens for a passive peer on its local address only (its `listen`)
        return f"peer {peer.address}: a passive peer needs a local_address to listen on"
    if peer.md5_password is not None and not peer.md5_password:
        return f"peer {peer.address}: an empty md5 password"
    return None


def check_peers(peers: tuple[Peer, ...] | list[Peer]) -> None:
    """ValueError naming the first peer ExaBGP could not be given (or a duplicate)."""
    seen = set()
    for peer in peers:
        problem = peer_problem(peer)
        if problem:
            raise ValueError(problem)
        if peer.address in seen:
            raise ValueError(f"peer {peer.address} is given twice")
        seen.add(peer.address)


def neighbor_block(peer: Peer) -> str:
    """One ``neighbor`` block. The password goes in base64 (md5-base64): ExaBGP reads it as
    bytes then, whatever characters it holds, with no quoting to get wrong."""
    lines = [f"neighbor {peer.address} {{",
             f"    router-id {peer.router_id};",
             f"    local-as {peer.local_as};",
             f"    peer-as {peer.peer_as};",
             f"    hold-time {peer.hold_time};"]
    if peer.local_address is not None:
        lines.append(f"    local-address {peer.local_address};")
    if peer.passive:
        lines += ["    passive true;", f"    listen {peer.port};"]
    else:
        lines += ["    passive false;", f"    connect {peer.port};"]
    if peer.ttl is not None:
        lines.append(f"    outgoing-ttl {peer.ttl};")
    if peer.md5_password is not None:
        secret = base64.b64encode(peer.md5_password.encode()).decode()
        lines += ["    md5-base64 true;", f"    md5-password {secret};"]
    lines += ["    family {", "        ipv4 unicast;", "        ipv6 unicast;", "    }",
              "    api {", f"        processes [ {PROCESS_NAME} ];",
              "        neighbor-changes;", "        fsm;", "    }",
              "}"]
    return "\n".join(lines)


def config_text(peers: tuple[Peer, ...] | list[Peer], relay_argv: list[str]) -> str:
    """The whole configuration: the relay as the API process (JSON towards it), then one
    neighbor per peer. ValueError for a peer or a relay path ExaBGP could not read."""
    check_peers(peers)
    for word in relay_argv:
        if not (PLAIN_PATH_RE.match(word) or re.fullmatch(r"[A-Za-z0-9_.-]+", word)):
            raise ValueError(f"cannot hand ExaBGP the relay argument {word!r}: it reads "
                             "`run` as plain words (no spaces, quotes or ;)")
    blocks = ["# written by director: every start and reload rewrites it",
              f"process {PROCESS_NAME} {{",
              f"    run {' '.join(relay_argv)};",
              "    encoder json;",
              "}"]
    blocks += [neighbor_block(peer) for peer in peers]
    return "\n".join(blocks) + "\n"


def environment(log_level: str = "INFO") -> dict[str, str]:
    """ExaBGP's settings, as its environment variables: in the foreground, root stays root
    (its default drops to nobody, and the relay and the MD5 socket option need root), no
    CLI pipe, every API command acknowledged, a dead relay not respawned (director restarts
    the whole engine instead: one recovery path), its log on stdout (director reads it)."""
    return {
        "exabgp_daemon_daemonize": "false",
        "exabgp_daemon_user": "root",
        "exabgp_daemon_drop": "false",
        "exabgp_daemon_pid": "",
        "exabgp_api_ack": "true",
        "exabgp_api_cli": "false",
        "exabgp_api_respawn": "false",
        "exabgp_api_terminate": "true",
        "exabgp_api_encoder": "json",
        "exabgp_log_destination": "stdout",
        "exabgp_log_level": log_level,
        "exabgp_log_short": "true",
        "exabgp_log_statistics": "false",     # a line per keepalive sent and received
        "exabgp_tcp_bind": "",             # no listener but a passive peer's own `listen`
    }


# -- the process API: commands ----------------------------------------------------------------

def route_problem(route: Route) -> str | None:
    """Why ``route`` cannot be put into an ExaBGP command, or None."""
    try:
        network = ipaddress.ip_network(route.prefix, strict=True)
    except ValueError as exc:
        return f"prefix {route.prefix!r}: {exc}"
    if "/" not in route.prefix:
        return f"prefix {route.prefix!r} has no length"
    if route.next_hop != "self":
        try:
            hop = ipaddress.ip_address(route.next_hop)
        except ValueError:
            return f"{route.prefix}: next hop {route.next_hop!r} is neither self nor an address"
        if hop.version != network.version:
            return f"{route.prefix}: next hop {route.next_hop} of the other address family"
    if route.med is not None and not 0 <= route.med <= MED_MAX:
        return f"{route.prefix}: med {route.med} is not 0-{MED_MAX}"
    for community in route.communities:
        match = COMMUNITY_RE.match(community)
        if not match or any(int(part) > 65535 for part in match.groups()):
            return f"{route.prefix}: community {community!r} is not ASN:VALUE (16 bits each)"
    for community in route.large_communities:
        match = LARGE_COMMUNITY_RE.match(community)
        if not match or any(int(part) > AS_MAX for part in match.groups()):
            return f"{route.prefix}: large community {community!r} is not A:B:C (32 bits each)"
    return None


def announce_command(peer: str, route: Route) -> str:
    """``neighbor PEER announce route ...``: the route with its attributes (checked first
    with route_problem)."""
    words = [f"neighbor {peer} announce route {route.prefix} next-hop {route.next_hop}"]
    if route.med is not None:
        words.append(f"med {route.med}")
    if route.communities:
        words.append(f"community [ {' '.join(route.communities)} ]")
    if route.large_communities:
        words.append(f"large-community [ {' '.join(route.large_communities)} ]")
    return " ".join(words)


def withdraw_command(peer: str, route: Route) -> str:
    return f"neighbor {peer} withdraw route {route.prefix} next-hop {route.next_hop}"


@dataclass(frozen=True)
class Change:
    """One command to send: announce ``route`` to ``peer`` (or withdraw it)."""

    peer: str
    route: Route
    announce: bool

    def command(self) -> str:
        return (announce_command if self.announce else withdraw_command)(self.peer, self.route)


def plan(desired: dict[str, dict[str, Route]], announced: dict[str, dict[str, Route]],
         peers: set[str]) -> list[Change]:
    """The commands that take ExaBGP from ``announced`` to ``desired``: withdrawals first
    (a prefix that leaves goes before one that comes), then announcements of what is new or
    changed (a changed route is announced again: BGP replaces it). Peers ExaBGP does not
    know are left out: it would answer every command with an error."""
    withdraw, announce = [], []
    for peer in sorted(peers):
        want, have = desired.get(peer, {}), announced.get(peer, {})
        for prefix in sorted(set(have) - set(want)):
            withdraw.append(Change(peer, have[prefix], False))
        for prefix in sorted(want):
            if have.get(prefix) != want[prefix]:
                announce.append(Change(peer, want[prefix], True))
    return withdraw + announce


# -- the process API: what ExaBGP says --------------------------------------------------------

@dataclass(frozen=True)
class Ack:
    ok: bool                    # "done" (True) or "error"


@dataclass(frozen=True)
class PeerState:
    """A neighbor-changes report: up, connected or down (with ExaBGP's reason)."""

    peer: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class PeerFsm:
    """An FSM report (``fsm`` in the api block): idle, active, connect, opensent, ..."""

    peer: str
    state: str


@dataclass(frozen=True)
class Shutdown:
    """ExaBGP says it is stopping."""


@dataclass(frozen=True)
class Other:
    """A well-formed message director has no use for (an UPDATE received, ...)."""

    kind: str


@dataclass(frozen=True)
class Malformed:
    line: str
    why: str


Message = Ack | PeerState | PeerFsm | Shutdown | Other | Malformed


def parse_line(line: str) -> Message:
    """One line from ExaBGP's API: an acknowledgement, or a JSON message."""
    line = line.strip()
    if line == "done":
        return Ack(True)
    if line == "error":
        return Ack(False)
    if line == "shutdown":
        return Shutdown()
    if not line.startswith("{"):
        return Malformed(line[:200], "neither an acknowledgement nor JSON")
    try:
        message = json.loads(line)
    except ValueError as exc:
        return Malformed(line[:200], f"bad JSON: {exc}")
    if not isinstance(message, dict):
        return Malformed(line[:200], "JSON that is not an object")
    if message.get("answer") in ("done", "error"):        # acks in JSON (api ackjson)
        return Ack(message["answer"] == "done")
    kind = message.get("type")
    if kind == "notification" and message.get("notification") == "shutdown":
        return Shutdown()
    if kind not in ("state", "fsm"):
        return Other(str(kind))
    neighbor = message.get("neighbor")
    try:
        peer = neighbor["address"]["peer"]
        state = neighbor["state"]
    except (TypeError, KeyError):
        return Malformed(line[:200], f"a {kind} message without neighbor.address.peer/state")
    if not isinstance(peer, str) or not isinstance(state, str):
        return Malformed(line[:200], f"a {kind} message whose peer or state is not a string")
    if kind == "fsm":
        return PeerFsm(peer, state.lower())
    reason = neighbor.get("reason", "")
    return PeerState(peer, state, reason if isinstance(reason, str) else str(reason))
