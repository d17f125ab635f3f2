"""The BGP announcer's keywords, director extensions (keepalived has no BGP): the top-level
``bgp`` block (the engine, this router's AS and id, one ``peer`` block per neighbour) and a
virtual server's ``bgp_announce`` (the prefix it announces and the attributes it carries).

What is checked here needs only the block at hand; what needs the whole file (instances,
peers named elsewhere, two virtual servers on one prefix) is in config/validate_bgp.py.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re

from ..schema import UINT_MAX, Block, Choice, Context, Custom, Flag, Int, Invalid, Kw, \
    Seconds, Secret, Text, Word, one_value
from ..values import parse_ip
from .common import no_header, required

ENGINES = ("exabgp",)
DEFAULT_HOLD_TIME = 9
TCP_MD5_MAX_KEY = 80          # the kernel's TCP_MD5SIG_MAXKEYLEN
# the well-known communities (RFC 1997, 3765, 7999) by the names ExaBGP takes
WELL_KNOWN_COMMUNITIES = ("no-export", "no-advertise", "no-export-subconfed", "nopeer",
                          "blackhole")


SEVERAL = ("A prefix named by several virtual servers (one VIP, several ports) is announced "
           "only while all of them are healthy: a director that cannot serve every port of "
           "the VIP lets the others take its flows. Their bgp_announce blocks must then be "
           "the same but for the virtual server they are in.")


# -- values ---------------------------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]{1,10}")                       # ASCII digits, bounded
_AS_NUMBER = re.compile(r"([0-9]{1,10})(?:\.([0-9]{1,5}))?")      # asplain, or asdot HIGH.LOW

def as_number(args: list[str], ctx: Context) -> int:
    """An AS number, asplain (65001, 4200000001) or asdot (1.10 = 65546); 0 is reserved
    (RFC 7607) and refused."""
    word = one_value(args, "an AS number")
    plain_or_dot = _AS_NUMBER.fullmatch(word)
    if plain_or_dot is None:
        raise Invalid(f"expects an AS number from 1 to {UINT_MAX}, got '{word}'")
    high, low = plain_or_dot.groups()
    if low is None:
        number = int(high)
    elif int(high) > 65535 or int(low) > 65535:
        raise Invalid(f"expects an AS number from 1 to {UINT_MAX}, got '{word}'")
    else:
        number = int(high) << 16 | int(low)
    if not 1 <= number <= UINT_MAX:
        raise Invalid(f"expects an AS number from 1 to {UINT_MAX}, got '{word}'")
    return number


def _address(args: list[str], ctx: Context) -> str:
    return str(parse_ip(one_value(args, "an IP address")))


def _router_id(args: list[str], ctx: Context) -> str:
    """A BGP identifier is 32 bits, written as an IPv4 address (also for IPv6 sessions)."""
    word = one_value(args, "a router id")
    try:
        return str(ipaddress.IPv4Address(word))
    except ValueError:
        raise Invalid(f"expects an IPv4 address (a BGP identifier is 32 bits, also over "
                      f"IPv6), got '{word}'") from None


def _hold_time(args: list[str], ctx: Context) -> int:
    """RFC 4271: 0 (no keepalives) or at least 3 seconds."""
    number = Int(0, 65535).parse(args, ctx)
    if 0 < number < 3:
        raise Invalid(f"must be 0 (no keepalives) or from 3 to 65535 seconds, got {number}")
    return number


def _md5_password(args: list[str], ctx: Context) -> Secret:
    word = one_value(args, "a password")
    if not 1 <= len(word.encode()) <= TCP_MD5_MAX_KEY:
        raise Invalid(f"must be 1 to {TCP_MD5_MAX_KEY} bytes (the kernel's TCP MD5 key), got "
                      f"{len(word.encode())}")
    return Secret(str(word))


def _numbers(word: str, parts: int, high: int, what: str) -> str:
    pieces = word.split(":")
    if len(pieces) != parts or not all(_NUMBER.fullmatch(p) and int(p) <= high
                                       for p in pieces):
        raise Invalid(f"expects {what}, got '{word}'")
    return ":".join(str(int(p)) for p in pieces)


def communities(args: list[str], ctx: Context) -> tuple[str, ...]:
    """``65000:100 no-export ...``: ASN:VALUE (each 0..65535) or a well-known name."""
    if not args:
        raise Invalid("expects one or more communities (65000:100, no-export), got nothing")
    return tuple(word.lower() if word.lower() in WELL_KNOWN_COMMUNITIES else
                 _numbers(word, 2, 65535, "a community: ASN:VALUE with each 0..65535, or one "
                                          "of " + ", ".join(WELL_KNOWN_COMMUNITIES))
                 for word in map(str, args))


def large_communities(args: list[str], ctx: Context) -> tuple[str, ...]:
    """``65000:1:2 ...`` (RFC 8092): three numbers 0..4294967295."""
    if not args:
        raise Invalid("expects one or more large communities (65000:1:2), got nothing")
    return tuple(_numbers(str(word), 3, UINT_MAX, "a large community: GLOBAL:LOCAL1:LOCAL2 "
                                                  f"with each 0..{UINT_MAX}")
                 for word in args)


def _prefix(args: list[str], ctx: Context) -> str:
    word = one_value(args, "a prefix")
    try:
        return str(ipaddress.ip_network(word, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(word, strict=False)
    except ValueError:
        raise Invalid(f"expects a prefix (192.0.2.10/32, 2001:db8::/64), got '{word}'") from None
    raise Invalid(f"'{word}' has host bits set: the prefix is {loose}")


def _next_hop(args: list[str], ctx: Context) -> str:
    word = one_value(args, "self or an address")
    return "self" if word.lower() == "self" else str(parse_ip(word, "'self' or an address"))


def _file_path(args: list[str], ctx: Context) -> str:
    word = str(one_value(args, "an absolute file path"))
    if not os.path.isabs(word):
        raise Invalid(f"expects an absolute file path, got '{word}'")
    return os.path.normpath(word)


def _peer_addresses(args: list[str], ctx: Context) -> tuple[str, ...]:
    if not args:
        raise Invalid("expects one or more peer addresses, got nothing")
    return tuple(dict.fromkeys(str(parse_ip(word, "a peer address")) for word in args))


def _peer_header(args: list[str], ctx: Context) -> dict:
    return {"address": _address(args, ctx)}


def family(address: str) -> int:
    return ipaddress.ip_address(address).version


# -- blocks ---------------------------------------------------------------------------------

def _peer_finish(values: dict, ctx: Context) -> None:
    required(values, ctx, f"peer {values['address']}", "peer_as")
    local = values["local_address"]
    if local is not None and family(local) != family(values["address"]):
        ctx.error(f"peer {values['address']}: local_address {local} is not of the peer's "
                  "family")


PEER = Block(
    "peer", "BgpPeer",
    header=_peer_header, header_fields=(("address", None),),
    finish=_peer_finish,
    doc="One BGP neighbour (the upstream router), `peer ADDRESS { ... }`, IPv4 "
                    "or IPv6.",
    keywords=(
        Kw("peer_as", Custom(as_number, "AS number (asplain or asdot)"),
           doc="The neighbour's AS (required); the same as local_as makes it iBGP."),
        Kw("local_address", Custom(_address, "IP address"),
           doc="The session's source address, of the peer's family. Default: the engine's "
               "choice (the route towards the peer)."),
        Kw("hold_time", Custom(_hold_time, "0 or seconds 3..65535"),
           doc="Overrides the bgp block's hold_time for this peer."),
        Kw("port", Int(1, 65535), default=179, doc="The neighbour's TCP port."),
        Kw("md5_password", Custom(_md5_password, "secret (1 to 80 bytes)"),
           doc="TCP MD5 signature (RFC 2385) of the session; hidden in dumps like every "
               "password."),
        Kw("passive", Flag(), doc="Wait for the neighbour to connect; never connect to it."),
        Kw("ttl", Int(1, 255), doc="Multihop: the TTL of the session's packets (default: 1, "
                                   "a directly connected neighbour)."),
        Kw("description", Text("text"), doc="For people: shown in dumps and logs."),
    ),
)


def _bgp_finish(values: dict, ctx: Context) -> None:
    location = ctx.location
    peers = values["peers"]
    seen: dict[str, int] = {}
    for peer in peers:
        if peer.address in seen:
            ctx.location = peer.location or location
            ctx.error(f"peer {peer.address} is defined twice (first at line "
                      f"{seen[peer.address]})")
        seen.setdefault(peer.address, peer.location.line if peer.location else 0)
    ctx.location = location
    if not peers:
        if "peers" not in ctx.invalid:
            ctx.warn("bgp has no peer: nothing is announced")
        return
    required(values, ctx, "bgp", "local_as")
    if values["router_id"] is None and "router_id" not in ctx.invalid:
        first = peers[0].local_address
        if first is not None and family(first) == 4:
            values["router_id"] = first
        else:
            ctx.error("bgp needs 'router_id' (an IPv4 address): the first peer has no IPv4 "
                      "local_address to take it from")


BGP = Block(
    "bgp", "Bgp",
    header=no_header,
    finish=_bgp_finish,
    doc="director announces each virtual server's bgp_announce prefix to these "
                    "peers through the engine while the virtual server is healthy, and "
                    "withdraws it otherwise, so that an upstream router spreads flows over "
                    "several directors (ECMP). " + SEVERAL,
    keywords=(
        Kw("engine", Choice(ENGINES, case="lower"), default="exabgp",
           doc="The BGP speaker director drives (director never speaks BGP itself)."),
        Kw("local_as", Custom(as_number, "AS number (asplain or asdot)"),
           doc="This router's AS; required when any peer is given."),
        Kw("router_id", Custom(_router_id, "IPv4 address"),
           doc="The BGP identifier. Default: the first peer's local_address when it is IPv4; "
               "required otherwise."),
        Kw("hold_time", Custom(_hold_time, "0 or seconds 3..65535"), default=DEFAULT_HOLD_TIME,
           doc="Seconds without a message before a session is declared down (keepalives "
               "every third of it); 0: no keepalives. A peer's hold_time overrides it."),
        Kw("shutdown_delay", Seconds(0, 3600), default=1.0,
           doc="On TERM, seconds director keeps serving after withdrawing its routes: the "
               "router must have moved the flows away before the virtual servers go."),
        Kw("exabgp_command", Word("a path to exabgp"),
           doc="An ExaBGP 5 program to run (`exabgp server FILE`) instead of the one "
               "installed in director's Python (scripts/setup pins it): ExaBGP 4's command "
               "line and API acknowledgements differ."),
        Kw("peer", PEER, field="peers", repeat="append", doc="One block per neighbour."),
    ),
)


def _announce_finish(values: dict, ctx: Context) -> None:
    if "prefix" in ctx.invalid:      # said already: no "needs 'prefix'" on top of it
        values["prefix"] = ""


BGP_ANNOUNCE = Block(
    "bgp_announce", "BgpAnnounce",
    header=no_header,
    finish=_announce_finish,
    doc="What this virtual server announces over the bgp block's sessions. The "
                    "route is announced (with med) while the virtual server has its quorum "
                    "and at least one live real server of weight above 0 (all drained counts "
                    "as unhealthy), its vrrp_instance (if any) is MASTER and its "
                    "maintenance_file (if any) is absent; otherwise it is withdrawn, or "
                    "announced with down_med / maintenance_med where those are set. When "
                    "several of these apply, the least preferred outcome wins: a withdrawal, "
                    "else the highest MED. " + SEVERAL,
    keywords=(
        Kw("prefix", Custom(_prefix, "prefix"),
           doc="Default: the virtual server's address as /32 or /128; required for fwmark "
               "and group virtual servers. -t warns when it does not contain the address."),
        Kw("med", Int(0, UINT_MAX), doc="MULTI_EXIT_DISC while healthy (default: none)."),
        Kw("down_med", Int(0, UINT_MAX),
           doc="When set, an unhealthy virtual server's prefix is announced with this MED "
               "instead of withdrawn."),
        Kw("maintenance_med", Int(0, UINT_MAX),
           doc="When set, the prefix is announced with this MED while maintenance_file "
               "exists, instead of withdrawn."),
        Kw("community", Custom(communities, "communities ASN:VALUE or well-known names"),
           field="communities",
           doc="Standard communities (RFC 1997), all on one line: ASN:VALUE or no-export, "
               "no-advertise, no-export-subconfed, nopeer, blackhole."),
        Kw("large_community", Custom(large_communities, "large communities A:B:C"),
           field="large_communities",
           doc="Large communities (RFC 8092), all on one line."),
        Kw("next_hop", Custom(_next_hop, "self|IP address"), default="self",
           doc="'self' (the session's local address) or an address of the prefix's family."),
        Kw("vrrp_instance", Word("a vrrp_instance name"),
           doc="Announce only while this instance is MASTER."),
        Kw("maintenance_file", Custom(_file_path, "absolute file path"),
           doc="While this file exists: withdraw (or announce with maintenance_med)."),
        Kw("peers", Custom(_peer_addresses, "peer addresses"),
           doc="The peers it is announced to (each a bgp peer block). Default: every peer."),
    ),
)


def finish_announce(values: dict, ctx: Context) -> None:
    """Completes a virtual server's bgp_announce (called from virtual_server's finish: the
    default prefix is the server's address): the prefix, and a next hop of its family."""
    announce = values.get("bgp_announce")
    if announce is None:
        return
    where, ctx.location = ctx.location, announce.location or ctx.location
    prefix = announce.prefix
    if prefix is None and values["address"] is not None:
        address = ipaddress.ip_address(values["address"])
        prefix = f"{address}/{address.max_prefixlen}"
        values["bgp_announce"] = announce = dataclasses.replace(announce, prefix=prefix)
    if prefix == "":
        pass                          # given, and did not parse: its error is said
    elif prefix is None:
        kind = "fwmark" if values["fwmark"] is not None else "group"
        ctx.error(f"bgp_announce of a {kind} virtual_server needs 'prefix' (there is no "
                  "one address to announce)")
    elif announce.next_hop != "self" and \
            family(announce.next_hop) != ipaddress.ip_network(prefix).version:
        ctx.error(f"bgp_announce: next_hop {announce.next_hop} is not of the family of "
                  f"prefix {prefix}")
    ctx.location = where
