"""Checks across blocks that keepalived never made (its HOWTO: it "does not report errors").

Each check reads the finished model and reports at the line of the block concerned.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import stat
from typing import Any, Callable, Iterator

from .blocks.virtual_server import virtual_server_name
from .blocks.vmac import duplicate_names
from .diagnostics import Diagnostics, Location
from .strict import problems, strict_mode
from .validate_bgp import validate_bgp
from .values import Command


def _at(item: Any, fallback):
    """The line of a list item (a VIP, a tracked script, a member name) when it knows it."""
    return getattr(item, "location", None) or fallback


def instance_family(instance: Any) -> int:
    """4 or 6: the family of an instance's adverts, that of its first virtual address
    (keepalived's rule), else of its unicast source; native_ipv6 says 6 whatever."""
    if getattr(instance, "native_ipv6", False):
        return 6
    if instance.virtual_ipaddress:
        return instance.virtual_ipaddress[0].family
    source = instance.unicast_src_ip or instance.mcast_src_ip
    return 6 if source and ":" in source else 4


def effective_version(instance: Any, global_defs: Any) -> int:
    """VRRP version in force: the instance's, else 3 for IPv6 (v2 has no IPv6), else global.
    Strict mode makes an IPv6 instance's version 2 a 3 (keepalived: with a warning)."""
    ipv6 = instance_family(instance) == 6
    if instance.version is not None and not (ipv6 and strict_mode(instance, global_defs)):
        return instance.version
    if ipv6:
        return 3
    return global_defs.vrrp_version


def validate(config: Any, diagnostics: Diagnostics,
             interface_exists: Callable[[str], bool] | None, scripts: bool = True) -> None:
    """``scripts``: may the model hold a script (values.commands_made grew during its
    load)? Without, the walk looking for them (a tenth of -t on 10,000 real servers) is
    not made."""
    _vrrp_instances(config, diagnostics)
    _sync_groups(config, diagnostics)
    _tracking(config, diagnostics)
    _virtual_servers(config, diagnostics)
    validate_bgp(config, diagnostics)
    _alerts(config, diagnostics)
    _lvs_sync_daemon(config, diagnostics)
    _notify_fifos(config, diagnostics, interface_exists is not None)
    if interface_exists is not None:     # checks of this host, not of the file
        _interfaces(config, diagnostics, interface_exists)
        if scripts:
            _scripts(config, diagnostics)
    _nothing_to_run(config, diagnostics)


def _nothing_to_run(config, diagnostics: Diagnostics) -> None:
    """An empty file loads (keepalived runs it, idle), but a reload with one, a file truncated
    by an editor or a deploy, silently tears everything down: -t says so. Not on top of
    errors: such a file is refused anyway, and what failed to parse is likely what is missing."""
    if config.vrrp_instances or config.virtual_servers or diagnostics.has_errors():
        return
    diagnostics.warning(Location(config.location.file, 1),
                        "the configuration defines no vrrp_instance and no virtual_server: a "
                        "reload with it removes every instance and pool")


def _vrrp_instances(config, diagnostics: Diagnostics) -> None:
    names: dict[str, Any] = {}
    routers: dict[tuple, Any] = {}
    vips: dict[str, Any] = {}
    for instance in config.vrrp_instances:
        where = instance.location
        if instance.name in names:
            diagnostics.error(where, f"vrrp_instance {instance.name} is defined twice (first at "
                                     f"line {names[instance.name].location.line})")
        names.setdefault(instance.name, instance)
        family = instance_family(instance)
        odd = [vip for vip in instance.virtual_ipaddress if vip.family != family]
        if odd:
            diagnostics.error(_at(odd[0], where), f"vrrp_instance {instance.name} mixes IPv4 and "
                                                  "IPv6 in virtual_ipaddress: put the other "
                                                  "family in virtual_ipaddress_excluded")
        version = effective_version(instance, config.global_defs)
        if family == 6 and version == 2:
            diagnostics.error(where, f"vrrp_instance {instance.name}: VRRP version 2 has no "
                                     "IPv6; use version 3")
        if version == 2 and instance.advert_int != int(instance.advert_int):
            diagnostics.warning(where, f"vrrp_instance {instance.name}: VRRPv2 advertises whole "
                                       f"seconds; advert_int {instance.advert_int:g} is rounded "
                                       f"to {max(1, round(instance.advert_int))}")
        # not on top of errors: what failed to parse is likely the VIPs (as _nothing_to_run);
        # strict mode's refusal says it instead
        if not instance.virtual_ipaddress and not instance.no_virtual_ipaddress and \
                not diagnostics.has_errors() and not strict_mode(instance, config.global_defs):
            diagnostics.warning(where, f"vrrp_instance {instance.name}: no virtual_ipaddress; "
                                       "at least one is sensible" +
                                ("; keepalived 2.2.7 refuses a VRRPv3 instance without one"
                                 if version == 3 else "") +
                                " (no_virtual_ipaddress says it is meant)")
        if version == 3 and instance.authentication is not None:
            diagnostics.warning(_at(instance.authentication, where), f"vrrp_instance "
                                f"{instance.name}: VRRPv3 has no authentication; its adverts "
                                f"go without {instance.authentication.auth_type} (as keepalived's)")
        if version == 3 and instance.advert_int > 40.95:
            diagnostics.error(where, f"vrrp_instance {instance.name}: VRRPv3 advert_int is at "
                                     f"most 40.95 s, got {instance.advert_int:g}")
        for severity, message in problems(instance, config.global_defs, version, family):
            getattr(diagnostics, severity)(where, message)
        if instance.interface and instance.virtual_router_id:
            key = (instance.interface, instance.virtual_router_id, family)
            if key in routers:
                other = routers[key]
                diagnostics.error(where, f"vrrp_instance {instance.name} uses virtual_router_id "
                                         f"{instance.virtual_router_id} on {instance.interface} "
                                         f"(IPv{family}), as vrrp_instance {other.name} does "
                                         f"(line {other.location.line})")
            routers.setdefault(key, instance)
        for vip in instance.virtual_ipaddress:
            if vip.address in vips and vips[vip.address] is not instance:
                diagnostics.warning(_at(vip, where), f"{vip.address} is a virtual address of both "
                                           f"{vips[vip.address].name} and {instance.name}")
            vips.setdefault(vip.address, instance)
        for peer in instance.unicast_peer:
            if (6 if ":" in peer.address else 4) != family:
                diagnostics.error(_at(peer, where), f"vrrp_instance {instance.name}: unicast_peer "
                                         f"{peer.address} is not IPv{family} like the instance")
    for instance, name in duplicate_names(config):
        diagnostics.warning(instance.location, f"vrrp_instance {instance.name}: interface name "
                            f"{name} is already another instance's VMAC / ipvlan; it gets a "
                            "default name, as in keepalived")


def _sync_groups(config, diagnostics: Diagnostics) -> None:
    instances = {i.name for i in config.vrrp_instances}
    member_of: dict[str, str] = {}
    for group in config.vrrp_sync_groups:
        for name in group.group:
            if name not in instances:
                diagnostics.error(_at(name, group.location), f"vrrp_sync_group {group.name} names"
                                  f" vrrp_instance {name}, which is not defined")
            elif name in member_of:
                diagnostics.error(_at(name, group.location), f"vrrp_instance {name} is in two "
                                  f"sync groups: {member_of[name]} and {group.name}")
            else:
                member_of[name] = group.name
        if len(group.group) == 1:
            diagnostics.warning(group.location, f"vrrp_sync_group {group.name} has a single "
                                                "instance: it synchronises nothing")


def _tracking(config, diagnostics: Diagnostics) -> None:
    scripts = {s.name for s in config.vrrp_scripts}
    files = {f.name for f in config.track_files}
    processes = {p.name for p in config.vrrp_track_processes}
    owners = [("vrrp_instance", i) for i in config.vrrp_instances] + \
             [("vrrp_sync_group", g) for g in config.vrrp_sync_groups]
    for kind, owner in owners:
        for tracked in owner.track_script:
            if tracked.name not in scripts:
                diagnostics.error(_at(tracked, owner.location), f"{kind} {owner.name} tracks "
                                  f"vrrp_script {tracked.name}, which is not defined")
        for tracked in owner.track_file:
            if tracked.name not in files:
                diagnostics.error(_at(tracked, owner.location), f"{kind} {owner.name} tracks "
                                  f"track_file {tracked.name}, which is not defined")
        for tracked in owner.track_process:
            if tracked.name not in processes:
                diagnostics.error(_at(tracked, owner.location), f"{kind} {owner.name} tracks "
                                  f"vrrp_track_process {tracked.name}, which is not defined")
    if diagnostics.errors:
        return
    from ..vrrp.tracked import tracked_for      # the weights' rules have one home
    for instance in config.vrrp_instances:
        for note in tracked_for(config, instance)[1]:
            diagnostics.warning(instance.location, note)


def _virtual_servers(config, diagnostics: Diagnostics) -> None:
    groups = {g.name: g for g in config.virtual_server_groups}
    track_files = {f.name for f in config.track_files}
    seen: dict[str, Any] = {}
    for server in config.virtual_servers:
        name = virtual_server_name(server)
        if server.group is not None and server.group not in groups:
            diagnostics.error(server.location, f"virtual_server group {server.group}: no "
                                               "virtual_server_group of that name")
        if name in seen:
            diagnostics.error(server.location, f"virtual_server {name} is defined twice (first "
                                               f"at line {seen[name].location.line})")
        seen.setdefault(name, server)
        reals: dict[tuple, Any] = {}
        for real in server.real_servers:
            for checker in real.checkers:
                if checker.kind == "FILE_CHECK" and checker.track_file not in track_files:
                    diagnostics.error(checker.location, f"FILE_CHECK tracks track_file "
                                                        f"{checker.track_file}, which is not "
                                                        "defined")
            key = (real.address, real.port)
            if key in reals:
                diagnostics.error(real.location, f"real_server {real.address} {real.port} is "
                                                 f"listed twice in virtual_server {name} (first "
                                                 f"at line {reals[key].location.line})")
            reals.setdefault(key, real)
        if server.quorum > 1 and server.hysteresis >= server.quorum:
            diagnostics.warning(server.location, f"virtual_server {name}: hysteresis "
                                                 f"{server.hysteresis} is not below quorum "
                                                 f"{server.quorum}: the quorum can never be lost")


def _alerts(config, diagnostics: Diagnostics) -> None:
    defs = config.global_defs
    if defs.smtp_server is not None:
        return
    alerting = [i for i in config.vrrp_instances if i.smtp_alert] + \
               [s for s in config.virtual_servers if s.smtp_alert]
    if alerting:
        diagnostics.warning(alerting[0].location, "smtp_alert is set but global_defs has no "
                                                  "smtp_server: no mail will be sent")


def _lvs_sync_daemon(config, diagnostics: Diagnostics) -> None:
    daemon = config.global_defs.lvs_sync_daemon
    if daemon is None:
        return
    if daemon.instance not in {instance.name for instance in config.vrrp_instances}:
        diagnostics.error(_at(daemon, config.global_defs.location),
                          f"lvs_sync_daemon follows vrrp_instance {daemon.instance}, which is "
                          f"not defined")


def _notify_fifos(config, diagnostics: Diagnostics, on_this_host: bool) -> None:
    """keepalived's notes on its FIFOs, said by -t: a script without its FIFO is never run,
    a path given twice is written once, and (on this host) a path that is not a FIFO is one
    director will not write to."""
    defs = config.global_defs
    where = defs.location or config.location
    scripts: dict[str, str] = {}          # path -> the keyword whose script reads it
    for keyword in ("notify_fifo", "vrrp_notify_fifo", "lvs_notify_fifo"):
        fifo, script = getattr(defs, keyword), getattr(defs, f"{keyword}_script")
        if fifo is None:
            if script is not None:
                diagnostics.warning(where, f"{keyword}_script without {keyword}: it is not run")
            continue
        if script is not None:
            if fifo.path in scripts:
                diagnostics.warning(where, f"{keyword} {fifo.path} is also {scripts[fifo.path]}:"
                                           f" its script is not run ({scripts[fifo.path]}_script"
                                           " reads it)")
            scripts.setdefault(fifo.path, keyword)
        if on_this_host and os.path.lexists(fifo.path) and \
                not stat.S_ISFIFO(os.lstat(fifo.path).st_mode):
            diagnostics.warning(where, f"{keyword} {fifo.path} exists and is not a FIFO: "
                                       "director will not write to it")


def _interfaces(config, diagnostics: Diagnostics, exists: Callable[[str], bool]) -> None:
    """A missing interface is a warning: the file may be meant for another host."""
    reported: set[str] = set()

    def check(name: str | None, instance, role: str, item=None) -> None:
        if name and name not in reported and not exists(name):
            reported.add(name)
            diagnostics.warning(_at(item, instance.location), f"interface {name} ({role} of "
                                f"vrrp_instance {instance.name}) does not exist on this host")

    for instance in config.vrrp_instances:
        check(instance.interface, instance, "interface")
        for tracked in instance.track_interface:
            check(tracked.name, instance, "track_interface", tracked)
        for vip in instance.virtual_ipaddress + instance.virtual_ipaddress_excluded:
            check(vip.dev, instance, "dev", vip)


def _commands(node: Any, where: Location, user: str | None, pause: Callable[[], None]
              ) -> Iterator[tuple[Location, str, Command, str | None]]:
    """(location, keyword, Command, the user it runs as) for every script in the model: the
    command's own USER [GROUP], else its block's ``user`` (vrrp_script, MISC_CHECK), else
    the default script user. ``pause`` at every block: the walk over 12,000 real servers
    held a reload's adverts 160 ms (bench/reload_lateness.py).

    The walk reads each model type's fields once (_fields_of) and steps over the values that
    cannot hold a script (strings, numbers, None, locations: nearly all) by their type:
    ``dataclasses.fields`` and ``is_dataclass`` per value made this walk a third of ``-t``
    on 10,000 real servers (0.86 s; docs/BENCHMARKS.md, issue 17)."""
    found: list[tuple[Location, str, Command, str | None]] = []
    _walk(node, where, user, pause, found)
    return iter(found)


_LEAVES = frozenset((str, int, float, bool, type(None), Location))   # hold no script
_FIELDS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple]] | None] = {}


