"""The VRRP subsystem: builds the instances of a configuration, opens one socket per
interface and family, wires sync groups and tracking; the receive path (receivers, checks,
drops) is receiving.py's."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

from .. import hub
from ..clock import Clock
from ..notify import Notifier
from ..config.validate import effective_version, instance_family
from ..log import event as log_event
from . import ah, carry, fsm, quickstart, wire
from .addresses import Addresses
from .firewall import Firewall, settings as firewall_settings
from .static import StaticSetup
from .instance import Instance
from .lvs_sync import SyncDaemons, configured
from .notices import VrrpNotices
from .dynamic import InterfaceWaiter, interface_present
from .promote import PromoteSecondaries
from .garp_pacing import Pacer
from .packet import PROTOCOL
from .receiving import ReceivePath, Receiving
from .sync import SyncGroup
from .file_tracking import FileWatcher
from .process_monitor import ProcessMonitor
from .process_tracking import NO_LIMIT, ProcessSpec
from .source_watch import SourceWatcher
from .tracked import tracked_for
from .link import linkbeat_interfaces
from .tracking import InterfaceWatcher, ScriptRunner, Tracked, Tracker
from .transport import LocalIgmp, VrrpSocket
from . import early
from .vmac import InstanceLinks, plan as plan_vmacs
from .vmac_links import VmacLinks, link_state

if TYPE_CHECKING:
    from ..state import VrrpView

log = logging.getLogger("director.vrrp")


class Prepared:
    """A reload's VRRP part with everything that can fail done: the new instances built
    (not started) and the sockets they need opened. ``abandon()`` undoes it."""

    def __init__(self, plan: Any, config: Any) -> None:
        self.plan = plan                        # reconcile.InstancePlan
        self.config = config
        self.instances: list[Instance] = []
        self.opened: dict[tuple, VrrpSocket] = {}
        self.waiting: list[tuple[str, str]] = []   # (instance, interface): dynamic_interfaces
        self.vmacs: dict[str, InstanceLinks] = {}     # of every instance of the new file
        self.made: list[str] = []                     # VMAC interfaces made for it
        self.vmac_links: VmacLinks | None = None
        self.held: set[str] = set()          # our VMACs it may replace: not polled meanwhile
        self.watcher: InterfaceWatcher | None = None
        # Our VMACs the new file defines otherwise: replaced by apply, once the instances
        # advertising on them have gone (not here: a reload refused after it would have
        # changed them, and their instances' adverts meanwhile failed with ENODEV), and
        # the instances whose sockets apply opens then, with those sockets' keys.
        self.replace: list[Any] = []
        self.deferred: list[tuple[Instance, list[tuple]]] = []

    def release(self) -> None:
        if self.watcher is not None:
            self.watcher.held -= self.held
        self.held = set()

    def abandon(self) -> None:
        for sock in self.opened.values():
            sock.close()
        self.opened.clear()
        for name in self.made:
            self.vmac_links.remove(name)
        self.made.clear()
        self.release()


class VrrpService(ReceivePath):
    def __init__(self, config: Any, clock: Clock, announcer: Any,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = clock
        self.announcer = Pacer(announcer, clock)   # garp_interval / gna_interval per interface
        self.startup_hold_until: float | None = None   # vrrp_startup_delay, set by start()
        self.local_igmp: LocalIgmp | None = None
        self.notifier = notifier or Notifier(
            config.global_defs.script_user,
            script_security=config.global_defs.enable_script_security)
        self.addresses = Addresses()
        self.static = StaticSetup(self.addresses)
        self.promote = PromoteSecondaries()
        self.promoted: set[str] = set()          # instances holding promote_secondaries
        self.waiter = InterfaceWaiter(self._start_late, self._interface_ready)
        self.vmac_links = VmacLinks(self.addresses)
        self.vmac_guard: hub.Greenlet | None = None
        self.sockets: dict[tuple, VrrpSocket] = {}
        self.instances: list[Instance] = []
        self.sync_groups: list[SyncGroup] = []
        self.interface_watcher = InterfaceWatcher()
        self.source_watcher = SourceWatcher()        # track_src_ip
        self.scripts: dict[str, ScriptRunner] = {}
        self.files = FileWatcher()
        self.processes = ProcessMonitor(clock)
        self.started = False
        self.dropped: dict[tuple[str, str], int] = {}     # (interface, reason) -> count
        self.greenlets: list[hub.Greenlet] = []
        self.receivers: dict[tuple, hub.Greenlet] = {}
        self.receiving: dict[tuple, Receiving] = {}
        self.trackers: dict[str, Tracker] = {}
        self.lvs_sync: SyncDaemons | None = None
        self.firewall = Firewall()
        self.notices = VrrpNotices(self.notifier, lambda: self.config)
        # called with each instance / sync group built, at start and on reload (the daemon's
        # events); register before start()
        self.on_new_instance: list = []
        self.on_new_sync_group: list = []
        self.role_kept: set[str] = set()     # by the last reload: carried, no transition
        self.quick_taken: set[str] = set()   # during start(): owners up since exec

    def start(self) -> None:
        """Start-up is a reload from nothing: every instance and sync group is new."""
        from ..reconcile import InstancePlan
        from ..process import netlink_buffer
        self.addresses.receive_buffer = netlink_buffer(self.config, "vrrp")
        self.addresses.open()
        config = self.config
        self.static.start(config)
        self._start_wire(config.global_defs)
        plan = InstancePlan(added=tuple(i.name for i in config.vrrp_instances),
                            sync_groups=tuple(g.name for g in config.vrrp_sync_groups))
        self.quick_taken = quickstart.QUICK.hand_over()     # their VIPs are no leftovers
        self.apply(self.prepare(plan, config))
        for instance in self.instances:
            instance.quick_taken = instance.name in self.quick_taken
        self.quick_taken = set()
        early.replay(early.CAPTURE, self.sockets, self.instances, self._dispatch,
                     self.clock.now())

    def _start_wire(self, defs) -> None:
        """Start-up only, as keepalived: the start-up hold and disable_local_igmp."""
        now = self.clock.now()          # once: the delay logged is the one configured
        self.startup_hold_until = wire.startup_hold(defs, now, wire.read_uptime())
        if self.startup_hold_until is not None:
            log_event(log, "vrrp.startup_delay",
                      seconds=round(self.startup_hold_until - now, 3))
        if defs.disable_local_igmp:
            self.local_igmp = LocalIgmp()
            try:
                self.local_igmp.disable()
            except OSError as exc:
                log_event(log, "vrrp.local_igmp_error", logging.WARNING, error=exc)

    def _configure_lvs_sync(self) -> None:
        """The IPVS sync daemons follow their instance (started, reconfigured on a reload
        that changed them, stopped when the configuration no longer asks for them)."""
        setting = configured(self.config)
        if setting is None:
            if self.lvs_sync is not None:
                self.lvs_sync.stop()
                self.lvs_sync = None
            return
        instance = next((i for i in self.instances if i.name == setting.instance), None)

        def role_of(name: str = setting.instance) -> str | None:
            found = next((i for i in self.instances if i.name == name), None)
            return None if found is None or found.state is None else found.state.role

        vrid = instance.config.virtual_router_id if instance is not None else 0
        if self.lvs_sync is None:
            self.lvs_sync = SyncDaemons(setting, role_of, vrid)
            self.lvs_sync.start()
        else:
            self.lvs_sync.configure(setting, role_of, vrid)
        if instance is not None and self.lvs_sync.role_changed not in instance.listeners:
            instance.listeners.append(self.lvs_sync.role_changed)

    @staticmethod
    def _socket_keys(config, defs, links: InstanceLinks | None = None,
                     primary: str | None = None) -> list[tuple]:
        """(interface, family, source, IP protocol, multicast group) of the sockets an
        instance needs, the one it sends on first. Adverts go through the VMAC (or the base
        with vmac_xmit_base); a VMAC's socket is bound to the source (the base's primary
        address, or the ipvlan's): the kernel would pick a VIP on it, and the VRRPv3 checksum
        covers the source. An AH instance also listens for plain VRRP: a peer without AH is
        then counted (auth_type_mismatch) rather than unheard. The group is the one joined
        (mcast_dst_ip or the global), None for unicast; last, the VRF a unicast instance
        without an interface binds to (vrf)."""
        source = config.unicast_src_ip or config.mcast_src_ip
        family = instance_family(config)
        group = None if config.unicast_peer else wire.multicast_group(config, defs, family)
        vrf = None if config.interface else config.vrf
        if links is None or links.xmit_base:
            base = (config.interface, family, source)
        else:
            base = (links.advert_interface, family, source or primary)
        auth = config.authentication
        if auth is not None and auth.auth_type == "AH" and \
                ah.applies(effective_version(config, defs), family):
            return [base + (ah.PROTOCOL, group, vrf), base + (PROTOCOL, group, vrf)]
        return [base + (PROTOCOL, group, vrf)]

    def prepare(self, plan: Any, config: Any) -> Prepared:
        """Everything of a reload that can fail, before anything changes: the sockets of
        the starting instances opened (their interfaces must exist), the instances built.
        Raises with nothing changed (what it opened is closed again)."""
        prepared = Prepared(plan, config)
        prepared.vmacs, prepared.vmac_links = plan_vmacs(config), self.vmac_links
        by_name = {item.name: item for item in config.vrrp_instances}
        defs = config.global_defs
        try:
            for name in plan.starting:
                item = by_name[name]
                if defs.dynamic_interfaces and item.interface and \
                        not interface_present(item.interface):
                    prepared.waiting.append((name, item.interface))
                    continue
                links = prepared.vmacs.get(name)
                remade = False          # one of ours replaced: sockets bound to it are dead
                deferred = False        # one of ours to replace in apply (Prepared.replace)
                for link in links.all if links else ():
                    ours = link.name in self.vmac_links.owned
                    if ours:
                        prepared.watcher = self.interface_watcher
                        prepared.held.add(link.name)
                        self.interface_watcher.held.add(link.name)
                        if self.vmac_links.stale(link):
                            prepared.replace.append(link)
                            deferred = True
                            continue
                    remade = self.vmac_links.ensure(link) and ours or remade
                    if not ours:
                        prepared.made.append(link.name)
                family = instance_family(item)
                primary = (links and links.source) or \
                    self.addresses.primary_address(item.interface, family)
                keys = self._socket_keys(item, defs, links, primary)
                for key in keys if not deferred else ():
                    if key not in prepared.opened and (remade or key not in self.sockets):
                        prepared.opened[key] = VrrpSocket(*key).open()
                sock = None if deferred else \
                    prepared.opened.get(keys[0]) or self.sockets[keys[0]]
                instance = Instance(item, defs, effective_version(item, defs), family,
                                    self.clock, self.addresses, self.announcer, sock)
                if deferred:
                    prepared.deferred.append((instance, keys))
                instance.vmac, instance.socket_keys = links, keys
                before = next((old for old in self.instances if old.name == name), None)
                if before is not None:          # keepalived keeps the AH counter on reload
                    instance.ah_sequence = before.ah_sequence
                instance.prepare(primary or ("0.0.0.0" if family == 4 else "::"))
                instance.firewall = self.firewall
                if self.startup_hold_until is not None and \
                        self.startup_hold_until > self.clock.now():
                    instance.startup_hold_until = self.startup_hold_until
                prepared.instances.append(instance)
            # last: nft's transaction either made the tables or changed nothing
            self.firewall.install(firewall_settings(config))
        except Exception:
            prepared.abandon()
            raise
        return prepared

    def _replace_vmacs(self, prepared: Prepared) -> None:
        """Our VMACs the new file defines otherwise, replaced now that the instances that
        advertised on them have gone, and their successors' sockets opened on the new
        ones. An error here fails the apply, which the daemon rolls back."""
        for link in prepared.replace:
            self.vmac_links.ensure(link)
        prepared.replace = []
        for instance, keys in prepared.deferred:
            for key in keys:
                if key not in prepared.opened:
                    prepared.opened[key] = VrrpSocket(*key).open()
            instance.sender = prepared.opened[keys[0]]
        prepared.deferred = []

    def apply(self, prepared: Prepared, timeout: float = 2.0) -> dict[str, int]:
        """Apply a prepared reload. A kept instance runs on untouched: no transition, no
        missed advert. A changed one that is still the same router carries its role to
        its successor (vrrp/carry.py). A going one leaves as on stop (priority 0 from a
        master, VIPs removed); a starting one starts as at start-up. Sync groups that
        changed, or whose members restarted, are rebuilt."""
        plan, config = prepared.plan, prepared.config
        group_states = {}
        for sync in [group for group in self.sync_groups if group.name in plan.sync_groups]:
            sync.detach()
            self.sync_groups.remove(sync)
            self.notices.pending_groups.pop(sync.name, None)
            group_states[sync.name] = sync.last_state
        successors = {instance.name: instance for instance in prepared.instances}
        carried = {old.name: old for old in self.instances if old.name in plan.changed and
                   old.name in successors and carry.carries(old, successors[old.name].config)}
        carry.retire(list(carried.values()), timeout)
        announce = {name: carry.hand_over(old, successors[name])
                    for name, old in carried.items()}
        for old in carried.values():
            self._forget(old, notices=False)    # what it told stays (sync group notices)
        going = [instance for instance in self.instances if instance.name in plan.going]
        self.notices.deleting = set(plan.removed)
        roles = {instance.name: instance.state.role for instance in going}
        for instance in going:
            instance.post(fsm.Shutdown())
        hub.joinall([instance.greenlet for instance in going if instance.greenlet],
                    timeout=timeout)
        for instance in going:
            if instance.name in self.notices.deleting:
                self.notices.deleted(instance, roles[instance.name])
            self._forget(instance)
        self.notices.deleting = set()
        self.vmac_links.keep_only({link.name for links in prepared.vmacs.values()
                                   for link in links.all})
        prepared.made = []                      # theirs now: no abandon() removes them
        for name in set(plan.scripts) & self.scripts.keys():   # only going instances used them
            self.scripts.pop(name).stop()
        self.static.apply(self.config, config)
        self.config = config
        self.interface_watcher.delays = {item.interface: (item.down, item.up)
                                         for item in config.interface_up_down_delays}
        self.interface_watcher.linkbeat = linkbeat_interfaces(config)
        self.announcer.configure(config)
        for instance in self.instances:                 # kept: global settings apply at once
            instance.global_defs = config.global_defs
        for runner in self.scripts.values():
            runner.configure(config.global_defs.script_user,
                             config.global_defs.enable_script_security)
        self._replace_vmacs(prepared)
        for key in prepared.opened.keys() & self.sockets.keys():   # its VMAC was remade
            receiver = self.receivers.pop(key, None)
            if receiver is not None:
                receiver.kill(block=False)
            self.sockets.pop(key).close()
        self.sockets.update(prepared.opened)
        prepared.opened = {}
        # dynamic_interfaces: an instance started late between this reload's prepare and
        # now (the waiter runs in its own greenlet) is not started twice
        running = {instance.name for instance in self.instances}
        added = [instance for instance in prepared.instances if instance.name not in running]
        self.instances.extend(added)
        order = {item.name: index for index, item in enumerate(config.vrrp_instances)}
        self.instances.sort(key=lambda instance: order[instance.name])
        for instance in added:
            # a kept MASTER's VIPs are not leftovers, nor those of the quick start's owners
            if instance.name not in carried and instance.name not in self.quick_taken:
                self._remove_leftovers(instance)
            if instance.config.promote_secondaries and \
                    self.promote.acquire(instance.config.interface, instance.name):
                self.promoted.add(instance.name)
        self._configure_watchers()
        self._wire_tracking(added)
        self._build_sync_groups([group for group in config.vrrp_sync_groups
                                 if group.name in plan.sync_groups],
                                group_states, set(plan.kept) | carried.keys())
        for instance in added:
            self._listen(instance)
        self._update_receivers()
        self.greenlets = [g for g in self.greenlets if not g.dead]
        prepared.release()          # the replaced VMACs' instances have gone: poll them again
        self.role_kept = set()
        for instance in added:
            if instance.name in plan.changed and \
                    carry.resume(instance, carried.get(instance.name), announce):
                self.role_kept.add(instance.name)
            self.greenlets.append(instance.start())
        if self.interface_watcher.greenlet is None:
            self.interface_watcher.start()
        self.source_watcher.start()
        for watcher, needed in ((self.files, self.files.paths),
                                (self.processes, self.processes.quorums)):
            if needed:
                watcher.start()
            else:
                watcher.stop()
        self.started = True
        if self.vmac_guard is None and self.vmac_links.owned:
            self.vmac_guard = hub.supervise(self._guard_vmacs, name="vrrp vmac guard")
        for name, runner in list(self.scripts.items()):
            if not runner.subscribers:          # no instance tracks it any more
                runner.stop()
                del self.scripts[name]
            elif runner.greenlet is None:
                runner.start()
        self._configure_lvs_sync()
        self.waiter.keep_only({item.name for item in config.vrrp_instances})
        for name, ifname in prepared.waiting:
            self.waiter.wait(name, ifname)
        counts = plan.counts()
        log_event(log, "vrrp.applied", **counts, carried=len(carried),
                  restarted=len(plan.changed) - len(carried))
        return counts

    def _interface_ready(self, name: str) -> bool:
        item = next((i for i in self.config.vrrp_instances if i.name == name), None)
        if item is None or not interface_present(item.interface):
            return item is None             # gone: start_late skips it
        return bool(item.unicast_src_ip or item.mcast_src_ip or
                    self.addresses.primary_address(item.interface, instance_family(item)))

    def _start_late(self, names: tuple[str, ...]) -> None:
        """dynamic_interfaces: instances whose interface appeared start as a reload starts
        an added instance; their sync groups are rebuilt with them."""
        from ..reconcile import InstancePlan
        running = {instance.name for instance in self.instances}
        configured = {item.name for item in self.config.vrrp_instances}
        names = tuple(name for name in names if name not in running and name in configured)
        groups = tuple(group.name for group in self.config.vrrp_sync_groups
                       if set(group.group) & set(names))
        try:
            self.apply(self.prepare(InstancePlan(added=names, sync_groups=groups), self.config))
        except Exception as exc:         # the interface went again, say: wait on
            log_event(log, "vrrp.late_start_error", logging.ERROR, instances=",".join(names),
                      error=exc)
            interfaces = {item.name: item.interface for item in self.config.vrrp_instances}
            for name in names:
                self.waiter.wait(name, interfaces[name])

    def _build_sync_groups(self, groups, before: Mapping[str, str] | None = None,
                           going_on: set[str] = frozenset()) -> None:
        """``before``: the rebuilt groups' states; a group whose members all run on (kept,
        or their role carried) takes it over, so that it notifies only a real change."""
        by_name = {instance.name: instance for instance in self.instances}
        for group in groups:
            sync = SyncGroup(group.name, [by_name[name] for name in group.group
                                          if name in by_name])
            if before and group.name in before and set(group.group) <= going_on:
                sync.last_state = before[group.name]
            sync.attach()
            sync.listeners.append(lambda sync, state, config=group:
                                  self.notices.group_changed(sync, config, state))
            for callback in self.on_new_sync_group:
                callback(sync)
            self.sync_groups.append(sync)

    def _listen(self, instance: Instance) -> None:
        instance.listeners.append(self.notices.transition)
        instance.notices.append(self.notices.noticed)
        for callback in self.on_new_instance:
            callback(instance)

    def _forget(self, instance: Instance, notices: bool = True) -> None:
        self.instances.remove(instance)
        self._unpromote(instance)
        if notices:
            self.notices.forget(instance.name)
        tracker = self.trackers.pop(instance.name, None)
        if tracker is not None:
            self.source_watcher.forget(tracker)
            for trackers in self.interface_watcher.subscribers.values():
                if tracker in trackers:
                    trackers.remove(tracker)
            for runner in self.scripts.values():
                if tracker in runner.subscribers:
                    runner.subscribers.remove(tracker)
            self.files.unsubscribe(tracker.update_file)
            self.processes.unsubscribe(tracker.update_process)

    def _unpromote(self, instance: Instance) -> None:
        if instance.name in self.promoted:
            self.promoted.discard(instance.name)
            self.promote.release(instance.config.interface, instance.name)

    def _remove_leftovers(self, instance: Instance) -> None:
        """VIPs of ours that a crashed earlier run left behind go before we start as BACKUP
        (keepalived's users ask for this: a stale VIP answers ARP for the real master)."""
        for vip in instance.vips():
            try:
                if self.addresses.present(vip, instance.vip_interface):
                    self.addresses.remove(vip, instance.vip_interface)
                    log_event(log, "vrrp.leftover_removed", instance=instance.name,
                              address=vip.address)
            except OSError as exc:
                log_event(log, "vrrp.address_error", logging.ERROR, instance=instance.name,
                          address=vip.address, action="remove leftover", error=exc)

    def _configure_watchers(self) -> None:
        """The track_files and vrrp_track_processes some instance tracks (keepalived forgets
        the others), before the instances subscribe to them."""
        used: set[str] = set()
        for item in self.config.vrrp_instances:
            used.update(t.key for t in tracked_for(self.config, item)[0])
        self.files.configure([f for f in self.config.track_files if f"file {f.name}" in used],
                             reload=self.started)
        self.processes.configure([ProcessSpec.of(p) for p in self.config.vrrp_track_processes
                                  if f"process {p.name}" in used])
        self.processes.set_buffer(self.config.global_defs.process_monitor_rcv_bufs,
                                  self.config.global_defs.process_monitor_rcv_bufs_force)
    def _guard_vmacs(self, period: float = 1.0) -> None:
        """keepalived makes a VMAC deleted behind its back again. The instance went FAULT
        meanwhile (it tracks its VMAC, polled ten times as often); the new interface clears
        that, and the sockets bound to the old one are renewed."""
        while True:
            hub.sleep(period)
            for instance in list(self.instances):
                gone = [link for link in (instance.vmac.all if instance.vmac else ())
                        if link_state(link.name)[0] is None]
                if not gone:
                    continue
                try:
                    remade = {link.name for link in gone
                              if self.vmac_links.ensure(link, restore=True)}
                    for key in instance.socket_keys:
                        if key[0] in remade:
                            self._renew_socket(key)
                except OSError as exc:
                    log_event(log, "vrrp.vmac_error", logging.ERROR, instance=instance.name,
                              action="remake", error=exc)

    def _wire_tracking(self, instances: list[Instance]) -> None:
        scripts = {script.name: script for script in self.config.vrrp_scripts}
        for instance in instances:
            tracked, _ = tracked_for(self.config, instance.config)
            if instance.vmac and not instance.config.dont_track_primary:
                # keepalived tracks an instance's VMAC / ipvlan as it tracks its interface:
                # one set down (or deleted) behind our back is a FAULT, not a MASTER
                # advertising VIPs that nobody can reach
                tracked.append(Tracked(f"interface {instance.vmac.primary.name}", None))
            source = instance.config.unicast_src_ip or instance.config.mcast_src_ip
            if instance.config.track_src_ip and source:
                tracked.append(Tracked(f"source {source}", None))
            tracker = Tracker(instance, tracked)
            self.trackers[instance.name] = tracker
            if instance.config.track_src_ip and source:
                self.source_watcher.watch(source, instance.config.interface, tracker)
            for item in tracked:
                kind, name = item.key.split(" ", 1)
                if kind == "interface":
                    self.interface_watcher.watch(name, tracker)
                elif kind == "file":
                    self.files.subscribe(name, tracker.update_file)
                elif kind == "process":
                    self.processes.subscribe(name, tracker.update_process)
                elif kind == "script":
                    if name not in self.scripts:
                        self.scripts[name] = ScriptRunner(
                            scripts[name], self.config.global_defs.script_user,
                            self.config.global_defs.enable_script_security)
                    self.scripts[name].subscribers.append(tracker)
                    if self.scripts[name].greenlet is not None:    # running: say where
                        tracker.update(f"script {name}", self.scripts[name].fine)   # it is

    def stop(self, timeout: float = 2.0) -> None:
        """Every instance leaves (priority 0 from masters, VIPs removed), then the rest."""
        self.interface_watcher.stop()
        self.waiter.stop()
        self.source_watcher.stop()
        self.files.stop()
        self.processes.stop()
        for runner in self.scripts.values():
            runner.stop()
        for instance in self.instances:
            instance.post(fsm.Shutdown())
        hub.joinall([i.greenlet for i in self.instances if i.greenlet], timeout=timeout)
        for instance in self.instances:
            self._unpromote(instance)
        self.firewall.stop()
        if self.lvs_sync is not None:
            self.lvs_sync.stop()
        self.notifier.wait(timeout=1.0)
        hub.killall(self.greenlets + list(self.receivers.values()) +
                    ([self.vmac_guard] if self.vmac_guard else []), block=False)
        for sock in self.sockets.values():
            sock.close()
        self.static.apply(self.config, None)
        self.announcer.close()
        if self.local_igmp is not None:
            try:
                self.local_igmp.restore()
            except OSError as exc:
                log_event(log, "vrrp.local_igmp_error", logging.WARNING, error=exc)
        self.vmac_links.keep_only(set())
        self.addresses.close()

    def snapshot(self) -> VrrpView:
        """Its instances (each with the sync group it is in), the sync groups, the IPVS sync
        daemon and the packets dropped before any instance knew them."""
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import VrrpView, frozen
        group_of = {member.name: group.name
                    for group in self.sync_groups for member in group.members}
        tracking = {name: tracker.snapshot(self._tracked_detail)
                    for name, tracker in self.trackers.items()}
        return VrrpView(
            tuple(replace(instance.snapshot(group_of.get(instance.name)),
                          tracking=tracking.get(instance.name, ()))
                  for instance in self.instances),
            tuple(replace(group.snapshot(), tracking=self._group_tracking(group, tracking))
                  for group in self.sync_groups),
            None if self.lvs_sync is None else self.lvs_sync.snapshot(),
            self.dropped_view(), self.processes.snapshot(), self.firewall.snapshot(),
            frozen(self.waiter.waiting), self.static.errors)

    def _tracked_detail(self, kind: str, name: str) -> dict:
        if kind == "process" and name in self.processes.quorums:
            spec = self.processes.quorums[name].spec
            quorum = str(spec.quorum) if spec.quorum_max >= NO_LIMIT else \
                f"{spec.quorum}..{spec.quorum_max}"
            return {"running": self.processes.quorums[name].count, "quorum": quorum}
        if kind == "file":
            return {"path": self.files.paths.get(name)}
        return {}

    def _group_tracking(self, group: SyncGroup, tracking: dict) -> tuple:
        """A sync group's own track_* lines, as its first member sees them."""
        config = next((g for g in self.config.vrrp_sync_groups if g.name == group.name), None)
        if config is None or not group.members:
            return ()
        keys = {("interface", t.name) for t in config.track_interface} | \
            {(kind, t.name) for kind in ("script", "file", "process")
             for t in getattr(config, f"track_{kind}")}
        return tuple(view for view in tracking.get(group.members[0].name, ())
                     if (view.kind, view.name) in keys)
