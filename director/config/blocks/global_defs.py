"""global_defs { ... }: router id, mail, script security and the vrrp_* / lvs_* defaults."""

from __future__ import annotations

from ..schema import Block, Custom, Invalid, Flag, Int, Kw, Lines, Seconds, Text, Word
from ..values import email, lvs_sync_daemon
from .common import (IP_ADDRESS, NOT_YET, instance_default_keywords, no_header,
                     server_address, unsupported)
from .process import BFD, BFD_KEYWORDS, PROCESS_KEYWORDS, ROOT_PROCESS_KEYWORDS
from .process import finish as process_finish

NOT_PLANNED = "director does not act on this keyword"


def _flush_on_stop(args, ctx) -> str:
    """keepalived: alone, every IPVS service; with VS, only the configuration's. "ALL" or
    "VS" in the model."""
    if not args:
        return "ALL"
    if len(args) == 1 and args[0].upper() == "VS":
        return "VS"
    raise Invalid(f"expects nothing or VS, got {' '.join(args)!r}")


GLOBAL_DEFS = Block(
    "global_defs", "GlobalDefs",
    header=no_header,
    finish=process_finish,
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
        Kw("script_user", Text("USER [GROUP]"),
           doc="The user that notify, track and check scripts run as (default: the user "
               "keepalived_script if it exists, else root)."),
        Kw("enable_script_security", Flag(),
           doc="Refuse to run a script as root that a non-root user could change (the file "
               "or a directory on its path); without it, -t and start-up warn about such "
               "scripts. Needs script_user or the user keepalived_script."),
        Kw("default_interface", Word("an interface"), unsupported=NOT_YET),
        Kw("vrrp_mcast_group4", IP_ADDRESS, default="224.0.0.18"),
        Kw("vrrp_mcast_group6", IP_ADDRESS, default="ff02::12"),
        Kw("vrrp_version", Int(2, 3), default=2),
        Kw("vrrp_strict", Flag(), doc="RFC-strict VRRP: no unicast, no auth, VIPs unreachable "
                                      "unless owner.", unsupported=NOT_YET),
        Kw("vrrp_check_unicast_src", Flag(), unsupported=NOT_YET),
        Kw("vrrp_skip_check_adv_addr", Flag(), unsupported=NOT_YET),
        *instance_default_keywords(global_level=True),
        Kw("vrrp_min_garp", Flag(), unsupported=NOT_YET),
        Kw("vrrp_startup_delay", Seconds(0, 3600), unsupported=NOT_YET),
        Kw("lvs_flush", Flag(), doc="Flush every IPVS service at start-up (nftables: the "
                                    "director table)."),
        Kw("lvs_flush_on_stop", Custom(_flush_on_stop, "[VS]"), aliases=("lvs_flush_onstop",),
           doc="On stop, flush every IPVS service (VS: only the configuration's)."),
        Kw("checker_log_all_failures", Flag(), unsupported=NOT_YET),
        Kw("lvs_sync_daemon", Custom(lvs_sync_daemon, "INTERFACE VRRP_INSTANCE [id N] "
                                     "[maxlen N] [port N] [ttl N] [group IP]"),
           doc="The kernel's IPVS connection sync daemons on INTERFACE: master while "
               "VRRP_INSTANCE is MASTER, backup otherwise, so that the BACKUP director knows "
               "the connections and they survive a failover. id defaults to the instance's "
               "virtual_router_id."),
        *PROCESS_KEYWORDS,
        *ROOT_PROCESS_KEYWORDS,
        *unsupported(BFD_KEYWORDS, BFD),
        *unsupported(
            "vrrp_iptables vrrp_ipsets nftables nftables_priority nftables_ifindex "
            "nftables_counters vrrp_notify_fifo vrrp_notify_fifo_script notify_fifo "
            "notify_fifo_script lvs_notify_fifo lvs_notify_fifo_script enable_traps "
            "enable_dbus enable_dbus_read_only enable_snmp_vrrp enable_snmp_keepalived "
            "enable_snmp_checker enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3 "
            "snmp_socket namespace_with_ipsets "
            "dynamic_interfaces linkbeat_use_polling "
            "process_monitor_rcv_bufs process_monitor_rcv_bufs_force vrrp_rx_bufs_policy "
            "vrrp_rx_bufs_multiplier "
            "script_rlimit vrrp_startup_delay_ignore "
            "vrrp_owner_ignore_adverts vrrp_skip_check_adv_addr_ignore "
            "checker_process_script_user "
            "vrrp_ipsets_off "
            "disable_local_igmp v3_checksum_as_v2 vrrp_garp_extra_if vrrp_vmac_garp_intvl "
            "vrrp_down_timer_adverts nftables_ipvs nftables_ipvs_priority "
            "nftables_ipvs_start_fwmark "
            "vrrp_notify_priority_changes fifo_write_vrrp_states_on_reload "
            "rs_init_notifies no_checker_emails dbus_service_name log_unknown_vrids vmac_prefix "
            "vmac_addr_prefix vrrp_delay_after_boot "
            "", NOT_PLANNED),
    ),
)
