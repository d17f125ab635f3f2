"""Checks of the BGP extension that need the whole file: what a virtual server's
bgp_announce names (peers, a VRRP instance) must exist, its prefix should hold the
addresses it carries, and a prefix has one set of attributes however many virtual servers
announce it (the announcer keeps one route per prefix). Each at the line of the
bgp_announce concerned."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..names import virtual_server_name
from .diagnostics import Diagnostics


def validate_bgp(config: Any, diagnostics: Diagnostics) -> None:
    announcing = [server for server in config.virtual_servers
                  if server.bgp_announce is not None]
    if not announcing:
        return
    peers = {peer.address for peer in config.bgp.peers} if config.bgp is not None else set()
    instances = {instance.name for instance in config.vrrp_instances}
    groups = {group.name: group for group in config.virtual_server_groups}
    first: dict[str, Any] = {}            # prefix -> the first virtual server announcing it
    for server in announcing:
        announce = server.bgp_announce
        where = announce.location or server.location
        name = virtual_server_name(server)
        if not peers:
            diagnostics.error(where, f"virtual_server {name}: bgp_announce needs a bgp block "
                                     "with at least one peer")
        else:
            for address in announce.peers or ():
                if address not in peers:
                    diagnostics.error(where, f"virtual_server {name}: bgp_announce names peer "
                                             f"{address}, which no bgp peer block defines")
        if announce.vrrp_instance is not None and announce.vrrp_instance not in instances:
            diagnostics.error(where, f"virtual_server {name}: bgp_announce follows "
                                     f"vrrp_instance {announce.vrrp_instance}, which is not "
                                     "defined")
        if not announce.prefix:           # missing or invalid: said at the block
            continue
        outside = _outside(announce.prefix, _addresses(server, groups))
        if outside:
            diagnostics.warning(where, f"virtual_server {name}: bgp_announce prefix "
                                       f"{announce.prefix} does not contain {outside}: the "
                                       "router sends that address's flows elsewhere")
        other = first.setdefault(announce.prefix, server)
        # every field but the location (which models do not compare): MEDs, communities,
        # next hop, the instance and file it follows, its peers; else the route would
        # depend on which virtual server was read first
        if other is not server and other.bgp_announce != announce:
            diagnostics.error(where, f"virtual_server {name} announces {announce.prefix} "
                                     f"with other attributes than virtual_server "
                                     f"{virtual_server_name(other)} (line "
                                     f"{(other.bgp_announce.location or other.location).line})"
                                     ": a prefix has one set of attributes")


def _addresses(server: Any, groups: dict[str, Any]) -> list[str]:
    """The addresses a virtual server serves: its own, or its group's (ranges' both ends)."""
    if server.address is not None:
        return [server.address]
    group = groups.get(server.group) if server.group is not None else None
    if group is None:
        return []
    return [address for entry in group.entries if entry.address is not None
            for address in (entry.address, entry.range_end) if address is not None]


def _outside(prefix: str, addresses: list[str]) -> str | None:
    network = ipaddress.ip_network(prefix)
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.version != network.version or ip not in network:
            return address
    return None
