"""Virtual addresses and routes in the kernel: addresses over a small rtnetlink client of our
own (director/vrrp/rtnl.py), routes, rules and links through pyroute2, which is imported on
first use: VRRP's start-up path (exec -> first advert, VIPs) does not wait for its third of a
second of imports.

Adding what is already there and removing what is already gone both succeed: a MASTER that
restarts, or a crashed earlier run that left its addresses behind, must converge, not fail.

pyroute2's synchronous API drives an asyncio loop of its own: two greenlets inside it at once
fail with "event loop is already running", so every call holds one lock.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import Any

from .. import hub
from ..config.iprule import Rule
from ..config.values import Route, VirtualAddress
from ..log import event
from . import rules
from .rtnl import RtnlAddresses

log = logging.getLogger("director.vrrp.addresses")

SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
ROUTE_TYPES = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}
IFA_F_NODAD = 0x02
IFA_F_HOMEADDRESS = 0x10
IFA_F_NOPREFIXROUTE = 0x200
FLAG_BITS = {"nodad": IFA_F_NODAD, "home": IFA_F_HOMEADDRESS,
             "noprefixroute": IFA_F_NOPREFIXROUTE}


def _locked(method):
    def call(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError, for an ``except`` clause (evaluated only when something was
    raised, by then pyroute2 is loaded): importing it up front would load all of pyroute2."""
    from pyroute2.netlink.exceptions import NetlinkError
    return NetlinkError


