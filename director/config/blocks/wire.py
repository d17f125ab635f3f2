"""The VRRP wire and timing keywords (issue 14, part G): unicast TTL and source checks, the
multicast destination, checksum variants, receive buffers, start-up delays, gratuitous ARP /
NA pacing per interface (garp_group). vrrp.py and global_defs.py splice these tables in;
their meaning at run time lives in director/vrrp (packet, transport, instance, garp_pacing).
"""

from __future__ import annotations

import ipaddress

from ..schema import Block, Custom, Flag, Int, Invalid, Kw, Lines, Seconds, one_value
from ..values import single_name
from .common import GARP_INTERVAL, IP_ADDRESS, InheritedFlag, no_header

UINT_MAX = 2 ** 32 - 1


def _old_unicast_checksum(args, ctx) -> str:
    """``old_unicast_checksum [never]``: "config" when written alone."""
    if not args:
        return "config"
    if len(args) == 1 and args[0] == "never":
        return "never"
    raise Invalid(f"expects nothing or 'never', got '{' '.join(args)}'")


def _timer_expired_backup(args, ctx) -> int:
    """``timer_expired_backup [HIGHEST_OTHER_PRIORITY]``: 254 when written alone."""
    if not args:
        return 254
    return Int(1, 254).parse(args, ctx)


def _rx_bufs_policy(args, ctx) -> tuple:
    """``vrrp_rx_bufs_policy MTU|ADVERT|SIZE``: ("MTU",), ("ADVERT",) or ("SIZE", bytes)."""
    if not args:
        raise Invalid("expects MTU, ADVERT or a size in bytes")
    policy = None
    for word in args:
        upper = word.upper()
        if upper in ("MTU", "ADVERT"):
            if policy and policy[0] == "SIZE":
                ctx.warn("vrrp_rx_bufs_policy: cannot set a size and a policy; the policy is "
                         "ignored, as keepalived does")
            elif policy and policy[0] != upper:
                ctx.warn("vrrp_rx_bufs_policy: cannot set both MTU and ADVERT; ADVERT is "
                         "ignored, as keepalived does")
                policy = ("MTU",)
            else:
                policy = (upper,)
        elif word.isdecimal() and int(word) <= UINT_MAX:
            if policy and policy[0] != "SIZE":
                ctx.warn("vrrp_rx_bufs_policy: cannot set a size and a policy; the policy is "
                         "ignored, as keepalived does")
            policy = ("SIZE", int(word))
        else:
            raise Invalid(f"expects MTU, ADVERT or a size in bytes, got '{word}'")
    return policy


INSTANCE_KEYWORDS = (
    Kw("unicast_ttl", Int(0, 255),
       doc="TTL (IPv4) / hop limit (IPv6) of unicast adverts; default 255 (IPv6: the "
           "kernel's). Needs unicast_peer; a peer's min_ttl / max_ttl bound what it accepts."),
    Kw("check_unicast_src", Flag(),
       doc="Unicast: drop an advert whose source is not one of unicast_peer (counted as "
           "'unicast_src'), and check that peer's min_ttl / max_ttl. Global: "
           "vrrp_check_unicast_src."),
    Kw("unicast_fault_no_peer", Flag(),
       doc="An instance with no unicast_peer goes to FAULT instead of falling back to "
           "multicast (keepalived: 'Cannot use unicast without any peers')."),
    Kw("skip_check_adv_addr", InheritedFlag(),
       doc="Do not compare the address list of an advert from the current master with ours "
           "(director accepts a differing list anyway; it only stops counting it as "
           "'address_list'). Default: global vrrp_skip_check_adv_addr."),
    Kw("mcast_dst_ip", IP_ADDRESS,
       doc="Multicast group of this instance's adverts, joined on its interface (default "
           "global vrrp_mcast_group4 / vrrp_mcast_group6). IPv6: link-local multicast only. "
           "Ignored with unicast peers."),
    Kw("v3_checksum_as_v2", InheritedFlag(),
       doc="VRRPv3 over IPv4: checksum the VRRP message without the pseudo-header (as v2 and "
           "some old routers do), and do not verify received checksums (keepalived 2.3+). "
           "Default: global v3_checksum_as_v2."),
    Kw("old_unicast_checksum", Custom(_old_unicast_checksum, "[never]"),
       doc="VRRPv3 unicast over IPv4: compute the checksum with the multicast group as the "
           "pseudo-header's destination, as keepalived before 2.2.0 did. Without the keyword "
           "such an advert is still accepted and from then on answered the same way "
           "(keepalived's automatic mode); 'never' turns that off."),
    Kw("track_src_ip", Flag(),
       doc="FAULT while the configured source (unicast_src_ip or mcast_src_ip) is not an "
           "address of this host (probed every 0.5 s), as keepalived's manual says; "
           "keepalived 2.2.7 itself never faults (its check compares the sockaddr, not the "
           "address). Without a configured source it is ignored, as keepalived does."),
    Kw("native_ipv6", Flag(),
       doc="The instance is IPv6 (and VRRPv3) whatever its addresses; an error with IPv4 "
           "virtual addresses."),
    Kw("kernel_rx_buf_size", Int(0, UINT_MAX),
       doc="Bytes added to the receive buffer (SO_RCVBUF) of the instance's VRRP socket; it "
           "overrides global vrrp_rx_bufs_policy for this instance."),
    Kw("timer_expired_backup", Custom(_timer_expired_backup, "[PRIORITY]"),
       doc="keepalived 2.3+, with nopreempt: a MASTER held up (a stopped process, a paused "
           "VM) longer than a BACKUP of this priority (default 254) waits for it goes to "
           "BACKUP instead of advertising, so the other side that took over keeps the "
           "addresses."),
    Kw("debug", Int(0, 4),
       doc="keepalived's per-instance debug level 0-4: keepalived 2.2.7 stores it and never "
           "reads it; director the same (use -D for detailed logs)."),
)

