"""virtual_server_group, virtual_server and real_server."""

from __future__ import annotations

import dataclasses

from ..schema import UINT_MAX, Block, Choice, Custom, Flag, Int, Invalid, Kw, Seconds, Word
from ..values import Script, group_entry, host_text, ip_port, parse_ip, parse_port
from .bgp import BGP_ANNOUNCE, finish_announce
from .checkers import checker_keywords
from .common import SNMP, name_header, unsupported
# The names live with the views that show them (director/state.py); importers keep
# finding them here.
from ...names import real_server_name, virtual_server_name  # noqa: F401

SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf",
              "mh", "twos")
METHODS = ("NAT", "DR", "TUN")
WEIGHTLESS = ("rr", "lc")     # schedulers that ignore weights: a slow start changes nothing


def _method(args, ctx) -> str:
    """``NAT``, ``DR`` or ``TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]``."""
    if not args or args[0] not in METHODS:
        raise Invalid(f"must be one of NAT, DR, TUN, got '{' '.join(args) or 'nothing'}'")
    if len(args) > 1:
        if args[0] != "TUN":
            raise Invalid(f"only TUN takes options, got '{' '.join(args)}'")
        ctx.warn(f"tunnel options '{' '.join(args[1:])}' are not acted on: director programs "
                 "plain IPIP tunnels")
    return args[0]


def _persistence_timeout(args, ctx) -> int:
    """keepalived: with no value, 360 s."""
    return Int(1, 2678400).parse(args, ctx) if args else 360


def _slow_start(args, ctx) -> float:
    """0 (off) or 1 to 86400 seconds: a ramp is at least 10 steps of at least 0.1 s."""
    from ...lb.slowstart import MIN_SECONDS
    seconds = Seconds(0, 86400).parse(args, ctx)
    if 0 < seconds < MIN_SECONDS:
        raise Invalid(f"must be 0 (off) or from {MIN_SECONDS:g} to 86400 seconds (a ramp is "
                      f"at least 10 steps of at least 0.1 s), got {args[0]}")
    return seconds


SLOW_START_DOC = ("Slow start: after the server comes back (a rise after failed checks, or a "
                  "restore from a drain; not at start-up) its weight ramps from 1 to its full "
                  "weight over this time, in 20 steps of at least 0.1 s. 0: off.")


def _real_server_header(args, ctx) -> dict:
    address, port = ip_port(args, ctx)
    return {"address": address, "port": port}


REAL_SERVER = Block(
    "real_server", "RealServer",
    header=_real_server_header, header_fields=(("address", None), ("port", None)),
    keywords=(
        Kw("weight", Int(0, 2147483647), doc="Default: the virtual server's weight (1)."),
        Kw("inhibit_on_failure", Flag(), doc="On failure set weight 0 instead of removing."),
        Kw("notify_up", Script()),
        Kw("notify_down", Script()),
        Kw("uthreshold", Int(0, 1 << 31), doc="IPVS upper connection threshold."),
        Kw("lthreshold", Int(0, 1 << 31), doc="IPVS lower connection threshold."),
        Kw("smtp_alert", Flag()),
        Kw("lvs_method", Custom(_method, "NAT|DR|TUN [tunnel options]"),
           doc="Forwarding method for this server only."),
        Kw("delay_loop", Seconds(0.001, 86400)),
        Kw("alpha", Flag()),
        Kw("rise", Int(1, 1000), doc="director's addition: see the checkers' rise."),
        Kw("retry", Int(1, UINT_MAX)),
        Kw("delay_before_retry", Seconds(0, 86400)),
        Kw("warmup", Seconds(0, 86400)),
        Kw("connect_timeout", Seconds(0.001, 3600)),
        Kw("virtualhost", Word("a host name")),
        Kw("slow_start", Custom(_slow_start, "SECONDS"), extension=True,
           doc=SLOW_START_DOC + " Default: the virtual server's."),
        *unsupported("snmp_name", SNMP),
        *checker_keywords(),
    ),
)


