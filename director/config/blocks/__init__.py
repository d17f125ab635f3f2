"""The keyword tables, one module per family of blocks, and the file's top level."""

from __future__ import annotations

import dataclasses

from ..interfaces import LINKBEAT, linkbeat_interface, up_down_delay
from ..iprule import assign_priorities, rule
from ..schema import Block, Flag, Kw, Lines, Opaque, Word, model_for
from ..values import peer_url, route, virtual_address
from .bgp import BGP
from .checkers import SSL
from .common import BFD
from .firewall import NAMESPACE_WITH_IPSETS
from .global_defs import GLOBAL_DEFS
from .process import ROOT_PROCESS_KEYWORDS
from .wire import GARP_GROUP
from .virtual_server import VIRTUAL_SERVER, VIRTUAL_SERVER_GROUP
from .vrrp import (TRACK_FILE, TRACK_GROUP, VRRP_INSTANCE, VRRP_SCRIPT, VRRP_SYNC_GROUP,
                   VRRP_TRACK_PROCESS)

STATIC = ("Added at start whatever the VRRP state, kept by a reload that keeps them (only "
          "what changed is added or removed), removed on stop, as keepalived does; only with "
          "the VRRP subsystem (not with -C).")



def _root_finish(values, ctx):
    if values["global_defs"] is None:      # every default of global_defs still applies
        values["global_defs"] = model_for(GLOBAL_DEFS)()
    instances = values["vrrp_instances"]
    static, *virtual = assign_priorities([values["static_rules"]] +
                                         [item.virtual_rules for item in instances])
    values["static_rules"] = static
    values["vrrp_instances"] = type(instances)(
        dataclasses.replace(item, virtual_rules=rules) for item, rules in zip(instances, virtual))


ROOT = Block(
    "(top level)", "Config",
    finish=_root_finish,
    keywords=(
        Kw("global_defs", GLOBAL_DEFS),
        Kw("vrrp_script", VRRP_SCRIPT, field="vrrp_scripts", repeat="append"),
        Kw("track_file", TRACK_FILE, field="track_files", repeat="append"),
        Kw("vrrp_track_file", TRACK_FILE, field="track_files", repeat="append",
           deprecated="vrrp_track_file is deprecated: use track_file"),
        Kw("vrrp_track_process", VRRP_TRACK_PROCESS, field="vrrp_track_processes",
           repeat="append"),
        Kw("track_group", TRACK_GROUP, field="track_groups", repeat="append",
           doc="Its instances go FAULT while the interface of a static address, route (dev) "
               "or rule (iif) naming the group with its 'track_group' option is down, as "
               "keepalived's."),
        Kw("vrrp_sync_group", VRRP_SYNC_GROUP, field="vrrp_sync_groups", repeat="append"),
        Kw("vrrp_instance", VRRP_INSTANCE, field="vrrp_instances", repeat="append"),
        Kw("virtual_server_group", VIRTUAL_SERVER_GROUP, field="virtual_server_groups",
           repeat="append"),
        Kw("virtual_server", VIRTUAL_SERVER, field="virtual_servers", repeat="append"),
        Kw("SSL", SSL, field="ssl"),
        Kw("bgp", BGP, repeat="once", extension=True,
           doc="Announce virtual servers over BGP (active-active directors behind ECMP)."),
        Kw("override_peers", Lines(peer_url, "http[s]://HOST:PORT of a peer director's --web"),
           extension=True,
           doc="The peer directors (the VRRP peers) the operator's overrides (drain, runtime "
               "weight, maintenance) are shared with: pushed on each change and exchanged "
               "every 10 s (a peer that was down catches up), over the peers' web API, "
               "signed with HMAC-SHA256 keyed by the shared --admin-token-file (needed: "
               "without it nothing is exchanged). Last writer wins per server and kind; a "
               "restore propagates like the drain did. A reload changing it restarts "
               "nothing else."),
        Kw("override_peers_ca", Word("a PEM file of CA certificates"), extension=True,
           doc="The certificate authorities an https override peer's certificate is checked "
               "against (instead of the system's), e.g. the CA of the directors' "
               "--web-tls-cert; the peer's address must be in its certificate. Read at start "
               "and on each reload; an unreadable file fails the https exchanges (said in "
               "each peer's last error)."),
        Kw("garp_group", GARP_GROUP, field="garp_groups", repeat="append",
           doc="Per-interface pacing of gratuitous ARPs / NAs (keepalived's garp_group)."),
        Kw("static_ipaddress", Lines(virtual_address, "ADDRESS[/PREFIX] [options]"),
           doc="Addresses that are not VIPs (no dev: global_defs default_interface). " + STATIC),
        Kw("static_routes", Lines(route, "routes in ip-route(8) syntax"), doc=STATIC),
        Kw("static_rules", Lines(rule, "rules in ip-rule(8) syntax"),
           doc="Policy rules (every ip-rule(8) option keepalived 2.2.7 reads), tagged protocol "
               "18 (keepalived) unless no_track; without a preference numbered down from "
               "16384 per family. " + STATIC),
        Kw("interface_up_down_delays", Lines(up_down_delay, "IFNAME DOWN_DELAY [UP_DELAY]"),
           doc="Debounces an interface's link state: a change reaches the instances that use "
               "or track it only when it has lasted DOWN_DELAY (going down) or UP_DELAY "
               "(coming up) seconds, 0 to 255; a shorter bounce is not seen. UP_DELAY left "
               "out is 0, as keepalived 2.2.7's code does (its manual says: the down delay). "
               "director polls link state every 0.1 s: delays are kept to that."),
        Kw("linkbeat_use_polling", Flag(), doc=LINKBEAT + " Every interface."),
        Kw("linkbeat_interfaces", Lines(linkbeat_interface, "IFNAME [MII|ETHTOOL|IOCTL]"),
           doc=LINKBEAT + " These interfaces; the type is accepted, ETHTOOL is always used."),
        Kw("bfd_instance", Opaque(), unsupported=BFD, field="bfd_instance", repeat="append"),
        *ROOT_PROCESS_KEYWORDS,
        NAMESPACE_WITH_IPSETS,
    ),
)
