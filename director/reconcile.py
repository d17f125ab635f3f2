"""What a reload changes: the running configuration against the new one, decided here and
nowhere else, with one identity per object.

- a VRRP instance is its name; it is *kept* (runs on untouched: no transition, no missed
  advert) when its block, its effective version, what strict and accept mode make of it
  (global vrrp_strict), the scripts it tracks and its tracking signature (its sync group's
  tracking, the files and processes it tracks: vrrp/tracked.py) are unchanged;
  otherwise it is *changed*: one that is still the same router (keepalived's vrrp_exist:
  vrid, interface, family, unicast or multicast) carries its role to its successor, as
  keepalived's restore_vrrp_state (vrrp/carry.py, decided when applied: it depends on the
  role); another one restarts (leaves as on stop, starts as at start-up);
- a sync group is its name; it is rebuilt when its block changed or a member restarted;
- a real server is (virtual server name, address, port); it is *kept* (jobs, up/down,
  counters) when everything its checkers are built from is unchanged (``check_signature``),
  *changed* otherwise: it then gets new checkers and carries its state over (the services
  migrate it, see CheckService.apply);
- the load balancer, the mailer, the lvs sync daemons and the accept-mode firewall follow
  their parts of the file;
- the BGP part is its own (BgpPlan): a peer is its address, restarted alone when what the
  engine makes of it changed; the engine restarts whole only when its program changed; the
  announcements are recomputed when a bgp_announce changed (the announcer then sends only
  what differs). A bgp_announce is no change to the load balancer.

Pure: configurations in, a frozen ReloadPlan out. The daemon prepares, applies and
commits it (daemon.Director.handle_reload); the property test checks that reloading A -> B
ends where a fresh start on B does.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .config.blocks.virtual_server import real_server_name, virtual_server_name
from .config.diagnostics import no_pause
from .config.strict import blocks, strict_mode
from .config.validate import effective_version
from .vrrp.wire import fixed_by_globals
from .vrrp.tracked import signature as tracking_signature
from .vrrp.vmac import plan as plan_vmacs
from .vrrp.firewall import settings as firewall_settings

ServerKey = tuple[str, str, int]          # (virtual server name, address, port)


@dataclass(frozen=True)
class InstancePlan:
    kept: tuple[str, ...] = ()
    added: tuple[str, ...] = ()           # new names
    changed: tuple[str, ...] = ()         # run their new block (role carried or restarted)
    removed: tuple[str, ...] = ()
    sync_groups: tuple[str, ...] = ()     # rebuilt (or removed, when gone from the file)
    scripts: tuple[str, ...] = ()         # tracked scripts whose definition changed
    lvs_sync: bool = False                # the lvs_sync_daemon setting changed
    static: bool = False                  # static_*, interface_up_down_delays, linkbeat changed
    firewall: bool = False                # the accept-mode tables' settings changed

    @property
    def going(self) -> tuple[str, ...]:
        return self.changed + self.removed

    @property
    def starting(self) -> tuple[str, ...]:
        return self.added + self.changed

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed or self.sync_groups or
                    self.scripts or self.lvs_sync or self.static or self.firewall)

    def counts(self) -> dict[str, int]:
        return {"kept": len(self.kept), "added": len(self.added),
                "changed": len(self.changed), "removed": len(self.removed)}


@dataclass(frozen=True)
class ServerPlan:
    kept: tuple[ServerKey, ...] = ()
    added: tuple[ServerKey, ...] = ()
    changed: tuple[ServerKey, ...] = ()   # new checkers; up/down and counters carried over
    removed: tuple[ServerKey, ...] = ()
    # every server of the new file, in its order: (virtual server, real server) models
    servers: dict[ServerKey, tuple[Any, Any]] = field(default_factory=dict, compare=False)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def counts(self) -> dict[str, int]:
        return {"kept": len(self.kept), "added": len(self.added),
                "removed": len(self.removed), "changed": len(self.changed)}


@dataclass(frozen=True)
class BgpPlan:
    """The BGP part of a reload (the bgp block is one object, its peers one each by
    address): the engine driver restarts what is named here and nothing else."""

    engine: bool = False                  # engine or exabgp_command changed: restart it whole
    peers_added: tuple[str, ...] = ()     # peer addresses
    peers_changed: tuple[str, ...] = ()   # their session restarts with the new settings
    peers_removed: tuple[str, ...] = ()
    announcements: bool = False           # a bgp_announce changed: recompute what is announced

    @property
    def unchanged(self) -> bool:
        return not (self.engine or self.peers_added or self.peers_changed or
                    self.peers_removed or self.announcements)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.peers_added), "changed": len(self.peers_changed),
                "removed": len(self.peers_removed)}


@dataclass(frozen=True)
class ReloadPlan:
    old: Any
    new: Any
    instances: InstancePlan
    servers: ServerPlan
    load_balancer: bool                   # virtual servers, groups or global settings changed
    mail: bool                            # global_defs changed (smtp_*, router_id, ...)
    unchanged: bool                       # the two models are equal
    bgp: BgpPlan = field(default_factory=BgpPlan)

    @property
    def removes_everything(self) -> bool:
        """Instances or pools ran before and none will after (an empty file)."""
        before = bool(self.old.vrrp_instances or self.old.virtual_servers)
        return before and not (self.new.vrrp_instances or self.new.virtual_servers)

    def describe(self) -> str:
        """For people (the reload event's note)."""
        parts = []
        if not self.servers.unchanged or self.servers.kept:
            parts.append("real servers: " + _counted(self.servers.counts()))
        if not self.instances.unchanged:
            parts.append("VRRP instances: " + _counted(self.instances.counts()))
        if not self.bgp.unchanged:
            bgp = (["engine (re)started"] if self.bgp.engine else []) + \
                ([f"peers: {_counted(self.bgp.counts())}"]
                 if any(self.bgp.counts().values()) else []) + \
                (["announcements recomputed"] if self.bgp.announcements else [])
            parts.append("BGP: " + ", ".join(bgp))
        if self.removes_everything:
            parts.append("the new file removes every VRRP instance and virtual server")
        return "; ".join(parts) or "applied"


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "none"


def plan(old: Any, new: Any, pause: Callable[[], None] = no_pause) -> ReloadPlan:
    """``pause`` is called between pieces of work (a daemon's loop runs there): comparing
    ten thousand real servers is tens of milliseconds."""
    servers_differ = _differ(old.virtual_servers, new.virtual_servers, pause)
    others_differ = any(getattr(old, f.name) != getattr(new, f.name)
                        for f in dataclasses.fields(old)
                        if f.compare and f.name != "virtual_servers")
    pools_differ = servers_differ and _differ(old.virtual_servers, new.virtual_servers, pause,
                                              without_bgp=True)
    return ReloadPlan(old, new, plan_instances(old, new), plan_servers(old, new, pause),
                      load_balancer=(pools_differ or
                                     old.virtual_server_groups != new.virtual_server_groups or
                                     old.global_defs != new.global_defs),
                      mail=old.global_defs != new.global_defs,
                      unchanged=not servers_differ and not others_differ,
                      bgp=plan_bgp(old, new))


def _differ(before: Sequence[Any], after: Sequence[Any], pause: Callable[[], None],
            without_bgp: bool = False) -> bool:
    """``without_bgp``: a virtual server that differs only in its bgp_announce is the same
    (to the load balancer)."""
    if len(before) != len(after):
        return True
    pool = None
    for one, other in zip(before, after):
        pause()
        if one != other:
            if not without_bgp:
                return True
            if pool is None:        # the fields but bgp_announce, read in one C call
                pool = operator.attrgetter(*(f.name for f in dataclasses.fields(one)
                                             if f.compare and f.name != "bgp_announce"))
            if pool(one) != pool(other):
                return True
    return False


def plan_bgp(old: Any, new: Any) -> BgpPlan:
    """The BGP part: peers by address, compared as the engine gets them (the block's
    defaults applied), the engine by its program, the announcements as configured."""
    from .bgp.announcer import announced, peers_of
    # a new description is no reason to drop a session (and move its flows)
    before = {peer.address: dataclasses.replace(peer, description=None)
              for peer in peers_of(old)}
    after = {peer.address: dataclasses.replace(peer, description=None)
             for peer in peers_of(new)}

    def engine(config: Any) -> tuple | None:
        return None if config.bgp is None else (config.bgp.engine, config.bgp.exabgp_command)

    return BgpPlan(engine=engine(old) != engine(new),
                   peers_added=tuple(a for a in after if a not in before),
                   peers_changed=tuple(a for a in after if a in before and
                                       before[a] != after[a]),
                   peers_removed=tuple(a for a in before if a not in after),
                   announcements=announced(old) != announced(new))


def plan_instances(old: Any, new: Any) -> InstancePlan:
    old_scripts = {script.name: script for script in old.vrrp_scripts}
    new_scripts = {script.name: script for script in new.vrrp_scripts}
    scripts = {name for name in old_scripts.keys() | new_scripts.keys()
               if old_scripts.get(name) != new_scripts.get(name)}
    running = {instance.name: instance for instance in old.vrrp_instances}
    # a VMAC's name also depends on vmac_prefix and on the other instances' names
    old_vmacs, new_vmacs = plan_vmacs(old), plan_vmacs(new)

    def same(instance: Any) -> bool:
        before = running.get(instance.name)
        return (before is not None and before == instance and
                effective_version(before, old.global_defs) ==
                effective_version(instance, new.global_defs) and
                old_vmacs.get(instance.name) == new_vmacs.get(instance.name) and
                strict_mode(before, old.global_defs) ==
                strict_mode(instance, new.global_defs) and
                blocks(before, old.global_defs, effective_version(before, old.global_defs)) ==
                blocks(instance, new.global_defs,
                       effective_version(instance, new.global_defs)) and
                fixed_by_globals(before, old.global_defs) ==
                fixed_by_globals(instance, new.global_defs) and
                not {track.name for track in instance.track_script} & scripts and
                tracking_signature(old, before) == tracking_signature(new, instance) and
                # an instance without an interface puts its VIPs on the default one
                (instance.interface is not None or old.global_defs.default_interface ==
                 new.global_defs.default_interface))

    names = [instance.name for instance in new.vrrp_instances]
    kept = tuple(instance.name for instance in new.vrrp_instances if same(instance))
    added = tuple(name for name in names if name not in running)
    changed = tuple(name for name in names if name in running and name not in kept)
    removed = tuple(name for name in running if name not in set(names))
    old_groups = {group.name: group for group in old.vrrp_sync_groups}
    new_groups = {group.name: group for group in new.vrrp_sync_groups}
    kept_set = set(kept)
    groups = tuple(sorted(
        name for name in old_groups.keys() | new_groups.keys()
        if old_groups.get(name) != new_groups.get(name) or
        (name in new_groups and any(member not in kept_set
                                    for member in new_groups[name].group))))
    return InstancePlan(kept, added, changed, removed, groups, tuple(sorted(scripts)),
                        old.global_defs.lvs_sync_daemon != new.global_defs.lvs_sync_daemon,
                        host_changed(old, new), firewall_settings(old) != firewall_settings(new))


def host_changed(old: Any, new: Any) -> bool:
    """What VrrpService applies beside its instances: static entries, link debounce and
    linkbeat."""
    from .vrrp.static import changes
    return changes(old, new) != ([], []) or any(
        getattr(old, name) != getattr(new, name)
        for name in ("interface_up_down_delays", "linkbeat_interfaces", "linkbeat_use_polling")
    ) or old.global_defs.linkbeat_use_polling != new.global_defs.linkbeat_use_polling


def servers_of(config: Any, pause: Callable[[], None] = no_pause
               ) -> dict[ServerKey, tuple[Any, Any]]:
    """Every real server of a configuration by its identity, in the file's order."""
    servers = {}
    for virtual in config.virtual_servers:
        pause()
        name = virtual_server_name(virtual)           # once per virtual server: it costs
        for real in virtual.real_servers:
            servers[(name, real.address, real.port)] = (virtual, real)
    return servers


def check_signature(config: Any, virtual: Any, real: Any, virtual_name: str = "") -> tuple:
    """Everything a real server's checkers are built from (each kind declares what it takes
    beyond its block, its settings and its target: Kind.inputs): equal signatures across a
    reload mean the same checks, so the server keeps its jobs, up/down state and counters."""
    # the checkers' settings and targets load with the first real server: a VRRP-only
    # start-up (its instances are planned here too) does not wait for them
    from .check.base import make_target, resolve_settings
    from .check.kinds import kind
    names = (virtual_name or virtual_server_name(virtual), real_server_name(real))
    signature = []
    for block in real.checkers:
        declared = kind(block.kind)
        if not declared.runs:                 # parsed, never run (BFD_CHECK)
            continue
        settings = resolve_settings(virtual, real, block,
                                    config.global_defs.checker_log_all_failures)
        signature.append((block, settings, make_target(virtual, real, block, settings, names),
                          declared.inputs(config, real, settings) if declared.inputs else None))
    return tuple(signature)


def plan_servers(old: Any, new: Any, pause: Callable[[], None] = no_pause) -> ServerPlan:
    before, after = servers_of(old, pause), servers_of(new, pause)
    kept, added, changed = [], [], []
    for key, (virtual, real) in after.items():
        pause()
        previous = before.get(key)
        if previous is None:
            added.append(key)
        elif check_signature(old, *previous, key[0]) == \
                check_signature(new, virtual, real, key[0]):
            kept.append(key)
        else:
            changed.append(key)
    removed = tuple(key for key in before if key not in after)
    return ServerPlan(tuple(kept), tuple(added), tuple(changed), removed, after)