def _fields_of(kind: type) -> tuple[tuple[str, ...], Callable[[Any], tuple]] | None:
    """A dataclass type's field names and one getter for all their values; None for a type
    that is not a dataclass."""
    try:
        return _FIELDS[kind]
    except KeyError:
        pass
    plan = None
    if dataclasses.is_dataclass(kind):
        names = tuple(f.name for f in dataclasses.fields(kind))
        if len(names) > 1:
            getter = operator.attrgetter(*names)        # a tuple of the values, in C
        else:
            def getter(node: Any, names: tuple[str, ...] = names) -> tuple:
                return tuple(getattr(node, name) for name in names)
        plan = (names, getter)
    _FIELDS[kind] = plan
    return plan


def _walk(node: Any, where: Location, user: str | None, pause: Callable[[], None],
          found: list) -> None:
    pause()
    names, getter = _FIELDS.get(type(node)) or _fields_of(type(node))
    where = getattr(node, "location", None) or where
    block_user = getattr(node, "user", None)
    leaves = _LEAVES
    for name, value in zip(names, getter(node)):
        kind = type(value)
        if kind in leaves:
            continue
        if isinstance(value, Command):
            own = f"{value.user} {value.group or ''}".strip() if value.user else None
            found.append((where, name, value, own or block_user or user))
        elif _fields_of(kind) is not None:
            _walk(value, where, user, pause, found)
        elif isinstance(value, tuple):
            for item in value:
                if type(item) not in leaves and _fields_of(type(item)) is not None:
                    _walk(item, where, user, pause, found)


def _scripts(config, diagnostics: Diagnostics) -> None:
    """keepalived's start-up script security check: a script root runs that a non-root user
    could change is refused with enable_script_security, and warned about without it."""
    # Here, not at the top: scriptsec brings shutil, shlex, pwd and grp (9 ms), and a
    # model without a script (-t of most files) never asks (issue 17).
    from ..scriptsec import default_user, problem, refusal
    security = config.global_defs.enable_script_security
    seen: set[tuple[str, str | None]] = set()
    for where, keyword, command, user in _commands(config, config.location,
                                                   default_user(config.global_defs.script_user),
                                                   diagnostics.pause):
        if (command.line, user) in seen:
            continue
        seen.add((command.line, user))
        if security:
            reason = refusal(command.line, user, True)
            if reason:
                diagnostics.warning(where, f"{keyword} '{command.line}' will not be run "
                                           f"(enable_script_security): {reason}")
            continue
        reason = problem(command.line, user)
        if reason:
            diagnostics.warning(where, f"{keyword} '{command.line}' runs as root but {reason}: "
                                       "a non-root user could change what root runs "
                                       "(enable_script_security would refuse it)")
