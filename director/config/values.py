"""Parsers for the structured values of keepalived.conf: addresses, address lines, routes,
status codes, digests, group entries and tracking lines.

Each parser takes the words of a line and a context, returns an immutable value and raises
``Invalid`` with a message that names what was expected and what was found.
"""

from __future__ import annotations

import ipaddress
import re
# socket's C half: its inet_pton and inet_ntop are socket's own, without the enums and
# selectors socket.py builds on import (-t imports what it needs, issue 17)
from _socket import AF_INET, inet_ntop, inet_pton
from dataclasses import dataclass, field

from .diagnostics import Location
from .schema import Context, Invalid

# -- addresses -----------------------------------------------------------------------------


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def parse_ip(word: str, what: str = "an IP address") -> IPAddress:
    try:
        return ipaddress.ip_address(word)
    except ValueError:
        raise Invalid(f"expects {what}, got '{word}'") from None


def parse_host(word: str, ctx: Context, what: str = "an IP address") -> IPAddress:
    """One address where keepalived reads it with inet_stosockaddr (source and peer addresses,
    servers, checker addresses, multicast groups): keepalived drops everything from the first
    '/' or '-' on, so ``unicast_src_ip 192.168.0.91/24`` copied from ``ip addr`` is
    192.168.0.91. A prefix length goes without a word; anything else dropped there is most
    likely a mistake, so it is dropped with a warning."""
    cut = min((i for i in (word.find("/"), word.find("-")) if i > 0), default=-1)
    if cut < 0:
        return parse_ip(word, what)
    try:
        address = ipaddress.ip_address(word[:cut])
    except ValueError:
        raise Invalid(f"expects {what}, got '{word}'") from None
    suffix = word[cut:]
    if suffix[0] == "-":
        ctx.warn(f"'{word}': one address is expected, not a range; director reads {address}, "
                 "as keepalived does")
    elif not (suffix[1:].isdecimal() and int(suffix[1:]) <= address.max_prefixlen):
        ctx.warn(f"'{word}': '{suffix}' is not a prefix length; director reads {address}, "
                 "as keepalived does")
    return address


def host_text(word: str, ctx: Context, what: str = "an IP address") -> str:
    """parse_host's address as text. A dotted quad written as the kernel would print it
    (nearly every address of a file) is taken as it is: inet_pton and inet_ntop in C, where
    ipaddress's parser and printer in Python were a tenth of loading 10,000 real servers
    (issue 17). Anything else (IPv6, a prefix or range to drop, a mistake) goes through
    parse_host."""
    try:
        if inet_ntop(AF_INET, inet_pton(AF_INET, word)) == word:
            return str(word)
    except (OSError, ValueError, TypeError):
        pass
    return str(parse_host(word, ctx, what))


def parse_prefix(word: str, what: str = "an address[/prefix]") -> IPInterface:
    """``10.0.0.1``, ``10.0.0.1/24`` or ``ae00::1/64``; a bare address gets a host prefix."""
    try:
        return ipaddress.ip_interface(word)
    except ValueError:
        address, _, prefix = word.partition("/")
        try:
            family = ipaddress.ip_address(address).version
        except ValueError:
            raise Invalid(f"expects {what}, got '{word}'") from None
        limit = 32 if family == 4 else 128
        raise Invalid(f"prefix '/{prefix}' of '{word}' must be a number from 0 to "
                      f"{limit}") from None


def parse_network(word: str) -> str:
    """A route destination: ``default`` or a prefix; host bits set are accepted as ip(8) does."""
    if word == "default":
        return word
    try:
        return str(ipaddress.ip_network(word, strict=False))
    except ValueError:
        raise Invalid(f"expects a destination prefix, got '{word}'") from None


def parse_port(word: str, low: int = 0) -> int:
    try:
        port = int(word, 10)
    except ValueError:
        raise Invalid(f"expects a port number from {low} to 65535, got '{word}'") from None
    if not low <= port <= 65535:
        raise Invalid(f"expects a port number from {low} to 65535, got {port}")
    return port


def ip_port(args: list[str], ctx: Context) -> tuple[str, int | None]:
    """``IP [PORT]`` as in real_server and sorry_server."""
    if not 1 <= len(args) <= 2:
        raise Invalid(f"expects an IP address and an optional port, got '{' '.join(args)}'")
    address = host_text(args[0], ctx)
    return address, (parse_port(args[1]) if len(args) == 2 else None)


