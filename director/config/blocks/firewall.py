"""The keywords of accept mode and of the firewall that carries it out: vrrp_instance accept /
no_accept / strict_mode, global_defs nftables* and keepalived's iptables / ipset names (what
they decide: config/strict.py; the rules: vrrp/firewall.py)."""

from __future__ import annotations

import re

from ..schema import Custom, Flag, Int, Invalid, Kw
from ..strict import DEFAULT_TABLE
from .common import InheritedFlag

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}\Z")   # nft's limit: 31 characters


def _table(args: list[str], ctx) -> str:
    if len(args) > 1:
        raise Invalid(f"expects an optional table name, got '{' '.join(args)}'")
    name = str(args[0]) if args else DEFAULT_TABLE
    if not _TABLE_NAME.match(name):
        raise Invalid(f"table name must be a letter then up to 30 letters, digits or '_', "
                      f"got '{name}'")
    return name


def _names(most: int, what: str):
    def parse(args: list[str], ctx) -> tuple[str, ...]:
        if len(args) > most:
            raise Invalid(f"expects at most {most} {what}, got '{' '.join(args)}'")
        # keepalived built without iptables says as much ("iptables not supported, using
        # nftables instead"): the rules do not go where the file says
        ctx.warn("director has no iptables: accept mode's rules are nftables ones (table "
                 "keepalived, or global_defs 'nftables NAME'); write 'nftables'")
        return tuple(str(word) for word in args)
    return parse


_IPTABLES = ("director has no iptables back end: the rules are nftables ones in the table "
             "of 'nftables' (default keepalived), as keepalived built without iptables "
             "(Debian's) does.")


# keepalived reads it at the top level of the file; director also inside global_defs
NAMESPACE_WITH_IPSETS = Kw(
    "namespace_with_ipsets", Flag(),
    doc="keepalived: ipsets in a network namespace on Linux < 3.13. Nothing to do for "
        "nftables, which has always known namespaces.")


def firewall_keywords() -> tuple[Kw, ...]:
    """global_defs: where the accept-mode rules go."""
    return (
        Kw("nftables", Custom(_table, "[TABLE]"),
           doc="The nftables tables (ip TABLE and ip6 TABLE, default keepalived) holding the "
               "drop rules of accept mode off: chains in / out at nftables_priority, set "
               "vips of the addresses of every MASTER below priority 255 without accept; IPv6 "
               "neighbour discovery still passes. Made at start when an instance needs them "
               "(also without this keyword, as keepalived does), updated as instances gain "
               "and lose their VIPs, deleted on stop. Written after vrrp_iptables, keepalived "
               "ignores it; director always takes it."),
        Kw("nftables_priority", Int(-2147483648, 2147483647), default=-1,
           doc="Priority of the in and out chains (default -1: before the filter tables at "
               "0)."),
        Kw("nftables_ifindex", Flag(),
           doc="Link-local IPv6 VIPs are keyed by interface index in set vips_link_local "
               "(the default), also for an instance with dont_track_primary, which otherwise "
               "keys them by interface name (vips_link_local_name)."),
        Kw("nftables_counters", Flag(), doc="A counter on each rule (nft list table shows "
                                            "what was dropped)."),
        Kw("vrrp_iptables", Custom(_names(2, "chain names"), "[IN_CHAIN [OUT_CHAIN]]"),
           doc=_IPTABLES + " The chain names are kept but not used."),
        Kw("vrrp_ipsets", Custom(_names(5, "ipset names"), "[SET [SET6 [SET_IF6 [IGMP "
                                                          "[MLD]]]]]"),
           doc=_IPTABLES + " The VIPs are in the nftables sets vips / vips_link_local; the "
                           "ipset names are kept but not used."),
        Kw("vrrp_ipsets_off", Flag(),
           doc="No ipsets with vrrp_iptables (not a keepalived 2.2.7 keyword: its -t calls "
               "it unknown): director's rules use nftables sets, which nothing turns off."),
        NAMESPACE_WITH_IPSETS,
    )


def accept_keywords() -> tuple[Kw, ...]:
    """vrrp_instance: accept / no_accept / strict_mode, unset meaning "decided at run time"."""
    return (
        Kw("accept", InheritedFlag(), field="accept",
           doc="Accept mode (RFC 5798): a MASTER below priority 255 answers what is sent to "
               "its VIPs. Default: on, except in strict mode (off; with VRRPv2 it cannot be "
               "on: reset with a warning). Priority 255 always accepts."),
        Kw("no_accept", InheritedFlag(sets=False), field="accept",
           doc="Accept mode off: as MASTER below priority 255, drop packets to the VIPs and "
               "eVIPs (nftables, see global_defs nftables); they only route."),
        Kw("strict_mode", InheritedFlag(),
           doc="Strict mode for this instance (on|off; alone: on). Default: global_defs "
               "vrrp_strict."),
    )
