"""vrrp_script, vrrp_track_file, vrrp_sync_group and vrrp_instance."""

from __future__ import annotations

from ..schema import (Block, Choice, Custom, Flag, Int, Invalid, Kw, Lines, Raw, Seconds,
                      SecretText, Text, Word)
from ..values import (Script, notify_deleted, route, rule, single_name, tracked, unicast_peer,
                      virtual_address)
from .firewall import accept_keywords
from . import vmac
from .common import (IP_ADDRESS, NOT_YET, instance_default_keywords, name_header,
                     no_header, required, unsupported)

NOT_PLANNED = "director does not act on this keyword"


def _script_weight(args, ctx):
    """``weight N [reverse]``: what a failing (or, reversed, a succeeding) script adds."""
    if not args or len(args) > 2 or (len(args) == 2 and args[1] != "reverse"):
        raise Invalid(f"expects a number from -253 to 253 and an optional 'reverse', got "
                      f"'{' '.join(args)}'")
    weight = Int(-253, 253).parse(args[:1], ctx)
    return (weight, len(args) == 2)


def _script_finish(values, ctx):
    if values.get("script") is None:
        ctx.warn(f"vrrp_script {values['name']} has no 'script': it is disabled and counts "
                 "as failed, as in keepalived")


VRRP_SCRIPT = Block(
    "vrrp_script", "VrrpScript",
    header=name_header(), header_fields=(("name", None),),
    finish=_script_finish,
    keywords=(
        Kw("script", Script(with_user=False), doc="Command to run; exit 0 means healthy."),
        Kw("interval", Seconds(0.001, 86400), default=1.0),
        Kw("timeout", Seconds(0.001, 86400)),
        Kw("weight", Custom(_script_weight, "N [reverse]"), default=(0, False)),
        Kw("rise", Int(1, 1000), default=1),
        Kw("fall", Int(1, 1000), default=1),
        Kw("user", Text("USER [GROUP]")),
        Kw("init_fail", Flag()),
    ),
)

TRACK_FILE = Block(
    "track_file", "TrackFile",
    header=name_header(), header_fields=(("name", None),),
    keywords=(
        Kw("file", Text("a path")),
        Kw("weight", Custom(_script_weight, "N [reverse]"), default=(1, False)),
        Kw("init_file", Raw(), doc="Create the file if missing: [VALUE] [overwrite]."),
    ),
)

def _tracking(why: str = "") -> tuple[Kw, ...]:
    """The tracking keywords; a sync group's are parsed but not acted on yet (``why``)."""
    return (
        Kw("track_interface", Lines(tracked, "INTERFACE [weight N [reverse]]"),
           unsupported=why),
        Kw("track_script", Lines(tracked, "SCRIPT [weight N [reverse]]"), unsupported=why),
        Kw("track_file", Lines(tracked, "FILE [weight N [reverse]]"), unsupported=NOT_YET),
        Kw("track_process", Lines(tracked, "PROCESS [weight N [reverse]]"),
           unsupported="process tracking is not implemented by director"),
        Kw("track_group", Lines(single_name, "track_group names"),
           unsupported="track groups are not implemented by director"),
        Kw("track_bfd", Lines(tracked, "BFD [weight N [reverse]]"),
           unsupported="BFD is not implemented by director"),
    )

_NOTIFY = (
    Kw("notify_master", Script()),
    Kw("notify_backup", Script()),
    Kw("notify_fault", Script()),
    Kw("notify_stop", Script()),
    Kw("notify", Script(), doc="Called with TYPE NAME STATE PRIORITY on each change."),
    Kw("smtp_alert", Flag()),
    Kw("notify_priority_changes", Custom(lambda args, ctx: Flag().parse(args, ctx),
                                         "[true|false]"),
       doc="Write a MASTER_PRIORITY or BACKUP_PRIORITY line to the VRRP notify FIFOs each "
           "time tracking changes the effective priority (no script runs). Unset: a member "
           "takes its sync group's setting, else global_defs vrrp_notify_priority_changes."),
)