def scope_value(word: str) -> str:
    if word in ("global", "site", "link", "host", "nowhere") or word.isdecimal():
        return word
    raise Invalid(f"scope must be global, site, link, host, nowhere or a number, got '{word}'")


# -- virtual_ipaddress / static_ipaddress lines ---------------------------------------------

@dataclass(frozen=True, slots=True)
class VirtualAddress:
    """One virtual_ipaddress / static_ipaddress line, as ip-address(8) takes it."""

    address: str                    # with its prefix: "192.168.1.11/32"
    dev: str | None = None
    brd: str | None = None
    scope: str | None = None
    label: str | None = None
    peer: str | None = None
    preferred_lft: str | None = None
    track_group: str | None = None
    flags: tuple[str, ...] = ()     # home, -nodad, noprefixroute, autojoin, no_track
    location: Location | None = field(default=None, compare=False, repr=False)

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4


_VIP_OPTIONS = {"dev", "brd", "broadcast", "scope", "label", "peer", "preferred_lft",
                "track_group"}
_VIP_FLAGS = {"home", "-nodad", "nodad", "noprefixroute", "autojoin", "no_track"}


def virtual_address(words: list[str], ctx: Context) -> VirtualAddress:
    address = parse_prefix(words[0], "an address[/prefix]")
    options: dict[str, str] = {}
    flags: list[str] = []
    index = 1
    while index < len(words):
        word = words[index]
        if word in _VIP_FLAGS:
            flags.append(word.lstrip("-"))
            index += 1
            continue
        if word not in _VIP_OPTIONS:
            raise Invalid(f"unknown address option '{word}' (expected one of "
                          f"{', '.join(sorted(_VIP_OPTIONS | _VIP_FLAGS))})")
        if index + 1 >= len(words):
            raise Invalid(f"'{word}' needs a value")
        value = words[index + 1]
        if word in ("brd", "broadcast"):
            if value not in ("+", "-"):
                parse_ip(value, "a broadcast address")
            word = "brd"
        elif word == "scope":
            value = scope_value(value)
        elif word == "peer":
            value = str(parse_prefix(value, "a peer address"))
        elif word == "label" and len(value) > 15:
            raise Invalid(f"label '{value}' is longer than the kernel's 15 characters")
        options[word] = value
        index += 2
    return VirtualAddress(address=str(address), flags=tuple(flags), location=ctx.location,
                          **options)


# -- virtual_routes / static_routes ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Route:
    """One virtual_routes / static_routes line, as ip-route(8) takes it."""

    destination: str
    type: str = "unicast"           # unicast, blackhole, unreachable, prohibit, throw
    src: str | None = None
    via: str | None = None
    dev: str | None = None
    scope: str | None = None
    table: str | None = None
    metric: int | None = None
    nexthops: tuple[str, ...] = ()  # "via A or B": extra gateways of a multipath route
    options: tuple[tuple[str, str], ...] = ()   # the rest of ip-route(8)'s options, as written
    flags: tuple[str, ...] = ()


_ROUTE_TYPES = {"blackhole", "unreachable", "prohibit", "throw"}
_ROUTE_VALUE_OPTIONS = {"mtu", "advmss", "realms", "tos", "dsfield", "protocol", "proto", "pref",
                        "initcwnd", "initrwnd", "rtt", "rttvar", "rto_min", "ssthresh", "cwnd",
                        "window", "features", "hoplimit", "congctl", "expires", "reordering",
                        "fastopen_no_cookie", "quickack", "track_group", "encap"}
_ROUTE_FLAGS = {"onlink", "no_track", "pervasive", "lock"}