def _virtual_server_header(args, ctx) -> dict:
    """``IP PORT``, ``fwmark N`` or ``group NAME``."""
    if len(args) == 2 and args[0] == "fwmark":
        if not args[1].isdecimal() or not 1 <= int(args[1]) <= 0xFFFFFFFF:
            raise Invalid(f"fwmark must be a number from 1 to 4294967295, got '{args[1]}'")
        return {"fwmark": int(args[1])}
    if len(args) == 2 and args[0] == "group":
        return {"group": str(args[1])}
    if len(args) == 2:
        return {"address": host_text(args[0], ctx), "port": parse_port(args[1])}
    raise Invalid(f"expects 'IP PORT', 'fwmark N' or 'group NAME', got "
                  f"'{' '.join(args) or 'nothing'}'")


def _persistence_granularity(args, ctx):
    if len(args) != 1:
        raise Invalid("expects a netmask (255.255.255.0) or a prefix length")
    word = args[0]
    if word.isdecimal() and 0 <= int(word) <= 128:
        return word
    try:
        parse_ip(word, "a netmask")
    except Invalid:
        raise Invalid(f"expects a netmask (255.255.255.0) or a prefix length, got "
                      f"'{word}'") from None
    return word


def _virtual_server_finish(values, ctx):
    name = virtual_server_name(values)
    if values["protocol"] is None:
        values["protocol"] = "TCP"
        if values["fwmark"] is None and "protocol" not in ctx.invalid:
            ctx.warn(f"virtual_server {name} has no 'protocol': director uses TCP, keepalived "
                     "uses UDP (and says so as an error); write it out")
    if not values["real_servers"] and values.get("sorry_server") is None \
            and "real_servers" not in ctx.invalid:
        ctx.warn(f"virtual_server {name} has no real_server")
    if values["port"] is None and values["fwmark"] is None and values["group"] is None:
        ctx.error(f"virtual_server {name} needs a port")
    for scheduler in ("sh", "mh"):
        for flag in (f"{scheduler}-port", f"{scheduler}-fallback"):
            if values[flag.replace("-", "_")] and values["lb_algo"] != scheduler:
                ctx.warn(f"virtual_server {name}: {flag} only applies to lb_algo {scheduler}, "
                         f"not {values['lb_algo']}: ignored, as keepalived does (flag-"
                         f"{2 if flag.endswith('port') else 1} sets the bit for any "
                         f"scheduler)")
    servers = []
    for server in values["real_servers"]:
        changes = {}
        if server.weight is None:
            changes["weight"] = values["weight"]
        if server.slow_start is None and values["slow_start"] is not None:
            changes["slow_start"] = values["slow_start"]
        port = server.port or None
        if values["port"] is not None:
            if port is None:
                changes["port"] = values["port"]
            elif port != values["port"] and (server.lvs_method or values["lb_kind"]) != "NAT":
                ctx.warn(f"real_server {server.address} port {port} differs from the virtual "
                         f"port {values['port']}: only NAT can change ports; it is reset to "
                         f"{values['port']}, as keepalived does")
                changes["port"] = values["port"]
        servers.append(dataclasses.replace(server, **changes) if changes else server)
    values["real_servers"] = tuple(servers)
    if values["lb_algo"] in WEIGHTLESS and any(server.slow_start for server in servers):
        ctx.warn(f"virtual_server {name}: slow_start has no effect with lb_algo "
                 f"{values['lb_algo']}, which ignores weights (wrr, wlc, sh or mh follow them)")
    if values["quorum"] > 1 and values["hysteresis"] >= values["quorum"]:
        ctx.warn(f"virtual_server {name}: hysteresis {values['hysteresis']} must be below quorum "
                 f"{values['quorum']}; keepalived lowers it to {values['quorum'] - 1}")
        values["hysteresis"] = values["quorum"] - 1
    finish_announce(values, ctx)


