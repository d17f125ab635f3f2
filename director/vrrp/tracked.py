"""What one vrrp_instance tracks, with its own and its sync group's tracking keywords and
keepalived 2.2.7's rules (vrrp.c vrrp_complete_instance and sync_group_tracking_init):

* a sync group's track_interface / track_script / track_file / track_process apply to each
  member, with their weights; if a member is the address owner (priority 255) a weight of
  the group's is cleared (the thing then holds the members in FAULT when it fails);
* in a sync group without ``sync_group_tracking_weight`` (``global_tracking``), and for the
  address owner, a member's own weighted track_interface counts as unweighted (the owner's
  outside such a group is ignored), its weighted track_script is ignored, its track_file at
  weight 1 (the default) counts as unweighted and at any other weight is ignored; its
  track_process keeps its weight (2.2.7 leaves processes out of that rule);
* a thing tracked both by the instance and by its group is tracked once, with the group's
  weight unless the instance's own line is unweighted (track_file.c add_obj_to_track_file).

Pure: configuration models in, ``Tracked`` items and the notes -t prints out.

keepalived's weights (vrrp_track.c, the same for every kind): no weight (or 0) puts the
instance in FAULT while the tracked thing fails (``reverse``: while it is fine); a positive
weight is added while it is fine, a negative one while it fails, and ``reverse`` negates
what is added (weight 10 reverse: -10 while fine). A track_file is valued: its number times
the weight (negated by reverse) is added, clamped to 253, and -254 or below is FAULT; with
weight 0 a non-zero number is FAULT (reversed: zero is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..names import default_interface
from .proto import OWNER_PRIORITY


@dataclass(frozen=True)
class Tracked:
    key: str                   # "interface eth1", "script chk_http", "file f", "process p"
    weight: int | None
    reverse: bool = False
    valued: bool = False       # a track_file: its status is a number, not fine / failed


def contribution(item: Tracked, status: bool | int) -> int | None:
    """What one tracked thing adds to the priority now; None: it holds the instance in
    FAULT."""
    sign = -1 if item.reverse else 1
    if item.valued:
        value = int(status)
        if not item.weight:
            return None if (value != 0) != item.reverse else 0
        added = max(-254, min(253, value * item.weight * sign))
        return None if added == -254 else added
    fine = bool(status)
    if not item.weight:
        return None if fine == item.reverse else 0
    return item.weight * sign if fine == (item.weight > 0) else 0


def effect(base: int, tracked: list[Tracked],
           status: dict[str, bool | int]) -> tuple[int, frozenset[str]]:
    """The effective priority and the set of faults, from each tracked thing's status
    (fine or failed; a file's number). Unknown yet: fine, a file 0."""
    priority = base
    faults = set()
    for item in tracked:
        added = contribution(item, status.get(item.key, 0 if item.valued else True))
        if added is None:
            faults.add(item.key)
        else:
            priority += added
    return max(1, min(254, priority)) if base != OWNER_PRIORITY else base, frozenset(faults)


def _lines(owner: Any, defaults: dict[str, dict[str, tuple[int, bool]]]):
    """(kind, key, weight, reverse) of each tracking line of an instance or a sync group; a
    line without weight takes its script's, file's or process's."""
    for item in owner.track_interface:
        yield "interface", item.name, item.weight, item.reverse
    for kind, lines in (("script", owner.track_script), ("file", owner.track_file),
                        ("process", owner.track_process)):
        for item in lines:
            if item.weight is not None:
                yield kind, item.name, item.weight, item.reverse
            else:
                weight, reverse = defaults[kind].get(item.name, (0, False))
                yield kind, item.name, weight, reverse


def _defaults(config: Any) -> dict[str, dict[str, tuple[int, bool]]]:
    return {"script": {s.name: tuple(s.weight) for s in config.vrrp_scripts},
            "file": {f.name: tuple(f.weight) for f in config.track_files},
            "process": {p.name: tuple(p.weight) for p in config.vrrp_track_processes}}


def group_of(config: Any, name: str) -> Any | None:
    return next((g for g in config.vrrp_sync_groups if name in g.group), None)


def tracked_for(config: Any, instance: Any) -> tuple[list[Tracked], list[str]]:
    """The instance's tracked things, and what keepalived would say about weights it drops."""
    defaults = _defaults(config)
    group = group_of(config, instance.name)
    owner = instance.priority == OWNER_PRIORITY
    group_rule = group is not None and not group.sync_group_tracking_weight
    no_weights = owner or group_rule
    why = f"sync group {group.name}" if group_rule else "address owner"
    notes: list[str] = []
    items: dict[str, Tracked] = {}
    if not instance.dont_track_primary and instance.interface:
        items[f"interface {instance.interface}"] = Tracked(f"interface {instance.interface}",
                                                           None)
    for kind, name, weight, reverse in _lines(instance, defaults):
        if weight and no_weights and kind != "process":
            if (kind == "interface" and group_rule) or (kind == "file" and weight == 1):
                notes.append(f"{instance.name}: weight of track_{kind} {name} ignored ({why}"
                             f"): it counts as unweighted")
                weight = 0
            else:
                notes.append(f"{instance.name}: weighted track_{kind} {name} ignored ({why})")
                continue
        items[f"{kind} {name}"] = Tracked(f"{kind} {name}", weight, reverse, kind == "file")
    if group is not None:
        members = [i for i in config.vrrp_instances if i.name in group.group]
        group_owner = any(m.priority == OWNER_PRIORITY for m in members)
        for kind, name, weight, reverse in _lines(group, defaults):
            key = f"{kind} {name}"
            if weight and group_owner:
                notes.append(f"{group.name}: weight of track_{kind} {name} cleared (a member "
                             "is the address owner)")
                weight = 0
            own = items.get(key)
            if own is not None and not own.weight:
                continue                    # the instance's unweighted line stands
            items[key] = Tracked(key, weight, reverse, kind == "file")
    for ifname in static_track_interfaces(config, instance.name):
        key = f"interface {ifname}"       # unweighted: FAULT while it is down, as keepalived
        items[key] = Tracked(key, None)
    return list(items.values()), notes


def static_track_interfaces(config: Any, name: str) -> list[str]:
    """keepalived's track_group: the instances of a top-level track_group follow, unweighted,
    the interface of each static address (its dev), static route (its dev) and static rule
    (its iif) that names the group with 'track_group' and is not no_track."""
    groups = {group.name for group in config.track_groups if name in group.group}
    if not groups:
        return []
    found: list[str] = []
    for vip in config.static_ipaddress:
        if vip.track_group in groups and "no_track" not in vip.flags:
            found.append(vip.dev or default_interface(config.global_defs))
    for route in config.static_routes:
        if dict(route.options).get("track_group") in groups and route.dev and \
                "no_track" not in route.flags:
            found.append(route.dev)
    for rule in config.static_rules:
        if rule.track_group in groups and rule.iif and not rule.no_track:
            found.append(rule.iif)
    return list(dict.fromkeys(found))


def signature(config: Any, instance: Any) -> tuple:
    """What an instance's tracking is built from, beyond its own block: a reload restarts
    the instance when this changes (the sync group it is in and that group's tracking, the
    definitions of the files and processes it tracks)."""
    items, _ = tracked_for(config, instance)
    names = {item.key for item in items}
    group = group_of(config, instance.name)
    return (group.name if group else None, tuple(items),
            tuple(f for f in config.track_files if f"file {f.name}" in names),
            tuple(p for p in config.vrrp_track_processes if f"process {p.name}" in names))