def route(words: list[str], ctx: Context) -> Route:
    fields: dict = {}
    options: list[tuple[str, str]] = []
    flags: list[str] = []
    nexthops: list[str] = []
    destination = None
    index = 0
    while index < len(words):
        word = words[index]
        value = words[index + 1] if index + 1 < len(words) else None
        if word in _ROUTE_TYPES and destination is None:
            fields["type"] = word
            index += 1
            continue
        if word in _ROUTE_FLAGS:
            flags.append(word)
            index += 1
            continue
        if word in ("src", "via", "gw", "or", "dev", "scope", "table", "metric", "to") \
                or word in _ROUTE_VALUE_OPTIONS:
            if value is None:
                raise Invalid(f"'{word}' needs a value")
            if word == "src":
                fields["src"] = str(parse_ip(value, "a source address"))
            elif word in ("via", "gw"):
                if word == "gw":
                    ctx.warn("'gw' for routes is deprecated: use 'via'")
                if value in ("inet", "inet6"):       # ip-route(8)'s "via [FAMILY] ADDRESS"
                    index += 1
                    value = _gateway_of_family(value, words[index + 1:index + 2])
                fields["via"] = str(parse_ip(value, "a gateway address"))
            elif word == "or":
                nexthops.append(str(parse_ip(value, "a gateway address")))
            elif word == "dev":
                fields["dev"] = value
            elif word == "scope":
                fields["scope"] = scope_value(value)
            elif word == "table":
                fields["table"] = value
            elif word == "metric":
                if not value.isdecimal():
                    raise Invalid(f"metric must be a number, got '{value}'")
                fields["metric"] = int(value)
            elif word == "to":
                destination = parse_network(value)
            else:
                options.append((word, value))
            index += 2
            continue
        if destination is None:
            destination = parse_network(word)
            index += 1
            continue
        raise Invalid(f"unknown route option '{word}'")
    if destination is None:
        raise Invalid("a route needs a destination prefix")
    if nexthops and "via" not in fields:
        raise Invalid("'or' adds a gateway to a route that has none ('via' first)")
    addresses = [destination, fields.get("src"), fields.get("via"), *nexthops]
    if len({":" in a for a in addresses if a and a != "default"}) > 1:
        raise Invalid(f"cannot mix IPv4 and IPv6 in one route ('{' '.join(words)}'), as "
                      "keepalived cannot")
    return Route(destination=destination, nexthops=tuple(nexthops), options=tuple(options),
                 flags=tuple(flags), **fields)


def _gateway_of_family(family: str, rest: list[str]) -> str:
    if not rest:
        raise Invalid(f"'via {family}' needs a gateway address")
    version = 6 if family == "inet6" else 4
    if parse_ip(rest[0], "a gateway address").version != version:
        raise Invalid(f"'via {family}' needs an IPv{version} gateway, got '{rest[0]}'")
    return rest[0]


# -- tracking lines ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tracked:
    """A line of track_interface / track_script / track_file: a name and an optional weight.
    weight None means "no weight": the instance goes to FAULT when the tracked thing fails."""

    name: str
    weight: int | None = None
    reverse: bool = False
    location: Location | None = field(default=None, compare=False, repr=False)


def tracked(words: list[str], ctx: Context, clamp: bool = True) -> Tracked:
    """``NAME [weight N [reverse|noreverse]]``; keepalived clamps +-254 to +-253 with an error
    for interfaces and scripts, so a warning says so here (``clamp``)."""
    name = words[0]
    rest = words[1:]
    weight = None
    reverse = False
    if rest and rest[0] == "weight":
        if len(rest) < 2:
            raise Invalid(f"'{name} weight' needs a number from -254 to 254")
        try:
            weight = int(rest[1])
        except ValueError:
            raise Invalid(f"weight must be a number from -254 to 254, got '{rest[1]}'") from None
        if not -254 <= weight <= 254:
            raise Invalid(f"weight must be a number from -254 to 254, got {weight}")
        if clamp and abs(weight) == 254:
            weight = 253 if weight > 0 else -253
            ctx.warn(f"{name}: weight {rest[1]} is clamped to {weight}, as keepalived does")
        rest = rest[2:]
        if rest and rest[0] in ("reverse", "noreverse"):
            reverse = rest[0] == "reverse"
            rest = rest[1:]
    if rest:
        raise Invalid(f"expects NAME [weight N [reverse]], got '{' '.join(words)}'")
    return Tracked(name, weight, reverse, ctx.location)


def tracked_unclamped(words: list[str], ctx: Context) -> Tracked:
    """A track_file / track_process line: keepalived takes weights -254..254 as written
    (a file value times -254 is a FAULT, vrrp_track.c)."""
    return tracked(words, ctx, clamp=False)


class Name(str):
    """A name from a list block (a sync group's member) that knows its line."""

    location: Location | None = None


def single_name(words: list[str], ctx: Context) -> Name:
    if len(words) != 1:
        raise Invalid(f"expects one name per line, got '{' '.join(words)}'")
    name = Name(words[0])
    name.location = ctx.location
    return name


def email(words: list[str], ctx: Context) -> str:
    if len(words) != 1:
        raise Invalid(f"expects one e-mail address per line, got '{' '.join(words)}'")
    return str(words[0])


@dataclass(frozen=True, slots=True)
class UnicastPeer:
    address: str
    min_ttl: int | None = None
    max_ttl: int | None = None
    location: Location | None = field(default=None, compare=False, repr=False)


