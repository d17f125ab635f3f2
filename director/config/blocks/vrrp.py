"""vrrp_script, vrrp_track_file, vrrp_sync_group and vrrp_instance."""

from __future__ import annotations

from ..schema import (Block, Choice, Custom, Flag, Int, Invalid, Kw, Lines, Raw, Seconds,
                      SecretText, Text, Word)
from ..iprule import rule
from ..values import (Script, notify_deleted, route, single_name, tracked, tracked_unclamped,
                      unicast_peer, virtual_address)
from .firewall import accept_keywords
from . import vmac
from . import wire
from .common import (BFD, IP_ADDRESS, instance_default_keywords, name_header,
                     no_header, required, unsupported)



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

def _file_weight(args, ctx):
    """A track_file's or a vrrp_track_process's ``weight N [reverse]``: -254..254 as written
    (keepalived clamps only interfaces' and scripts' weights)."""
    if not args or len(args) > 2 or (len(args) == 2 and args[1] != "reverse"):
        raise Invalid(f"expects a number from -254 to 254 and an optional 'reverse', got "
                      f"'{' '.join(args)}'")
    return (Int(-254, 254).parse(args[:1], ctx), len(args) == 2)


def _init_file(args, ctx):
    """``init_file [VALUE] [overwrite]``: (value, overwrite)."""
    value, overwrite = 0, False
    for word in args:
        if word == "overwrite":
            overwrite = True
            continue
        try:
            value = int(word)
        except ValueError:
            raise Invalid(f"expects [VALUE] [overwrite], got '{word}'") from None
        if not -254 <= value <= 254:
            ctx.warn(f"init_file value {value} is outside the sensible range -254..254 "
                     "(keepalived says so too)")
    return (value, overwrite)


def _track_file_finish(values, ctx):
    if values.get("file") is None and "file" not in ctx.invalid:
        ctx.error(f"track_file {values['name']} needs 'file' (keepalived ignores the block)")


TRACK_FILE = Block(
    "track_file", "TrackFile",
    header=name_header(), header_fields=(("name", None),),
    finish=_track_file_finish,
    keywords=(
        Kw("file", Text("a path"), doc="The file whose number (C strtol: decimal, 0x hex, 0 "
                                       "octal; missing or empty reads 0) is tracked."),
        Kw("weight", Custom(_file_weight, "N [reverse]"), default=(1, False),
           doc="Default weight of the instances tracking it: value x weight (x -1 reversed) "
               "is added to the priority, clamped to 253; -254 or below is FAULT. Weight 0: "
               "FAULT while the value is not 0 (reversed: while it is 0)."),
        Kw("init_file", Custom(_init_file, "[VALUE] [overwrite]"),
           doc="At start, write VALUE (default 0) into the file if it does not exist; "
               "with 'overwrite', also over a regular file that exists (not on a reload)."),
    ),
)


def _process(args, ctx):
    if not args:
        raise Invalid("expects the process name and optional parameters")
    return tuple(str(arg) for arg in args)


def _param_match(args, ctx):
    if len(args) > 1 or (args and args[0] not in ("initial", "partial")):
        raise Invalid(f"expects nothing, 'initial' or 'partial', got '{' '.join(args)}'")
    return str(args[0]) if args else "exact"


def _track_process_finish(values, ctx):
    name = f"vrrp_track_process {values['name']}"
    if values.get("process") is None:
        if "process" not in ctx.invalid:
            ctx.error(f"{name} needs 'process' (keepalived drops the block)")
        return
    if len(values["process"]) > 1 and values["param_match"] is None:
        values["param_match"] = "exact"
    if values["param_match"] is not None:
        values["full_command"] = True
    quorum, quorum_max = values["quorum"], values["quorum_max"]
    if quorum_max == 0 and quorum == 1:
        values["quorum"] = 0            # keepalived: "up while none runs"
    elif quorum_max is not None and quorum > quorum_max:
        ctx.error(f"{name}: quorum {quorum} is greater than quorum_max {quorum_max}")


VRRP_TRACK_PROCESS = Block(
    "vrrp_track_process", "VrrpTrackProcess",
    header=name_header(), header_fields=(("name", None),),
    finish=_track_process_finish,
    keywords=(
        Kw("process", Custom(_process, "NAME [PARAMETERS...]"),
           doc="The process: its name as in /proc/PID/comm (at most 15 characters), or, with "
               "parameters, param_match or full_command, its argv[0] and arguments as in "
               "/proc/PID/cmdline."),
        Kw("param_match", Custom(_param_match, "[initial|partial]"),
           doc="How the parameters match: exact (the default when parameters are given), "
               "partial (the first arguments are these), initial (as partial, the last one "
               "may be a prefix)."),
        Kw("full_command", Flag(), doc="Match argv[0] rather than the 15-character name."),
        Kw("weight", Custom(_file_weight, "N [reverse]"), default=(0, False),
           doc="Default weight of the instances tracking it (weight 0: FAULT without "
               "quorum)."),
        Kw("quorum", Int(1, 65535), default=1, doc="Processes needed for quorum."),
        Kw("quorum_max", Int(0, 65535),
           doc="More processes than this loses quorum (default: no limit; 0 alone means "
               "'up while none runs')."),
        Kw("delay", Seconds(0.000001, 3600),
           doc="Both terminate_delay and fork_delay, where those are not given."),
        Kw("terminate_delay", Seconds(0.000001, 3600),
           doc="A loss of quorum by a process's exit counts only if it lasts this long. "
               "(keepalived: the last of delay / terminate_delay wins; here the specific "
               "one does.)"),
        Kw("fork_delay", Seconds(0.000001, 3600),
           doc="A gain of quorum by a tracked process forking counts only if it lasts this "
               "long (a process started anew counts at once, as in keepalived)."),
    ),
)


