"""The model as JSON (``--dump-json``, the shape of /api/v1/state without live fields) and as
a human-readable dump (``-d``). Secrets are masked in both: they are ``Secret`` objects,
which only ``reveal()`` opens.

The instances, sync groups, virtual and real servers are the live state's own views
(director/state.py) built from the model, live fields None and left out (``static_json``),
then every configured keyword's value (where both name a field, the configuration's: a
``protocol`` left unset shows as null): one producer of the shape, so the dump and the API
cannot drift apart."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from ..state import (InstanceView, RealServerView, SyncGroupView, VirtualServerView,
                     static_json)
from .schema import Secret
from .validate import effective_version

MASK = "********"


def plain(value: Any) -> Any:
    """Model -> JSON-ready data: dataclasses become dicts (without their file location)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Secret):
            return MASK
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "location"}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return value


def instance_json(instance, global_defs, sync_group: str | None) -> dict:
    version = effective_version(instance, global_defs)
    return {**static_json(InstanceView.of(instance, version, sync_group)),
            "effective_version": version, **plain(instance)}


def real_server_json(real) -> dict:
    data = {**static_json(RealServerView.of(real)), **plain(real)}
    if real.slow_start is None:         # a director extension: a keepalived.conf dumps as before
        del data["slow_start"]
    return data


def virtual_server_json(server) -> dict:
    view = VirtualServerView.of(server, tuple(RealServerView.of(real)
                                              for real in server.real_servers))
    data = {**static_json(view), **plain(server)}
    for extension in ("bgp_announce", "slow_start"):  # director's: a keepalived.conf dumps
        if getattr(server, extension) is None:        # as before
            del data[extension]
    data["real_servers"] = [real_server_json(real) for real in server.real_servers]
    return data


def sync_group_json(group) -> dict:
    return {**static_json(SyncGroupView(group.name, tuple(group.group))), **plain(group)}


def config_json(config, router_id: str) -> dict:
    """``router_id`` is the fallback when global_defs has none (keepalived: the host name)."""
    defs = config.global_defs
    sync_of = {member: group.name for group in config.vrrp_sync_groups for member in group.group}
    return {
        "router_id": defs.router_id or router_id,
        "global_defs": plain(defs),
        "vrrp": {
            "instances": [instance_json(i, defs, sync_of.get(i.name))
                          for i in config.vrrp_instances],
            "sync_groups": [sync_group_json(group) for group in config.vrrp_sync_groups],
            "scripts": plain(config.vrrp_scripts),
            "track_files": plain(config.track_files),
            "garp_groups": plain(config.garp_groups),
            "track_processes": plain(config.vrrp_track_processes),
            "track_groups": plain(config.track_groups),
        },
        "virtual_server_groups": plain(config.virtual_server_groups),
        "virtual_servers": [virtual_server_json(s) for s in config.virtual_servers],
        "static_ipaddress": plain(config.static_ipaddress),
        "static_routes": plain(config.static_routes),
        "static_rules": plain(config.static_rules),
        "interface_up_down_delays": plain(config.interface_up_down_delays),
        "linkbeat_use_polling": config.linkbeat_use_polling,
        "linkbeat_interfaces": plain(config.linkbeat_interfaces),
        "ssl": plain(config.ssl),
        "namespace_with_ipsets": config.namespace_with_ipsets,
        # director extensions: shown when configured, so a keepalived.conf dumps as before
        **({"bgp": plain(config.bgp)} if config.bgp is not None else {}),
        **({"override_peers": list(config.override_peers)} if config.override_peers else {}),
        **({"override_peers_ca": config.override_peers_ca}
           if config.override_peers_ca is not None else {}),
    }


def dump_text(config, router_id: str) -> str:
    """keepalived's ``-d`` in spirit: every section, every value, one per line, indented."""
    data = config_json(config, router_id)
    lines: list[str] = []
    lines.append("------< Global definitions >------")
    lines.append(f" Router ID = {data['router_id']}")
    _dump(data["global_defs"], lines, 1)
    sections = [
        ("VRRP scripts", data["vrrp"]["scripts"], "VRRP script"),
        ("VRRP track processes", data["vrrp"]["track_processes"], "VRRP track process"),
        ("Track files", data["vrrp"]["track_files"], "Track file"),
        ("VRRP sync groups", data["vrrp"]["sync_groups"], "VRRP sync group"),
        ("VRRP topology", data["vrrp"]["instances"], "VRRP instance"),
        ("Virtual server groups", data["virtual_server_groups"], "Virtual server group"),
        ("Virtual servers", data["virtual_servers"], "Virtual server"),
    ]
    if "bgp" in data:
        lines.append("------< BGP >------")
        _dump(data["bgp"], lines, 1)
    if "override_peers" in data:
        lines.append("------< Override peers >------")
        _dump(data["override_peers"], lines, 1)
    for title, items, label in sections:
        if not items:
            continue
        lines.append(f"------< {title} >------")
        for item in items:
            lines.append(f" {label} = {item.get('name')}")
            _dump({k: v for k, v in item.items() if k != "name"}, lines, 2)
    return "\n".join(lines) + "\n"


def _dump(value: Any, lines: list[str], depth: int) -> None:
    pad = " " * (2 * depth - 1)
    for key, item in value.items():
        label = key.replace("_", " ").capitalize()
        if item is None or item == () or item == []:
            continue
        if isinstance(item, dict):
            lines.append(f"{pad}{label}:")
            _dump(item, lines, depth + 1)
        elif isinstance(item, list) and any(isinstance(i, dict) for i in item):
            for index, element in enumerate(item, 1):
                lines.append(f"{pad}{label} #{index}:")
                if isinstance(element, dict):
                    _dump(element, lines, depth + 1)
                else:
                    lines.append(f"{pad}  {_scalar(element)}")
        elif isinstance(item, list):
            shown = ", ".join(_scalar(i) for i in item if i is not None)
            lines.append(f"{pad}{label} = {shown}")
        else:
            lines.append(f"{pad}{label} = {_scalar(item)}")


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)
