"""global_defs { ... }: router id, mail, script security and the vrrp_* / lvs_* defaults."""

from __future__ import annotations

from ..schema import Block, Custom, Invalid, Flag, Int, Kw, Lines, Raw, Seconds, Text, Word
from ..values import Script, email, lvs_sync_daemon, notify_fifo
from .firewall import firewall_keywords
from . import vmac, wire
from .common import (BFD, DBUS, IP_ADDRESS, SNMP, instance_default_keywords,
                     no_header, server_address, unsupported)
from .process import BFD_KEYWORDS, PROCESS_KEYWORDS, ROOT_PROCESS_KEYWORDS
from .process import finish as process_finish



def _dynamic_interfaces(args, ctx) -> bool:
    if len(args) > 1 or (args and args[0] != "allow_if_changes"):
        raise Invalid(f"expects nothing or allow_if_changes, got {' '.join(args)!r}")
    if args:
        ctx.warn("dynamic_interfaces allow_if_changes: director starts instances whose "
                 "interface appears late, but does not follow an interface deleted and "
                 "created again (restart or reload for that)")
    return True


def _finish(values, ctx) -> None:
    wire.global_finish(values, ctx)
    process_finish(values, ctx)


def _flush_on_stop(args, ctx) -> str:
    """keepalived: alone, every IPVS service; with VS, only the configuration's. "ALL" or
    "VS" in the model."""
    if not args:
        return "ALL"
    if len(args) == 1 and args[0].upper() == "VS":
        return "VS"
    raise Invalid(f"expects nothing or VS, got {' '.join(args)!r}")


FIFO_DOC = ("A FIFO that VRRP and load-balancer notification lines are written to, in "
            "keepalived's format ('INSTANCE \"VI_1\" MASTER 100', 'RS [10.0.1.1]:tcp:80 "
            "[10.0.0.1]:tcp:80 DOWN': README, Notify FIFOs). Created (0644, owned by USER "
            "[GROUP]) when missing, and then removed on stop; opened read-write and non-blocking as "
            "keepalived does: lines wait in the pipe for a reader, and a full pipe drops a "
            "line (counted) instead of stalling the daemon. director refuses a path that is "
            "not a FIFO (keepalived would write into the file).")
SCRIPT_DOC = ("Started with the FIFO's path as its last argument, to read it, as USER [GROUP] "
              "or script_user; TERM at stop and when a reload changes the FIFO or the script "
              "(then started again); not restarted when it exits by itself (as keepalived).")
_FIFOS = (
    Kw("notify_fifo", Custom(notify_fifo, "FIFO_NAME [USER [GROUP]]"),
       doc=FIFO_DOC),
    Kw("notify_fifo_script", Script(), doc=SCRIPT_DOC),
    Kw("vrrp_notify_fifo", Custom(notify_fifo, "FIFO_NAME [USER [GROUP]]"),
       doc="As notify_fifo, with the VRRP lines only (a path equal to notify_fifo's is "
           "ignored: the lines are written once)."),
    Kw("vrrp_notify_fifo_script", Script(), doc=SCRIPT_DOC),
    Kw("lvs_notify_fifo", Custom(notify_fifo, "FIFO_NAME [USER [GROUP]]"),
       doc="As notify_fifo, with the load-balancer lines only (VS and RS)."),
    Kw("lvs_notify_fifo_script", Script(), doc=SCRIPT_DOC),
)