def unicast_peer(words: list[str], ctx: Context) -> UnicastPeer:
    address = str(parse_host(words[0], ctx, "a peer address"))
    options: dict[str, int] = {}
    rest = words[1:]
    while rest:
        if rest[0] not in ("min_ttl", "max_ttl") or len(rest) < 2 or not rest[1].isdecimal() \
                or not 0 <= int(rest[1]) <= 255:
            raise Invalid(f"expects ADDRESS [min_ttl 0-255] [max_ttl 0-255], got "
                          f"'{' '.join(words)}'")
        options[rest[0]] = int(rest[1])
        rest = rest[2:]
    return UnicastPeer(address, **options, location=ctx.location)


# -- lvs_sync_daemon ----------------------------------------------------------------------

SYNC_DAEMON_OPTIONS = {"id": (0, 255), "maxlen": (1, 65507), "port": (1, 65535),
                       "ttl": (1, 255)}


@dataclass(frozen=True, slots=True)
class LvsSyncDaemon:
    """global_defs ``lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N]
    [ttl N] [group IP]``: the kernel's IPVS connection sync daemons on INTERFACE, master
    while the instance is MASTER and backup otherwise. None: the kernel's default (sync id:
    the instance's virtual_router_id, as keepalived does)."""

    interface: str
    instance: str
    id: int | None = None
    maxlen: int | None = None
    port: int | None = None
    ttl: int | None = None
    group: str | None = None
    location: Location | None = field(default=None, compare=False, repr=False)


def lvs_sync_daemon(words: list[str], ctx: Context) -> LvsSyncDaemon:
    usage = "expects INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]"
    if len(words) < 2:
        raise Invalid(f"{usage}, got '{' '.join(words)}'")
    options: dict[str, object] = {}
    rest = words[2:]
    while rest:
        name = rest[0]
        if len(rest) < 2 or (name not in SYNC_DAEMON_OPTIONS and name != "group"):
            raise Invalid(f"{usage}, got '{' '.join(words)}'")
        if name == "group":
            group = parse_host(rest[1], ctx, "a multicast group")
            if not group.is_multicast:
                raise Invalid(f"group: {rest[1]} is not a multicast address")
            options["group"] = str(group)
        else:
            low, high = SYNC_DAEMON_OPTIONS[name]
            if not rest[1].isdecimal() or not low <= int(rest[1]) <= high:
                raise Invalid(f"{name} must be an integer from {low} to {high}, got {rest[1]}")
            options[name] = int(rest[1])
        rest = rest[2:]
    return LvsSyncDaemon(words[0], words[1], **options, location=ctx.location)


# -- virtual_server_group entries ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GroupEntry:
    """``IP[-LAST] PORT`` (a range of addresses differing in their last part) or ``fwmark N``."""

    address: str | None = None
    range_end: str | None = None
    port: int | None = None
    fwmark: int | None = None


def group_entry(words: list[str], ctx: Context) -> GroupEntry:
    if words[0] == "fwmark":
        if len(words) != 2 or not words[1].isdecimal() or not 1 <= int(words[1]) <= 0xFFFFFFFF:
            raise Invalid(f"expects 'fwmark N' with N from 1 to 4294967295, got "
                          f"'{' '.join(words)}'")
        return GroupEntry(fwmark=int(words[1]))
    if len(words) > 2:
        raise Invalid(f"expects 'IP[-LAST] PORT' or 'fwmark N', got '{' '.join(words)}'")
    first, _, last = words[0].partition("-")
    start = parse_ip(first)
    end = None
    if last:
        end = _range_end(start, last, words[0])
    port = parse_port(words[1]) if len(words) == 2 else None
    return GroupEntry(address=str(start), range_end=end, port=port)


def _range_end(start, last: str, written: str) -> str:
    """keepalived's ranges vary the last octet (IPv4) or the last 16-bit group (IPv6)."""
    try:
        if start.version == 4:
            value = int(last, 10)
            limit, shift = 255, 8
        else:
            value = int(last, 16)
            limit, shift = 0xFFFF, 16
    except ValueError:
        raise Invalid(f"range '{written}': '{last}' is not a number") from None
    base = int(start) & ~((1 << shift) - 1)
    low = int(start) - base
    if not low <= value <= limit:
        raise Invalid(f"range '{written}' ends below its start or past {limit}")
    return str(ipaddress.ip_address(base + value) if start.version == 4
               else ipaddress.IPv6Address(base + value))


# -- HTTP checks ----------------------------------------------------------------------------