GLOBAL_KEYWORDS = (
    Kw("vrrp_check_unicast_src", Flag(), doc="check_unicast_src for every instance."),
    Kw("vrrp_skip_check_adv_addr", Flag(), doc="skip_check_adv_addr for every instance."),
    Kw("vrrp_min_garp", Flag(),
       doc="One gratuitous ARP / NA on becoming MASTER and nothing after: sets "
           "vrrp_garp_master_repeat 1, _delay 0, _refresh 0 and _refresh_repeat 0 where those "
           "are left at their defaults (keepalived checks at the line; director as if it "
           "came first)."),
    Kw("vrrp_startup_delay", Seconds(0.001, UINT_MAX / 1000000),
       doc="At start-up (not on a reload), a BACKUP waits this long before its master down "
           "timer starts (keepalived: 'Delaying startup'), so that a box that booted does "
           "not take over before its network is up. Instances added by a reload during the "
           "delay wait with the others."),
    Kw("vrrp_delay_after_boot", Seconds(0.001, UINT_MAX / 1000000),
       doc="keepalived 2.4: like vrrp_startup_delay, but only this long after the system "
           "booted (/proc/uptime); the longer of the two applies."),
    Kw("vrrp_owner_ignore_adverts", Flag(),
       doc="keepalived 2.3.4+: an address owner (priority 255) drops every advert it "
           "receives (counted as 'owner_ignore'), and stays MASTER."),
    Kw("vrrp_down_timer_adverts", Int(1, 100), default=3,
       doc="Default of each instance's down_timer_adverts."),
    Kw("log_unknown_vrids", Flag(),
       doc="Log every advert for a virtual router id we do not run (vrrp.unknown_vrid, with "
           "the interface and the source); they are counted either way."),
    Kw("v3_checksum_as_v2", Flag(), doc="v3_checksum_as_v2 for every instance."),
    Kw("disable_local_igmp", Flag(),
       doc="Set net.ipv4.igmp_link_local_mcast_reports to 0 while running (restored on "
           "stop), so joining 224.0.0.18 sends no IGMP reports (some switches mishandle "
           "them). Read at start-up only, as keepalived."),
    Kw("vrrp_rx_bufs_policy", Custom(_rx_bufs_policy, "MTU|ADVERT|SIZE"),
       doc="Receive buffer (SO_RCVBUF) of each VRRP socket: MTU or ADVERT adds "
           "vrrp_rx_bufs_multiplier times the interface's MTU or the advert's length per "
           "instance on it; a number adds that many bytes per instance. Default: the "
           "kernel's."),
    Kw("vrrp_rx_bufs_multiplier", Int(1, UINT_MAX), default=3,
       doc="The multiplier of vrrp_rx_bufs_policy MTU / ADVERT."),
)