TRACK_GROUP = Block(
    "track_group", "TrackGroup",
    header=name_header(), header_fields=(("name", None),),
    keywords=(
        Kw("group", Lines(single_name, "instance names"),
           doc="The vrrp_instances that follow the interfaces of the static addresses, "
               "routes and rules naming this group with their 'track_group' option."),
    ),
)

NOT_IN_KEEPALIVED = ("keepalived 2.2.7 has no track_group here (track_group is a top-level "
                     "block that static addresses, routes and rules name): ignored, as keepalived "
                     "ignores an unknown keyword")


def _tracking() -> tuple[Kw, ...]:
    """The tracking keywords of a vrrp_instance and a vrrp_sync_group (a group's apply to
    each of its members, director/vrrp/tracked.py)."""
    return (
        Kw("track_interface", Lines(tracked, "INTERFACE [weight N [reverse]]")),
        Kw("track_script", Lines(tracked, "SCRIPT [weight N [reverse]]")),
        Kw("track_file", Lines(tracked_unclamped, "FILE [weight N [reverse|noreverse]]"),
           doc="track_file blocks by name; the weight given here beats the block's."),
        Kw("track_process", Lines(tracked_unclamped, "PROCESS [weight N [reverse|noreverse]]"),
           doc="vrrp_track_process blocks by name; the weight given here beats the block's "
               "(weight 0: FAULT while the process has no quorum)."),
        Kw("track_group", Lines(single_name, "track_group names"), ignored=NOT_IN_KEEPALIVED),
        Kw("track_bfd", Lines(tracked, "BFD [weight N [reverse]]"), unsupported=BFD),
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
        *_tracking(),
        Kw("sync_group_tracking_weight", Flag(),
           doc="Members keep the weights of their own tracked interfaces, scripts and "
               "files. Without it (keepalived's rule) a member's weighted track_interface "
               "and a track_file at the default weight 1 count as unweighted (FAULT), and "
               "its weighted track_script and other weighted track_file are ignored."),
        Kw("global_tracking", Flag(), field="sync_group_tracking_weight",
           deprecated="global_tracking is deprecated in keepalived: applied as "
                      "sync_group_tracking_weight"),
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
    if values.get("vrf") and values.get("interface"):
        ctx.warn(f"{name}: vrf and interface cannot go together; vrf is ignored, as "
                 "keepalived ignores it")
        values["vrf"] = None
    wire.instance_finish(values, ctx, name)
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
        Kw("vrf", Word("a VRF interface"),
           doc="For a unicast instance without 'interface': its VRRP socket is bound to this "
               "VRF device, so adverts follow the VRF's routing table (keepalived: the same, "
               "and ignored with a warning next to 'interface')."),
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
           doc="Policy rules that follow the VIPs: added on becoming MASTER (after the "
               "virtual_routes), removed on leaving it (before them). ip-rule(8) syntax as "
               "in static_rules."),
        Kw("nopreempt", Flag(sets=False), field="preempt", default=True),
        Kw("preempt", Flag(), field="preempt", default=True),
        Kw("preempt_delay", Seconds(0, 1000), default=0.0),
        Kw("mcast_src_ip", IP_ADDRESS),
        Kw("unicast_src_ip", IP_ADDRESS),
        Kw("unicast_peer", Lines(unicast_peer, "ADDRESS [min_ttl N] [max_ttl N]")),
        *wire.INSTANCE_KEYWORDS,
        Kw("dont_track_primary", Flag()),
        *accept_keywords(),
        Kw("promote_secondaries", Flag(),
           doc="Sets net.ipv4.conf.INTERFACE.promote_secondaries to 1 while the instance runs "
               "(if it was 0; back to 0 when the last such instance stops), so that removing "
               "the primary address of a subnet keeps its other (secondary) VIPs."),
        Kw("no_virtual_ipaddress", Flag(),
           doc="No VIPs is meant (addresses managed elsewhere, e.g. a cloud's floating IP): "
               "no warning for their absence. keepalived 2.2.8's keyword (2.2.7 does not "
               "have it, and refuses a VRRPv3 instance without VIPs)."),
        Kw("down_timer_adverts", Int(1, 100), doc="Adverts missed before the master is down "
                                                  "(default 3, RFC)."),
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
        Kw("linkbeat_use_polling", Flag(),
           deprecated="linkbeat_use_polling in vrrp_instance is deprecated in keepalived: use "
                      "the top-level linkbeat_interfaces",
           doc="The instance's interface's link polled from the driver (top-level "
               "linkbeat_interfaces)."),
    ),
)