def _sync_group_finish(values, ctx):
    members = tuple(values["group"]) + tuple(values["legacy_members"])
    values["group"] = members
    values["legacy_members"] = ()
    if not members:
        ctx.error(f"vrrp_sync_group {values['name']} lists no instances (group {{ ... }})")


VRRP_SYNC_GROUP = Block(
    "vrrp_sync_group", "VrrpSyncGroup",
    header=name_header(), header_fields=(("name", None),),
    items=("legacy_members", single_name,
           "instance names written straight into vrrp_sync_group: keepalived 2 drops such a "
           "group and runs the instances unsynchronised; director synchronises them as written. "
           "Put them in a 'group { ... }' block"),
    finish=_sync_group_finish,
    keywords=(
        Kw("group", Lines(single_name, "instance names")),
        *_NOTIFY,
        *_tracking(why="sync group tracking " + NOT_YET),
        Kw("global_tracking", Flag(), deprecated="global_tracking is deprecated in keepalived: "
                                                 "use sync_group_tracking_weight",
                                                    unsupported=NOT_YET),
        Kw("sync_group_tracking_weight", Flag(), unsupported=NOT_YET),
    ),
)


def _auth_finish(values, ctx):
    if ctx.invalid:
        return
    if values.get("auth_type") is None:
        ctx.error("authentication needs 'auth_type' (PASS or AH)")
    elif values.get("auth_pass") is None:
        ctx.error("authentication needs 'auth_pass'")


AUTHENTICATION = Block(
    "authentication", "Authentication",
    header=no_header, finish=_auth_finish,
    keywords=(
        Kw("auth_type", Choice(("PASS", "AH")),
           doc="PASS: the password in clear in every advert. AH: IPsec AH (IP protocol 51) as "
               "keepalived 2.2.7 sends it, interoperable with it: an HMAC-MD5-96 of the IP "
               "header, the AH header and the advert keyed by auth_pass, the SPI the sender's "
               "address, and a sequence number that must grow (a replay is dropped, counted "
               "as 'ah_replay'). VRRPv2 over IPv4 only: with VRRPv3 keepalived and director "
               "send no authentication (-t warns)."),
        Kw("auth_pass", SecretText(max_chars=8),
           doc="The PASS password or the AH key; only the first 8 characters are used."),
    ),
)


def _instance_finish(values, ctx):
    name = f"vrrp_instance {values['name']}"
    required(values, ctx, name, "virtual_router_id")
    if values.get("interface") is None and not values.get("unicast_peer") \
            and "interface" not in ctx.invalid:
        ctx.error(f"{name} needs 'interface' (only unicast instances may leave it out)")
    if values["priority"] is None and "priority" not in ctx.invalid:
        # keepalived's rule: "state MASTER" with no priority claims the owner's 255.
        master = values["initial_state"] == "MASTER"
        values["priority"] = 255 if master else 100
        if master:
            ctx.warn(f"{name}: 'state MASTER' without 'priority' means priority 255 (address "
                     "owner), as in keepalived; set a priority to share the address")
    values["priority"] = values["priority"] or 100
    if values["initial_state"] is None:
        values["initial_state"] = "MASTER" if values["priority"] == 255 else "BACKUP"
    if not values["preempt"] and (values["initial_state"] == "MASTER" or
                                  values["priority"] == 255):
        ctx.warn(f"{name}: nopreempt needs 'state BACKUP' and a priority below 255; "
                 "keepalived ignores it here, and so does director")
        values["preempt"] = True
    if values.get("unicast_src_ip") and not values.get("unicast_peer"):
        ctx.warn(f"{name}: unicast_src_ip without unicast_peer: adverts still go to the "
                 "multicast group")
    vmac.instance_finish(values, ctx)