_NOT_KEEPALIVED = ("not a keepalived keyword (keepalived 2.2.7 to 2.4 warn 'unknown keyword' "
                   "and go on); director ignores it too")
GLOBAL_IGNORED = (
    Kw("vrrp_startup_delay_ignore", Flag(), ignored=_NOT_KEEPALIVED),
    Kw("vrrp_skip_check_adv_addr_ignore", Flag(), ignored=_NOT_KEEPALIVED),
)


def instance_finish(values: dict, ctx, name: str) -> None:
    """keepalived's own refusals and resets for these keywords, at the instance's line."""
    peers = values.get("unicast_peer")
    if values.get("unicast_ttl") is not None and not peers:
        ctx.warn(f"{name}: unicast_ttl without unicast_peer is ignored (keepalived: 'Cannot "
                 "use unicast_ttl without unicast peers - resetting')")
    if values.get("unicast_fault_no_peer") and peers:
        values["unicast_fault_no_peer"] = False
    group = values.get("mcast_dst_ip")
    if group is not None and peers:
        ctx.warn(f"{name}: mcast_dst_ip with unicast_peer is ignored, as keepalived does")
        values["mcast_dst_ip"] = None
    elif group is not None:
        address = ipaddress.ip_address(group)
        family = values["virtual_ipaddress"][0].family if values.get("virtual_ipaddress") \
            else address.version
        if address.version != family:
            ctx.warn(f"{name}: mcast_dst_ip {group} must match the instance's family; ignored "
                     "as keepalived does")
            values["mcast_dst_ip"] = None
        elif not address.is_multicast or (address.version == 6 and
                                           address.packed[1] & 0x0F != 2):   # link-local scope
            ctx.warn(f"{name}: mcast_dst_ip {group} is not"
                     f"{' link-local' if address.version == 6 else ''} multicast; ignored as "
                     "keepalived does")
            values["mcast_dst_ip"] = None
    if values.get("native_ipv6") and any(vip.family == 4 for vip in
                                         values.get("virtual_ipaddress") or ()):
        ctx.error(f"{name}: native_ipv6 with IPv4 virtual addresses")
    if values.get("track_src_ip") and not (values.get("unicast_src_ip") or
                                           values.get("mcast_src_ip")):
        ctx.warn(f"{name}: track_src_ip without unicast_src_ip or mcast_src_ip is ignored, as "
                 "keepalived does")
        values["track_src_ip"] = False
    if values.get("timer_expired_backup") is not None and values.get("preempt", True):
        ctx.warn(f"{name}: timer_expired_backup requires nopreempt; ignored, as keepalived "
                 "does")
        values["timer_expired_backup"] = None


def global_finish(values: dict, ctx) -> None:
    if values.get("vrrp_min_garp"):
        for name, default, minimal in (("vrrp_garp_master_repeat", 5, 1),
                                       ("vrrp_garp_master_delay", 5, 0),
                                       ("vrrp_garp_master_refresh", 0, 0),
                                       ("vrrp_garp_master_refresh_repeat", 1, 0)):
            if values.get(name) == default:
                values[name] = minimal


# -- garp_group { garp_interval S  gna_interval S  interface IF | interfaces { IF ... } } ------

def _garp_group_finish(values, ctx):
    names = tuple(values["interfaces"]) + ((values["interface"],) if values["interface"] else ())
    values["interfaces"] = names
    values["interface"] = None
    if values["garp_interval"] is None and values["gna_interval"] is None:
        ctx.warn("garp_group sets neither garp_interval nor gna_interval; it changes nothing")
    if not names:
        ctx.warn("garp_group names no interface (interface IF or interfaces { ... }); it "
                 "changes nothing")


GARP_GROUP = Block(
    "garp_group", "GarpGroup",
    header=no_header, finish=_garp_group_finish,
    keywords=(
        Kw("garp_interval", GARP_INTERVAL,
           doc="Least time between two gratuitous ARPs on these interfaces (over every "
               "instance), overriding the global vrrp_garp_interval."),
        Kw("gna_interval", GARP_INTERVAL,
           doc="Least time between two unsolicited NAs on these interfaces."),
        Kw("interface", Custom(lambda args, ctx: str(one_value(args, "an interface")),
                               "an interface")),
        Kw("interfaces", Lines(single_name, "interface names")),
    ),
)
