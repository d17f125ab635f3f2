"""The reload preview (``director ctl diff [FILE]``, ``POST /api/v1/reload?dry_run=1``, the
dashboard before a reload): what reloading would change, computed by the running daemon
against its live state, and nothing changed.

It never decides anything itself: the file is parsed as a reload parses it, the one plan
comes from reconcile.plan (the reload's), the kernel's operations from lb.foresee (the
load balancer's own rules on copies of the live state), and this module only puts them in
words, with each changed object's settings (old -> new) and the VRRP transition that would
follow (``transition``: one small rule, to adjust when the reload's VRRP behaviour does).
A file that does not parse yields its diagnostics (FILE:LINE) and says the reload would be
refused.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from .config import Unreadable, load_config
from .config.blocks.virtual_server import real_server_name, virtual_server_name
from .log import event
from .vrrp.carry import identity

log = logging.getLogger("director")

MAX_LISTED = 500            # objects listed per section (the summary counts them all)
MAX_VALUE_CHARS = 120       # of one setting's value as shown
MAX_DIAGNOSTICS = 50

def transition(change: str, role: str | None, priority: int | None = None,
               new_priority: int | None = None, heard: int | None = None,
               preempt: bool = True, restarts: bool = False) -> str | None:
    """The VRRP transition a reload would cause an instance, in words, None for none.
    ``change``: added, removed or changed; ``role`` its role now (None: not running);
    ``priority`` its effective priority now, ``new_priority`` the one it would have;
    ``heard`` the priority of the master it last heard (a BACKUP's; a MASTER hears no
    BACKUP: they are silent), ``preempt`` the new setting; ``restarts``: a changed instance
    that is no longer the same router (vrrp/carry.py identity: vrid, interface, ...) leaves
    as on stop and starts afresh; any other keeps its role (keepalived's reload)."""
    if change == "added":
        return "INIT -> MASTER (priority 255)" if new_priority == 255 else \
            "INIT -> BACKUP (MASTER if no higher priority is heard)"
    if change == "removed":
        return "MASTER -> stopped: its VIPs are given up" if role == "MASTER" else \
            (f"{role} -> stopped" if role else None)
    if role is None:
        return None
    if restarts:
        if role == "MASTER":
            return "MASTER -> restarted: its VIPs are given up, then BACKUP " \
                   "(MASTER again if no higher priority is heard)"
        return f"{role} -> restarted as BACKUP"
    if new_priority is None or new_priority == priority:
        return None
    if role == "MASTER" and new_priority < (priority or 0):
        if heard is not None and new_priority < heard:
            return f"MASTER -> BACKUP (a peer advertised priority {heard})"
        return f"MASTER stays unless a BACKUP has a priority above {new_priority}"
    if role == "BACKUP" and preempt and heard is not None and new_priority > heard:
        return f"BACKUP -> MASTER (preempts the master's priority {heard})"
    if role == "BACKUP" and new_priority == 255:
        return "BACKUP -> MASTER (priority 255)"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and all(hasattr(item, "address") for item in value):
        value = [item.address for item in value]
    elif dataclasses.is_dataclass(value) and hasattr(value, "kind"):
        value = value.kind
    text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "..."


def settings_changed(old: Any, new: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """"name: old -> new" for each compared field of two models that differs."""
    return [f"{field.name}: {_shown(getattr(old, field.name))} -> "
            f"{_shown(getattr(new, field.name))}"
            for field in dataclasses.fields(new)
            if field.compare and field.name not in skip and
            getattr(old, field.name) != getattr(new, field.name)]


def _listed(items: list) -> list:
    return items[:MAX_LISTED]


def _instances(plan: Any, roles: dict[str, tuple[str, int, int | None]] | None) -> dict:
    """``roles``: name -> (role, effective priority, priority heard) of the running
    instances, None where this daemon runs no VRRP (-C)."""
    old = {instance.name: instance for instance in plan.old.vrrp_instances}
    new = {instance.name: instance for instance in plan.new.vrrp_instances}
    roles = roles or {}

    def now(name: str) -> tuple:
        return roles.get(name, (None, None, None))

    def after(name: str) -> int:           # the effective priority keeps its tracking
        role, priority, _ = now(name)
        base = old[name].priority if name in old else new[name].priority
        return new[name].priority + ((priority - base) if priority is not None else 0)

    changed = []
    for name in plan.instances.changed:
        role, priority, heard = now(name)
        changed.append({
            "name": name,
            "settings": settings_changed(old[name], new[name]) or
            ["its tracked scripts, files or processes, or global settings it depends on"],
            "transition": transition("changed", role, priority, after(name), heard,
                                     new[name].preempt,
                                     restarts=identity(old[name]) != identity(new[name]))})
    return {
        "added": _listed([{"name": name, "transition": transition(
            "added", None, new_priority=new[name].priority)} for name in plan.instances.added]),
        "removed": _listed([{"name": name, "transition": transition("removed", now(name)[0])}
                            for name in plan.instances.removed]),
        "changed": _listed(changed),
        "kept": _listed(list(plan.instances.kept)),
        "sync_groups_rebuilt": list(plan.instances.sync_groups),
        "scripts_changed": list(plan.instances.scripts),
    }


def _virtual_servers(plan: Any) -> dict:
    old = {virtual_server_name(v): v for v in plan.old.virtual_servers}
    new = {virtual_server_name(v): v for v in plan.new.virtual_servers}
    return {"added": _listed([name for name in new if name not in old]),
            "removed": _listed([name for name in old if name not in new]),
            "changed": _listed([{"name": name,
                                 "settings": settings_changed(old[name], new[name],
                                                              skip=("real_servers",))}
                                for name in new if name in old and
                                settings_changed(old[name], new[name], skip=("real_servers",))])}


def _real_servers(plan: Any) -> tuple[dict, dict]:
    from .reconcile import servers_of
    servers = plan.servers
    before = servers_of(plan.old)

    def label(key: tuple) -> dict:
        models = servers.servers.get(key) or before[key]
        return {"virtual_server": key[0], "real_server": real_server_name(models[1])}

    restarting = set(servers.changed)
    changed = []
    for key in servers.kept + servers.changed:
        settings = settings_changed(before[key][1], servers.servers[key][1], skip=("checkers",))
        if before[key][1].checkers != servers.servers[key][1].checkers:
            settings.append("checkers: " + ", ".join(_shown(c) for c in
                                                     servers.servers[key][1].checkers))
        if settings or key in restarting:
            changed.append({**label(key), "settings": settings or
                            ["what its checkers are built from (virtual server or global)"],
                            "checkers_restart": key in restarting})
    real = {"added": _listed([label(key) for key in servers.added]),
            "removed": _listed([label(key) for key in servers.removed]),
            "changed": _listed(changed), "kept": len(servers.kept)}

    def names(keys: tuple) -> list:
        return _listed([f"{key[0]} / {label(key)['real_server']}" for key in keys])
    checkers = {"restart": names(servers.changed), "start": names(servers.added),
                "stop": names(servers.removed)}
    return real, checkers


def kernel_section(operations: list, current: dict, backend: str | None) -> dict:
    """The operations in words: services and destinations to add, remove, update (old ->
    new)."""
    from .lb import plan as ops
    services: dict[str, list] = {"add": [], "remove": [], "update": []}
    destinations: dict[str, list] = {"add": [], "remove": [], "update": []}
    for op in operations:
        if isinstance(op, ops.AddService):
            services["add"].append(f"{op.service.key} ({op.service.scheduler})")
        elif isinstance(op, ops.DeleteService):
            services["remove"].append(str(op.key))
        elif isinstance(op, ops.EditService):
            services["update"].append(f"{op.service.key}: " + "; ".join(
                settings_changed(current[op.service.key].service, op.service, skip=("key",))))
        elif isinstance(op, ops.AddDestination):
            destinations["add"].append(f"{op.service} -> {_destination(op.destination.key)} "
                                       f"weight {op.destination.weight}")
        elif isinstance(op, ops.DeleteDestination):
            destinations["remove"].append(f"{op.service} -> {_destination(op.destination)}")
        elif isinstance(op, ops.EditDestination):
            was = current[op.service].destinations[op.destination.key]
            destinations["update"].append(
                f"{op.service} -> {_destination(op.destination.key)}: " +
                "; ".join(settings_changed(was, op.destination, skip=("key",))))
    return {"backend": backend,
            "services": {what: _listed(items) for what, items in services.items()},
            "destinations": {what: _listed(items) for what, items in destinations.items()},
            "operations": len(operations)}


def _destination(key: Any) -> str:
    host = f"[{key.address}]" if ":" in key.address else key.address
    return f"{host}:{key.port}" if key.port is not None else host


def _others(plan: Any) -> list[str]:
    """What else the plan applies, said in a few words."""
    others = []
    if plan.mail:
        others.append("global_defs changed (mail, router_id, ...)")
    if plan.instances.static:
        others.append("static addresses, routes or rules, or link settings")
    if plan.instances.firewall:
        others.append("the accept-mode firewall settings")
    if plan.instances.lvs_sync:
        others.append("the lvs_sync_daemon")
    if plan.removes_everything:
        others.append("the new file removes every VRRP instance and virtual server")
    return others


def describe(plan: Any, roles: dict | None, kernel: dict | None) -> dict:
    """The preview of one plan (reconcile.ReloadPlan), JSON-able."""
    real, checkers = _real_servers(plan)
    bgp = plan.bgp
    kernel = kernel or {"backend": None, "note": "this daemon runs no load balancer"}
    counted = kernel.get("operations", 0)
    summary = "nothing would change" if plan.unchanged else \
        plan.describe() + (f"; kernel: {counted} operation{'s' if counted != 1 else ''}"
                           if counted else "")
    return {
        "would_apply": True, "unchanged": plan.unchanged, "errors": [],
        "vrrp_instances": _instances(plan, roles),
        "virtual_servers": _virtual_servers(plan),
        "real_servers": real, "checkers": checkers, "kernel": kernel,
        "bgp": {"engine_restarts": bgp.engine, "peers_added": list(bgp.peers_added),
                "peers_changed": list(bgp.peers_changed),
                "peers_removed": list(bgp.peers_removed),
                "announcements_recomputed": bgp.announcements},
        "load_balancer_reloads": plan.load_balancer and not plan.unchanged,
        "other": _others(plan), "summary": summary}


def refused(path: str, errors: list[str]) -> dict:
    return {"file": path, "would_apply": False, "unchanged": True,
            "errors": errors[:MAX_DIAGNOSTICS], "warnings": [],
            "summary": f"the reload would be refused ({len(errors)} error"
                       f"{'s' if len(errors) != 1 else ''}): the running configuration stays"}


def roles_of(vrrp: Any) -> dict[str, tuple[str, int, int | None]] | None:
    """name -> (role, effective priority, priority of the master last heard)."""
    if vrrp is None:
        return None
    return {instance.name: (instance.state.role, instance.state.priority,
                            instance.state.master_priority)
            for instance in vrrp.instances if instance.state is not None}


def reloads_pools(plan: Any, checks: Any) -> bool:
    """Whether the reload hands the checks and the load balancer the new file (as
    Director._apply decides): otherwise it leaves the kernel alone, whatever a converge
    would do meanwhile."""
    if plan.unchanged:
        return False
    if checks is None:
        return bool(plan.new.virtual_servers)
    return not plan.servers.unchanged or plan.load_balancer


def preview(daemon: Any, path: str, actor: str = "") -> dict:
    """Parse ``path`` as a reload would, plan it against the running configuration, foresee
    the kernel's operations; change nothing (no reload_file, no check log, no state)."""
    from . import hub, reconcile
    try:
        result = load_config(path, daemon.config_id, pause=hub.Slicer())
    except Unreadable as exc:
        answer = refused(path, [str(exc)])
    else:
        if not result.ok:
            answer = refused(path, [str(d) for d in result.errors])
        else:
            plan = reconcile.plan(daemon.config, result.config, hub.Slicer())
            kernel = None
            if not daemon.options.vrrp:
                from .lb.foresee import kernel_operations
                operations, current = [], {}
                if reloads_pools(plan, daemon.checks):
                    operations, current, _ = kernel_operations(
                        plan.new, plan.servers, daemon.checks, daemon.lb, pause=hub.breathe)
                kernel = kernel_section(operations, current,
                                        daemon.lb.backend.name if daemon.lb else None)
            answer = {"file": path, **describe(plan, roles_of(daemon.vrrp), kernel)}
        answer["warnings"] = [str(d) for d in result.warnings][:MAX_DIAGNOSTICS]
    event(log, "reload.preview", file=path, actor=actor, would_apply=answer["would_apply"],
          summary=answer["summary"])
    return answer
