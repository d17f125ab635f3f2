"""The keyword tables, one module per family of blocks, and the file's top level."""

from __future__ import annotations

from ..schema import Block, Kw, Lines, Opaque, model_for
from ..values import route, rule, virtual_address
from .checkers import SSL
from .common import unsupported
from .firewall import NAMESPACE_WITH_IPSETS
from .global_defs import GLOBAL_DEFS
from .process import ROOT_PROCESS_KEYWORDS
from .wire import GARP_GROUP
from .virtual_server import VIRTUAL_SERVER, VIRTUAL_SERVER_GROUP
from .vrrp import (TRACK_FILE, TRACK_GROUP, VRRP_INSTANCE, VRRP_SCRIPT, VRRP_SYNC_GROUP,
                   VRRP_TRACK_PROCESS)

STATIC = "static addresses, routes and rules are not programmed by director"
NOT_PLANNED = "director does not act on this block"



def _root_finish(values, ctx):
    if values["global_defs"] is None:      # every default of global_defs still applies
        values["global_defs"] = model_for(GLOBAL_DEFS)()


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
           unsupported="a track_group is used only by the 'track_group' option of "
                       "static_ipaddress / static_routes / static_rules, which director does "
                       "not program"),
        Kw("vrrp_sync_group", VRRP_SYNC_GROUP, field="vrrp_sync_groups", repeat="append"),
        Kw("vrrp_instance", VRRP_INSTANCE, field="vrrp_instances", repeat="append"),
        Kw("virtual_server_group", VIRTUAL_SERVER_GROUP, field="virtual_server_groups",
           repeat="append"),
        Kw("virtual_server", VIRTUAL_SERVER, field="virtual_servers", repeat="append"),
        Kw("SSL", SSL, field="ssl"),
        Kw("garp_group", GARP_GROUP, field="garp_groups", repeat="append",
           doc="Per-interface pacing of gratuitous ARPs / NAs (keepalived's garp_group)."),
        Kw("static_ipaddress", Lines(virtual_address, "ADDRESS[/PREFIX] [options]"),
           unsupported=STATIC),
        Kw("static_routes", Lines(route, "routes in ip-route(8) syntax"), unsupported=STATIC),
        Kw("static_rules", Lines(rule, "rules in ip-rule(8) syntax"), unsupported=STATIC),
        *(Kw(name, Opaque(), unsupported=NOT_PLANNED, field=name, repeat="append")
          for name in ("bfd_instance",
                       "linkbeat_interfaces", "interface_up_down_delays")),
        *ROOT_PROCESS_KEYWORDS,
        NAMESPACE_WITH_IPSETS,
        *unsupported("linkbeat_use_polling",
                     "director does not act on this keyword"),
    ),
)