_DIGEST = re.compile(r"[0-9a-fA-F]{32}\Z")


def digest(args: list[str], ctx: Context) -> str:
    if len(args) != 1 or not _DIGEST.match(args[0]):
        got = " ".join(args) or "nothing"
        raise Invalid(f"must be an MD5 digest of 32 hex digits (as genhash prints), got '{got}'")
    return args[0].lower()


def status_codes(args: list[str], ctx: Context) -> tuple[tuple[int, int], ...]:
    """``200``, ``200-299 400-499 503``: each a code or an inclusive range, 100 to 599."""
    if not args:
        raise Invalid("expects HTTP status codes or ranges such as 200 or 200-299")
    ranges = []
    for word in args:
        low_text, dash, high_text = word.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise Invalid(f"expects an HTTP status code or a range such as 200-299, got "
                          f"'{word}'") from None
        if not (100 <= low <= 599 and 100 <= high <= 599):
            raise Invalid(f"status code '{word}' must lie within 100-599")
        if low > high:
            raise Invalid(f"status code range '{word}' is reversed: write {high}-{low}")
        ranges.append((low, high))
    return tuple(ranges)


# -- commands ---------------------------------------------------------------------------------

_commands_made = 0


def commands_made() -> int:
    """How many Commands this process has made: a load during which it did not grow holds
    no script, and -t's walk looking for them is skipped (config/__init__.py)."""
    return _commands_made


@dataclass(frozen=True, slots=True)
class Command:
    """A script keepalived runs: the command line (split shell-style when it is run), and the
    user and group to run it as (keepalived reads them from words 2 and 3)."""

    line: str
    user: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        global _commands_made
        _commands_made += 1


def command(args: list[str], ctx: Context, with_user: bool = True) -> Command:
    """keepalived takes the first word as the whole command (quote a command with arguments);
    after it come USER [GROUP] for notify scripts, and nothing for ``script``/``misc_path``,
    whose extra words keepalived silently drops. So do we, but not silently."""
    if not args:
        raise Invalid("expects a command (quote it if it has arguments)")
    line = str(args[0])
    extra = [str(a) for a in args[1:]]
    if not with_user:
        if extra:
            ctx.warn(f"only '{line}' is run: keepalived ignores the words after an unquoted "
                     f"command ('{' '.join(extra)}'); quote the whole command")
        return Command(line)
    if len(extra) > 2:
        raise Invalid(f"expects \"COMMAND ARGS\" [USER [GROUP]], got '{' '.join(args)}': "
                      "quote the command")
    return Command(line, *extra)


@dataclass(frozen=True, slots=True)
class NotifyFifo:
    """``notify_fifo PATH [USER [GROUP]]``: a FIFO the daemon writes notification lines to;
    USER and GROUP own it when the daemon creates it."""

    path: str
    user: str | None = None
    group: str | None = None


def notify_fifo(args: list[str], ctx: Context) -> NotifyFifo:
    if not 1 <= len(args) <= 3:
        raise Invalid(f"expects FIFO_NAME [USER [GROUP]], got '{' '.join(args) or 'nothing'}'")
    return NotifyFifo(*(str(a) for a in args))


def notify_deleted(args: list[str], ctx: Context) -> Command | bool:
    """``notify_deleted [COMMAND [USER [GROUP]]]``: True alone, the Command with a script."""
    return command(args, ctx) if args else True


@dataclass(frozen=True)
class Script:
    """The value type of command keywords: ``notify_master "/bin/x arg" [USER [GROUP]]``,
    or with ``with_user=False`` ``script "/bin/x arg"``."""

    with_user: bool = True

    def parse(self, args: list[str], ctx: Context) -> Command:
        return command(args, ctx, self.with_user)

    def describe(self) -> str:
        return '"COMMAND ARGS" [USER [GROUP]]' if self.with_user else '"COMMAND ARGS"'


# -- director extensions ----------------------------------------------------------------------


def peer_url(args: list[str], ctx: Context) -> str:
    """One line of ``override_peers { ... }``: http(s)://HOST:PORT of a peer's --web."""
    if len(args) != 1:
        raise Invalid(f"expects one URL (http[s]://HOST:PORT), got {' '.join(args)!r}")
    from urllib.parse import urlsplit      # here: only override_peers has URLs
    url = args[0].rstrip("/")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path or parts.query or parts.fragment or parts.username:
        raise Invalid(f"expects http[s]://HOST:PORT (a peer director's --web), got {url!r}")
    return url
