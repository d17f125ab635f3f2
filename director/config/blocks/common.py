"""Small helpers the keyword tables share."""

from __future__ import annotations

import re

from ..schema import Context, Custom, Flag, Int, Invalid, Kw, Raw, one_value
from ..values import parse_host, parse_ip, parse_port


def name_header(field: str = "name"):
    """``vrrp_instance VI_1 {``: exactly one name before the brace."""

    def header(args: list[str], ctx: Context) -> dict:
        if len(args) != 1:
            raise Invalid(f"expects one name before '{{', got '{' '.join(args) or 'nothing'}'")
        return {field: str(args[0])}

    return header


def no_header(args: list[str], ctx: Context) -> dict:
    if args:
        raise Invalid(f"takes nothing before '{{', got '{' '.join(args)}'")
    return {}


def constant_header(**fields):
    def header(args: list[str], ctx: Context) -> dict:
        no_header(args, ctx)
        return dict(fields)

    return header


def required(values: dict, ctx: Context, block: str, *fields: str) -> None:
    """A missing keyword is an error, unless it was given with a value that did not parse
    (that error is already said)."""
    for name in fields:
        if values.get(name) is None and name not in ctx.invalid:
            ctx.error(f"{block} needs '{name}'")


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def server_address(args: list[str], ctx: Context) -> tuple[str, int | None]:
    """An SMTP server: ``IP|HOST [PORT]``. A host name is resolved when mail is sent (keepalived
    resolves it while reading the file); one that cannot be a name (``10.1.1.5/24``, ``""``)
    is an error, as keepalived's "Invalid smtp server"."""
    if not 1 <= len(args) <= 2:
        raise Invalid(f"expects an address and an optional port, got '{' '.join(args)}'")
    host = str(args[0])
    try:
        host = str(parse_ip(host))
    except Invalid:
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise Invalid(f"expects an IP address or a host name, got '{host}'") from None
    return host, (parse_port(args[1], 1) if len(args) == 2 else None)


# Why a keyword is parsed but not acted on: -t says so for each one used, and docs/KEYWORDS.md
# lists them ("Not acted on"). By design: SNMP and D-Bus; left out: BFD and a few others,
# each with its reason where it is declared.
SNMP = ("replaced by design: director has no SNMP agent; /api/v1/state, the event stream and "
        "Prometheus /metrics carry what keepalived's MIBs and traps do")
DBUS = ("replaced by design: director has no D-Bus service; the JSON API (/api/v1/state, the "
        "admin POSTs) and the event stream do what keepalived's D-Bus interface does")
BFD = ("left out: BFD (RFC 5880) needs a BFD speaker, keepalived's being a process of its own; "
       "director has none (fast failure detection: VRRPv3 centisecond adverts, or FRR's bfdd "
       "beside director)")


def unsupported(names: str, why: str) -> tuple[Kw, ...]:
    """keepalived keywords accepted as written and reported by -t as not acted on; their
    (name, value) pairs collect in the block's ``unsupported`` field."""
    return tuple(Kw(name, Raw(name), field="unsupported", repeat="append", unsupported=why)
                 for name in names.split())


def _ip(args: list[str], ctx: Context) -> str:
    return str(parse_host(one_value(args, "an IP address"), ctx))


IP_ADDRESS = Custom(_ip, "IP address")


def _garp_interval(args: list[str], ctx: Context) -> float:
    """keepalived reads the pause between gratuitous ARPs / NAs in whole microseconds into an
    unsigned int, and refuses 0 ("vrrp_garp_interval '0' is invalid")."""
    word = one_value(args, "a number of seconds")
    try:
        seconds = float(word)
    except ValueError:
        seconds = float("nan")
    if not 0.000001 <= seconds <= 4294.967295:    # NaN fails too
        raise Invalid(f"must be a number of seconds from 0.000001 to 4294.967295, got {word}")
    return seconds


GARP_INTERVAL = Custom(_garp_interval, "seconds 0.000001..4294.967295")


# Gratuitous ARP / NA and advert-suppression settings: (name, value type, default: keepalived's
# but where said). global_defs has each as "vrrp_<name>" with that default; a vrrp_instance has it
# bare, unset meaning "the global value". The garp_lower_prio pair unset everywhere means
# the global vrrp_garp_master_delay / _repeat (keepalived 2.2.7 vrrp_complete_init), not the
# instance's own garp_master_*.
VRRP_INSTANCE_DEFAULTS = (       # (name, value type, default, why it is not acted on yet)
    ("garp_master_delay", Int(0, 86400), 5, ""),
    ("garp_master_repeat", Int(1, 1000), 5, ""),
    ("garp_master_refresh", Int(0, 86400), 0, ""),
    ("garp_master_refresh_repeat", Int(1, 1000), 1, ""),
    ("garp_lower_prio_delay", Int(0, 86400), None, ""),
    ("garp_lower_prio_repeat", Int(0, 1000), None, ""),
    ("garp_interval", GARP_INTERVAL, None, ""),
    ("gna_interval", GARP_INTERVAL, None, ""),
    ("lower_prio_no_advert", Flag(), None, ""),
    ("higher_prio_send_advert", Flag(), True, ""),      # keepalived: off; see its doc
)

_DOCS = {
    "garp_lower_prio_delay": "MASTER hearing a lower priority: seconds until a second set "
                             "of gratuitous ARPs / NAs (unset: the global "
                             "vrrp_garp_master_delay).",
    "garp_lower_prio_repeat": "MASTER hearing a lower priority: gratuitous ARPs / NAs sent "
                              "at once, and again after garp_lower_prio_delay; 0 sends none "
                              "(unset: the global vrrp_garp_master_repeat).",
    "garp_interval": "Least time between two gratuitous ARPs on an interface, whatever "
                     "instance sends them (keepalived's per-interface pacing; a garp_group "
                     "sets it per interface); an address waits at most once, so a paced "
                     "repeat collapses, as in keepalived. The instance form (director's) "
                     "paces that instance's addresses.",
    "gna_interval": "The same for unsolicited neighbour advertisements (IPv6).",
    "lower_prio_no_advert": "MASTER hearing a lower priority: no advert in answer (RFC).",
    "higher_prio_send_advert": "MASTER stepping down for a higher priority: one advert first, "
                               "so the winner re-sends its gratuitous ARPs after a healed "
                               "split brain. On by default in director (keepalived: off, "
                               "which leaves the neighbours on the loser about half of the "
                               "time); 'false' restores keepalived's behaviour.",
}


class InheritedFlag:
    """A vrrp_instance flag whose absence means "the global_defs value" (or another default
    decided at run time): unset stays None, where a Flag would read False and hide it.
    ``sets`` as for Flag (``no_accept`` stores False)."""

    def __init__(self, sets: bool = True) -> None:
        self.sets = sets

    def parse(self, args: list[str], ctx: Context) -> bool:
        return Flag(self.sets).parse(args, ctx)

    def describe(self) -> str:
        return "flag"


def instance_default_keywords(global_level: bool) -> tuple[Kw, ...]:
    if global_level:
        return tuple(Kw(f"vrrp_{name}", value, default=default, unsupported=why,
                        doc=_DOCS.get(name, ""))
                     for name, value, default, why in VRRP_INSTANCE_DEFAULTS)
    return tuple(Kw(name, InheritedFlag() if isinstance(value, Flag) else value,
                    unsupported=why, doc=_DOCS.get(name, ""))
                 for name, value, _, why in VRRP_INSTANCE_DEFAULTS)