VRRP_INSTANCE = Block(
    "vrrp_instance", "VrrpInstance",
    header=name_header(), header_fields=(("name", None),),
    finish=_instance_finish,
    keywords=(
        Kw("state", Choice(("MASTER", "BACKUP")), field="initial_state",
           doc="Only a wish: priority decides who is MASTER. Default: MASTER at priority 255, "
               "else BACKUP."),
        Kw("interface", Word("an interface")),
        Kw("vrf", Word("a VRF interface"), unsupported="VRFs are not handled by director"),
        Kw("virtual_router_id", Int(1, 255)),
        Kw("priority", Int(1, 255),
           doc="1-255; default 100, or 255 when 'state MASTER' is given without it."),
        Kw("advert_int", Seconds(0.01, 255), default=1.0),
        Kw("version", Int(2, 3), doc="VRRP version; default: global_defs vrrp_version (2)."),
        Kw("authentication", AUTHENTICATION),
        Kw("virtual_ipaddress", Lines(virtual_address, "ADDRESS[/PREFIX] [dev IF] [brd IP] "
                                                       "[scope S] [label L]")),
        Kw("virtual_ipaddress_excluded", Lines(virtual_address, "ADDRESS[/PREFIX] [options]")),
        Kw("virtual_routes", Lines(route, "routes in ip-route(8) syntax")),
        Kw("virtual_rules", Lines(rule, "rules in ip-rule(8) syntax"),
           unsupported="policy rules are not programmed by director"),
        Kw("nopreempt", Flag(sets=False), field="preempt", default=True),
        Kw("preempt", Flag(), field="preempt", default=True),
        Kw("preempt_delay", Seconds(0, 1000), default=0.0),
        Kw("mcast_src_ip", IP_ADDRESS),
        Kw("unicast_src_ip", IP_ADDRESS),
        Kw("unicast_peer", Lines(unicast_peer, "ADDRESS [min_ttl N] [max_ttl N]")),
        Kw("unicast_ttl", Int(0, 255), unsupported=NOT_YET),
        Kw("check_unicast_src", Flag(), unsupported=NOT_YET),
        Kw("unicast_fault_no_peer", Flag(), unsupported=NOT_YET),
        Kw("dont_track_primary", Flag()),
        *accept_keywords(),
        Kw("promote_secondaries", Flag(), unsupported=NOT_YET),
        Kw("no_virtual_ipaddress", Flag(), unsupported=NOT_YET),
        Kw("down_timer_adverts", Int(1, 100), doc="Adverts missed before the master is down "
                                                  "(default 3, RFC)."),
        Kw("timer_expired_backup", Raw(), unsupported="not implemented by director"),
        Kw("skip_check_adv_addr", Flag(), unsupported=NOT_YET),
        *instance_default_keywords(global_level=False),
        *_NOTIFY,
        Kw("notify_master_rx_lower_pri", Script(),
           doc="Run (with no extra arguments) each time this instance, as MASTER, hears an "
               "advert of a lower priority: another router took over during a break and may "
               "hold what the master must take back. Not again while a run is under way "
               "(keepalived forks one per advert). The FIFO line MASTER_RX_LOWER_PRI is "
               "written with or without it."),
        Kw("notify_deleted", Custom(notify_deleted, '["COMMAND ARGS" [USER [GROUP]]]'),
           doc="When a reload removes this instance, notify DELETED (notify script, FIFO "
               "line, and COMMAND if given) instead of keepalived's default FAULT (which an "
               "instance already in FAULT does not send again)."),
        *_tracking(),
        *vmac.instance_keywords(),
        Kw("lvs_sync_daemon_interface", Word("an interface"),
           deprecated="lvs_sync_daemon_interface was replaced by global_defs "
                      "'lvs_sync_daemon INTERFACE INSTANCE'; applied as that",
           doc="keepalived 1.x: the IPVS sync daemons on this interface follow this "
               "instance (global_defs lvs_sync_daemon, which wins when both are given)."),
        *unsupported("debug native_ipv6 kernel_rx_buf_size track_src_ip linkbeat_use_polling "
                     "old_unicast_checksum mcast_dst_ip v3_checksum_as_v2", NOT_PLANNED),
    ),
)