GLOBAL_DEFS = Block(
    "global_defs", "GlobalDefs",
    header=no_header, finish=_finish,
    keywords=(
        Kw("router_id", Word("a router id"),
           doc="Names this director in alerts, logs and the dashboard. Default: the short "
               "host name."),
        # The HOWTO's name for router_id. keepalived 2.2.7 ignores it as an unknown keyword;
        # director keeps the HOWTO's meaning and says so.
        Kw("lvs_id", Word("a router id"), field="router_id",
           deprecated="lvs_id is not a keepalived 2.2.7 keyword (keepalived ignores it and "
                      "names the router after the host): director takes it as router_id; "
                      "write router_id"),
        Kw("notification_email", Lines(email, "e-mail addresses"),
           doc="Who receives the alert mails."),
        Kw("notification_email_from", Word("an e-mail address")),
        Kw("smtp_server", Custom(server_address, "IP|HOST [PORT]")),
        Kw("smtp_helo_name", Word("a host name")),
        Kw("smtp_connect_timeout", Int(1, 4294), default=30),
        Kw("smtp_alert", Flag(), doc="Mail on every VRRP and checker change (each object's "
                                     "own smtp_alert adds to this)."),
        Kw("smtp_alert_vrrp", Flag(), doc="Mail on every VRRP instance and sync group change."),
        Kw("smtp_alert_checker", Flag(), doc="Mail on every real server up/down and quorum "
                                             "change."),
        Kw("no_email_faults", Flag(), doc="No mail for transitions to FAULT."),
        Kw("no_checker_emails", Flag(),
           doc="Mail for a real server only when it goes up or down: without it, as in "
               "keepalived, each of its checkers that changes while the server does not (it "
               "has others) sends one too."),
        Kw("script_user", Text("USER [GROUP]"),
           doc="The user that notify, track and check scripts run as (default: the user "
               "keepalived_script if it exists, else root)."),
        Kw("enable_script_security", Flag(),
           doc="Refuse to run a script as root that a non-root user could change (the file "
               "or a directory on its path); without it, -t and start-up warn about such "
               "scripts. Needs script_user or the user keepalived_script."),
        Kw("dynamic_interfaces", Custom(_dynamic_interfaces, "[allow_if_changes]"),
           doc="A vrrp_instance whose interface does not exist yet waits for it (logged "
               "vrrp.interface_wait) and starts when it appears, instead of failing the start "
               "or the reload. allow_if_changes is accepted with a warning: an interface "
               "deleted and created again is not followed."),
        # in director's list of keepalived keywords, but in no keepalived release (checked
        # against the history of keepalived's source); the checkers' scripts run as
        # script_user, or a MISC_CHECK's own user
        Kw("checker_process_script_user", Raw(),
           ignored="checker_process_script_user is not a keepalived keyword: ignored; checker "
                   "scripts run as global_defs script_user (or MISC_CHECK's user)"),
        Kw("linkbeat_use_polling", Flag(),
           doc="As the top-level linkbeat_use_polling (keepalived reads it there)."),
        Kw("default_interface", Word("an interface"),
           doc="Where static_ipaddress entries without 'dev', and the VIPs of a unicast "
               "vrrp_instance without 'interface', are added. Default: eth0, as keepalived."),
        Kw("vrrp_mcast_group4", IP_ADDRESS, default="224.0.0.18"),
        Kw("vrrp_mcast_group6", IP_ADDRESS, default="ff02::12"),
        Kw("vrrp_version", Int(2, 3), default=2),
        Kw("vrrp_strict", Flag(),
           doc="RFC-strict VRRP for every instance without its own strict_mode: an instance "
               "needs a virtual address; authentication, preempt_delay, down_timer_adverts, "
               "garp_lower_prio_*, higher_prio_send_advert (off) and lower_prio_no_advert "
               "(on) are reset with a warning, as keepalived does; accept mode defaults to "
               "off for a non-owner and cannot be on with VRRPv2, so a MASTER below priority "
               "255 drops what is sent to its VIPs (nftables rules, see nftables)."),
        *firewall_keywords(),
        *instance_default_keywords(global_level=True),
        *wire.GLOBAL_KEYWORDS,
        *wire.GLOBAL_IGNORED,
        Kw("lvs_flush", Flag(), doc="Flush every IPVS service at start-up (nftables: the "
                                    "director table)."),
        Kw("lvs_flush_on_stop", Custom(_flush_on_stop, "[VS]"), aliases=("lvs_flush_onstop",),
           doc="On stop, flush every IPVS service (VS: only the configuration's)."),
        Kw("checker_log_all_failures", Flag(),
           doc="log_all_failures for every checker: each failed attempt while a server is up "
               "is logged, not only the one that takes it down."),
        Kw("lvs_sync_daemon", Custom(lvs_sync_daemon, "INTERFACE VRRP_INSTANCE [id N] "
                                     "[maxlen N] [port N] [ttl N] [group IP]"),
           doc="The kernel's IPVS connection sync daemons on INTERFACE: master while "
               "VRRP_INSTANCE is MASTER, backup otherwise, so that the BACKUP director knows "
               "the connections and they survive a failover. id defaults to the instance's "
               "virtual_router_id."),
        *PROCESS_KEYWORDS,
        *ROOT_PROCESS_KEYWORDS,
        *unsupported(BFD_KEYWORDS, BFD),
        Kw("process_monitor_rcv_bufs", Int(0, 4294967295),
           doc="SO_RCVBUF of the kernel process-events socket that track_process reads "
               "(default: the kernel's). On lost events it is doubled and the processes "
               "counted again from /proc, as in keepalived."),
        Kw("process_monitor_rcv_bufs_force", Flag(),
           doc="Set process_monitor_rcv_bufs with SO_RCVBUFFORCE (past net.core.rmem_max)."),
        *vmac.global_keywords(),
        *_FIFOS,
        Kw("fifo_write_vrrp_states_on_reload", Flag(),
           doc="On each reload, write the state of every VRRP sync group and instance the "
               "reload did not restart to the notify FIFOs, except an instance that is "
               "MASTER (as keepalived 2.2.7: a consumer acting on MASTER lines does not act "
               "again); restarted ones write their transitions as usual."),
        Kw("vrrp_notify_priority_changes", Flag(),
           doc="The default of notify_priority_changes for every vrrp_instance (a "
               "vrrp_sync_group's own setting wins for its members)."),
        Kw("rs_init_notifies", Flag(),
           doc="At start, real servers that start up (no checker, or not alpha) run "
               "notify_up and write their RS ... UP line, as keepalived does; without it "
               "only changes notify."),
        *unsupported("enable_traps enable_snmp_vrrp enable_snmp_keepalived enable_snmp_checker "
                     "enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 snmp_socket", SNMP),
        *unsupported("enable_dbus enable_dbus_read_only dbus_service_name", DBUS),
        *unsupported("nftables_ipvs nftables_ipvs_priority nftables_ipvs_start_fwmark",
                     "left out: director's IPVS backend makes one IPVS service per address of a "
                     "virtual_server_group range; keepalived's alternative (nftables marking "
                     "those addresses for one fwmark service) is not implemented"),
        Kw("script_rlimit", Raw(), ignored="script_rlimit is not a keepalived keyword: ignored"),
    ),
)
