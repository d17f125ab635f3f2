"""static_ipaddress, static_routes and static_rules: kernel state that does not follow VRRP.

As keepalived 2.2.7 (vrrp_daemon.c): at start what an earlier run may have left is removed and
everything is added; a reload removes what the new configuration no longer has and adds what
it has (adding what is there changes nothing, so a kept entry is never touched); stop removes
everything. Addresses go in before the routes that may use them and the rules that send to
those; removal runs the other way. A failure is logged and counted; the rest goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..names import default_interface
from ..log import event

if TYPE_CHECKING:       # the plan of a reload reads changes() without loading netlink
    from .addresses import Addresses

log = logging.getLogger("director.vrrp.static")



def entries(config: Any) -> list[tuple[str, Any]]:
    """(kind, entry) in the order they are added."""
    return ([("address", item) for item in config.static_ipaddress] +
            [("route", item) for item in config.static_routes] +
            [("rule", item) for item in config.static_rules])


def changes(old: Any | None, new: Any | None) -> tuple[list, list]:
    """(to remove, to add) going from the configuration ``old`` to ``new`` (None: nothing).
    An entry is the same when its value is equal and, for one without an interface, the
    default interface is too."""
    def keyed(config):
        if config is None:
            return []
        ifname = default_interface(config.global_defs)
        return [(kind, item, ifname) for kind, item in entries(config)]

    before, after = keyed(old), keyed(new)
    return ([e for e in reversed(before) if e not in after],
            [e for e in after if e not in before])


class StaticSetup:
    """``apply(None, config)`` at start, ``apply(old, new)`` on reload, ``apply(config, None)``
    on stop. ``errors`` counts the operations that failed."""

    def __init__(self, addresses: "Addresses") -> None:
        self.addresses = addresses
        self.errors = 0

    def start(self, config: Any) -> None:
        """keepalived clears leftovers of a crashed run before adding: a stale entry that
        differs only in options would otherwise stay as it was."""
        self._run(*changes(config, None), quiet=True)
        self.apply(None, config)

    def apply(self, old: Any | None, new: Any | None) -> None:
        self._run(*changes(old, new))

    def _run(self, remove: list, add: list, quiet: bool = False) -> None:
        operations = {"address": (self.addresses.remove, self.addresses.add),
                      "route": (self.addresses.remove_route, self.addresses.add_route),
                      "rule": (self.addresses.remove_rule, self.addresses.add_rule)}
        for adding, items in ((False, remove), (True, add)):
            for kind, item, ifname in items:
                try:
                    operations[kind][adding](item, ifname)
                except OSError as exc:
                    if quiet:
                        continue
                    self.errors += 1
                    event(log, f"vrrp.static_{kind}_error", logging.ERROR, entry=_name(kind, item),
                          action="add" if adding else "remove", error=exc)
                else:
                    if not quiet:
                        event(log, f"vrrp.static_{kind}", entry=_name(kind, item),
                              action="add" if adding else "remove")


def _name(kind: str, item: Any) -> str:
    if kind == "address":
        return item.address
    if kind == "route":
        return item.destination
    from .rules import describe
    return describe(item)