VIRTUAL_SERVER = Block(
    "virtual_server", "VirtualServer",
    header=_virtual_server_header,
    header_fields=(("address", None), ("port", None), ("fwmark", None), ("group", None)),
    finish=_virtual_server_finish,
    keywords=(
        Kw("delay_loop", Seconds(0.001, 86400), default=60.0,
           doc="Seconds between two checks of a real server."),
        Kw("lb_algo", Choice(SCHEDULERS, case="lower"), aliases=("lvs_sched",), default="wlc",
           doc="IPVS scheduler."),
        Kw("lb_kind", Custom(_method, "NAT|DR|TUN [tunnel options]"), aliases=("lvs_method",),
           default="NAT", doc="Forwarding method: NAT, DR or TUN."),
        Kw("protocol", Choice(("TCP", "UDP", "SCTP"))),
        Kw("persistence_timeout", Custom(_persistence_timeout, "[SECONDS]"),
           doc="Seconds a client sticks to a server (360 when given without a value)."),
        Kw("persistence_granularity", Custom(_persistence_granularity, "NETMASK|PREFIX")),
        Kw("persistence_engine", Word("an IPVS persistence engine")),
        Kw("ha_suspend", Flag(), doc="Program the service only while its address is configured "
                                     "on this host (held by VRRP)."),
        Kw("virtualhost", Word("a host name"), doc="Default Host header of HTTP checks."),
        Kw("alpha", Flag()),
        Kw("omega", Flag(), doc="On stop, run quorum_down (if the quorum is up) and the "
                                "notify_down of the real servers that are up."),
        Kw("rise", Int(1, 1000), doc="director's addition: see the checkers' rise."),
        Kw("quorum", Int(1, UINT_MAX), default=1, doc="Sum of live weights needed."),
        Kw("hysteresis", Int(0, UINT_MAX), default=0),
        Kw("weight", Int(1, 2147483647), default=1, doc="Default weight of the real servers."),
        Kw("quorum_up", Script()),
        Kw("quorum_down", Script()),
        Kw("sorry_server", Custom(ip_port, "IP [PORT]")),
        Kw("sorry_server_inhibit", Flag()),
        Kw("sorry_server_lvs_method", Custom(_method, "NAT|DR|TUN")),
        Kw("inhibit_on_failure", Flag()),
        Kw("smtp_alert", Flag()),
        Kw("retry", Int(1, UINT_MAX)),
        Kw("delay_before_retry", Seconds(0, 86400)),
        Kw("warmup", Seconds(0, 86400)),
        Kw("connect_timeout", Seconds(0.001, 4294.967295)),
        Kw("ops", Flag(), doc="IPVS one-packet scheduling (UDP)."),
        Kw("hashed", Flag()),
        Kw("flag-1", Flag(), field="flag_1"),
        Kw("flag-2", Flag(), field="flag_2"),
        Kw("flag-3", Flag(), field="flag_3"),
        Kw("sh-port", Flag(), field="sh_port"),
        Kw("sh-fallback", Flag(), field="sh_fallback"),
        Kw("mh-port", Flag(), field="mh_port"),
        Kw("mh-fallback", Flag(), field="mh_fallback"),
        Kw("ip_family", Choice(("inet", "inet6"), case="lower")),
        Kw("real_server", REAL_SERVER, field="real_servers", repeat="append"),
        Kw("bgp_announce", BGP_ANNOUNCE, repeat="once", extension=True,
           doc="Announce this virtual server's address over BGP while it is healthy."),
        Kw("slow_start", Custom(_slow_start, "SECONDS"), extension=True,
           doc=SLOW_START_DOC + " The default of its real servers."),
        *unsupported("snmp_name", SNMP),
        Kw("nat_mask", Word("a netmask"),
           ignored="nat_mask is ignored: IPVS never used it (the VIP's prefix in "
                   "virtual_ipaddress is what counts)"),
    ),
)

VIRTUAL_SERVER_GROUP = Block(
    "virtual_server_group", "VirtualServerGroup",
    header=name_header(), header_fields=(("name", None),),
    items=("entries", group_entry, ""),
    keywords=(),
)