class Addresses:
    """``open()`` makes the address socket; the constructor does nothing. ``ipr``, pyroute2's
    IPRoute for routes, rules and links, is made on first use."""

    def __init__(self) -> None:
        self._ipr: Any = None
        self.rtnl: RtnlAddresses | None = None
        self.lock = hub.Lock()
        self.receive_buffer: tuple[int, bool] | None = None    # vrrp_netlink_cmd_rcv_bufs

    @_locked
    def open(self) -> "Addresses":
        self.rtnl = RtnlAddresses(self.receive_buffer)
        self.rtnl.open()
        return self

    @property
    def ipr(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            from ..process import set_receive_buffer
            self._ipr = IPRoute()
            set_receive_buffer(self._ipr, self.receive_buffer)
        return self._ipr

    @_locked
    def close(self) -> None:
        if self.rtnl is not None:
            self.rtnl.close()
            self.rtnl = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def ifindex(self, ifname: str) -> int | None:
        try:
            return socket.if_nametoindex(ifname)
        except OSError:
            return None

    @_locked
    def primary_address(self, ifname: str, family: int) -> str | None:
        """The interface's first address of the family (for IPv6 its link-local one, as
        VRRPv3 adverts are sent from it): the source of our adverts and our tie-breaker."""
        index = self.ifindex(ifname) if ifname else None
        if index is None:
            return None
        found = [entry.own for entry in self.rtnl.dump(family) if entry.index == index]
        if family == 6:
            link_local = [a for a in found if ipaddress.IPv6Address(a).is_link_local]
            return link_local[0] if link_local else None
        return found[0] if found else None

    @_locked
    def present(self, vip: VirtualAddress, default_ifname: str) -> bool:
        index = self.ifindex(vip.dev or default_ifname)
        if index is None:
            return False
        interface = ipaddress.ip_interface(vip.address)
        # a point-to-point VIP (peer) is ours by its local address: comparing the peer's
        # missed a leftover of a crashed run
        return any(entry.index == index and entry.own == str(interface.ip)
                   and entry.prefixlen == interface.network.prefixlen
                   for entry in self.rtnl.dump(interface.version))

    @_locked
    def add(self, vip: VirtualAddress, default_ifname: str) -> None:
        self._address("add", vip, default_ifname)

    @_locked
    def remove(self, vip: VirtualAddress, default_ifname: str) -> None:
        self._address("del", vip, default_ifname)

    def address_args(self, vip: VirtualAddress, default_ifname: str) -> tuple:
        """(index, address, prefixlen, options): the VIP as RtnlAddresses.add takes it."""
        ifname = vip.dev or default_ifname
        index = self.ifindex(ifname)
        if index is None:
            raise OSError(errno.ENODEV, f"interface {ifname} does not exist")
        interface = ipaddress.ip_interface(vip.address)
        options = _address_options(vip, interface)
        address = options.pop("address", str(interface.ip))
        return index, address, interface.network.prefixlen, options

    def _address(self, command: str, vip: VirtualAddress, default_ifname: str) -> None:
        ifname = vip.dev or default_ifname
        index, address, prefixlen, options = self.address_args(vip, default_ifname)
        try:
            if command == "add":
                self.rtnl.add(index, address, prefixlen, **options)
            else:
                # a point-to-point VIP is found by its peer too: with our own address in
                # IFA_ADDRESS the kernel matched nothing and the VIP stayed
                self.rtnl.delete(index, address, prefixlen, local=options.get("local"))
        except OSError as exc:
            if command == "add" and exc.errno == errno.EEXIST:
                return
            if command == "del" and exc.errno in (errno.EADDRNOTAVAIL, errno.ENOENT,
                                                   errno.ESRCH, errno.ENODEV):
                return
            raise OSError(exc.errno, f"{command} {vip.address} on {ifname}: "
                                     f"{exc.strerror or exc}") from exc

    @_locked
    def add_route(self, route: Route, default_ifname: str) -> None:
        self._route("replace", route, default_ifname)

    @_locked
    def remove_route(self, route: Route, default_ifname: str) -> None:
        try:
            self._route("del", route, default_ifname)
        except OSError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                raise

    def _route(self, command: str, route: Route, default_ifname: str) -> None:
        arguments: dict = {"dst": "0.0.0.0/0" if route.destination == "default"
                           else route.destination,
                           "type": ROUTE_TYPES.get(route.type, 1)}
        if route.type == "unicast":
            ifname = route.dev or (None if route.via else default_ifname)
            if ifname:
                index = self.ifindex(ifname)
                if index is None:
                    raise OSError(errno.ENODEV, f"interface {ifname} does not exist")
                arguments["oif"] = index
            if route.via and route.nexthops:
                arguments["multipath"] = [{"gateway": g} for g in (route.via, *route.nexthops)]
            elif route.via:
                arguments["gateway"] = route.via
        if route.src:
            arguments["prefsrc"] = route.src
        if route.table:
            arguments["table"] = int(route.table) if route.table.isdecimal() else 254
        if route.metric is not None:
            arguments["priority"] = route.metric
        if route.scope:
            arguments["scope"] = SCOPES.get(route.scope, 0) if not route.scope.isdecimal() \
                else int(route.scope)
        try:
            self.ipr.route(command, **arguments)
        except netlink_error() as exc:
            raise OSError(exc.code, f"route {command} {route.destination}: {exc}") from exc


    @_locked
    def add_rule(self, rule: Rule, default_ifname: str = "") -> None:
        self._rule("add", rule, errno.EEXIST)

    @_locked
    def remove_rule(self, rule: Rule, default_ifname: str = "") -> None:
        self._rule("del", rule, errno.ENOENT)

    def _rule(self, command: str, rule: Rule, done: int) -> None:
        try:
            self.ipr.rule(command, **rules.arguments(rule))
        except netlink_error() as exc:
            if exc.code != done:     # already there / already gone
                raise OSError(exc.code, f"rule {rules.describe(rule)}: {exc}") from exc


def _address_options(vip: VirtualAddress, interface) -> dict:
    options: dict = {}
    if vip.label:
        options["label"] = vip.label
    if vip.scope:
        options["scope"] = SCOPES.get(vip.scope, 0) if not vip.scope.isdecimal() \
            else int(vip.scope)
    if vip.brd and interface.version == 4:
        if vip.brd == "+":
            options["broadcast"] = str(interface.network.broadcast_address)
        elif vip.brd != "-":
            options["broadcast"] = vip.brd
    if vip.peer:
        options["local"] = str(interface.ip)
        options["address"] = str(ipaddress.ip_interface(vip.peer).ip)
    flags = 0
    for flag in vip.flags:
        flags |= FLAG_BITS.get(flag, 0)
    if interface.version == 6:
        flags |= IFA_F_NODAD      # a VIP moves between routers; DAD would delay it seconds
    if flags:
        options["flags"] = flags
    return options


def apply_all(addresses: Addresses, vips, routes, ifname: str, add: bool,
              instance: str, rule_list=()) -> int:
    """Add (or remove) every VIP, route and rule of an instance: addresses before the routes
    that may use them, routes before the rules that send to them; and the other way round on
    removal (keepalived's order). A failure is logged and counted, and the rest still go on.
    Returns the number of failures."""
    action = "add" if add else "remove"
    steps = [(addresses.add if add else addresses.remove, vip, "address", vip.address)
             for vip in vips]
    routing = [(addresses.add_route if add else addresses.remove_route, route, "route",
                route.destination) for route in routes]
    routing += [(addresses.add_rule if add else addresses.remove_rule, rule, "rule",
                 rules.describe(rule)) for rule in rule_list]
    failures = 0
    for apply, item, kind, name in (steps + routing if add else routing[::-1] + steps):
        try:
            apply(item, ifname)
        except OSError as exc:
            failures += 1
            event(log, f"vrrp.{kind}_error", logging.ERROR, instance=instance, **{kind: name},
                  action=action, error=exc)
    return failures
