"""The VRRP subsystem: builds the instances of a configuration, opens one socket per
interface and family, receives and dispatches adverts, and wires sync groups and tracking."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from .. import hub
from ..clock import Clock
from ..notify import Notifier
from ..config.validate import effective_version, instance_family
from ..log import event as log_event
from . import fsm
from .addresses import Addresses
from .instance import Instance
from .lvs_sync import SyncDaemons, configured
from .packet import VRID, Dropped, Expectation, check_received
from .sync import SyncGroup
from .tracking import InterfaceWatcher, ScriptRunner, Tracked, Tracker
from .transport import VrrpSocket

if TYPE_CHECKING:
    from ..state import VrrpView

log = logging.getLogger("director.vrrp")


class Receiving(NamedTuple):
    """What one socket's receiver dispatches to. Replaced whole by a reload (one assignment,
    no yield between its parts), so a packet always meets members and expectations of the
    same moment: a vrid that left the one but not yet the other once killed the receiver
    and left every instance on its interface deaf. (A NamedTuple: a dataclass costs a
    millisecond of start-up to make.)"""
    members: dict[int, Instance]
    expectations: dict[int, Expectation]


class Prepared:
    """A reload's VRRP part with everything that can fail done: the new instances built
    (not started) and the sockets they need opened. ``abandon()`` undoes it."""

    def __init__(self, plan: Any, config: Any) -> None:
        self.plan = plan                        # reconcile.InstancePlan
        self.config = config
        self.instances: list[Instance] = []
        self.opened: dict[tuple, VrrpSocket] = {}

    def abandon(self) -> None:
        for sock in self.opened.values():
            sock.close()
        self.opened.clear()


class VrrpService:
    def __init__(self, config: Any, clock: Clock, announcer: Any,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = clock
        self.announcer = announcer
        self.notifier = notifier or Notifier(
            config.global_defs.script_user,
            script_security=config.global_defs.enable_script_security)
        self.addresses = Addresses()
        self.sockets: dict[tuple, VrrpSocket] = {}
        self.instances: list[Instance] = []
        self.sync_groups: list[SyncGroup] = []
        self.interface_watcher = InterfaceWatcher()
        self.scripts: dict[str, ScriptRunner] = {}
        self.dropped: dict[tuple[str, str], int] = {}     # (interface, reason) -> count
        self.greenlets: list[hub.Greenlet] = []
        self.receivers: dict[tuple, hub.Greenlet] = {}
        self.receiving: dict[tuple, Receiving] = {}
        self.trackers: dict[str, Tracker] = {}
        self.lvs_sync: SyncDaemons | None = None
        # called with each instance / sync group built, at start and on reload (the daemon's
        # events); register before start()
        self.on_new_instance: list = []
        self.on_new_sync_group: list = []

    def start(self) -> None:
        """Start-up is a reload from nothing: every instance and sync group is new."""
        from ..reconcile import InstancePlan
        from ..process import netlink_buffer
        self.addresses.receive_buffer = netlink_buffer(self.config, "vrrp")
        self.addresses.open()
        config = self.config
        plan = InstancePlan(added=tuple(i.name for i in config.vrrp_instances),
                            sync_groups=tuple(g.name for g in config.vrrp_sync_groups))
        self.apply(self.prepare(plan, config))

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
    def _socket_key(config) -> tuple:
        return (config.interface, instance_family(config),
                config.unicast_src_ip or config.mcast_src_ip)

    def prepare(self, plan: Any, config: Any) -> Prepared:
        """Everything of a reload that can fail, before anything changes: the sockets of
        the starting instances opened (their interfaces must exist), the instances built.
        Raises with nothing changed (what it opened is closed again)."""
        prepared = Prepared(plan, config)
        by_name = {item.name: item for item in config.vrrp_instances}
        defs = config.global_defs
        try:
            for name in plan.starting:
                item = by_name[name]
                key = self._socket_key(item)
                sock = self.sockets.get(key) or prepared.opened.get(key)
                if sock is None:
                    sock = prepared.opened[key] = VrrpSocket(*key).open()
                instance = Instance(item, defs, effective_version(item, defs), key[1],
                                    self.clock, self.addresses, self.announcer, sock)
                primary = self.addresses.primary_address(item.interface, key[1]) or \
                    ("0.0.0.0" if key[1] == 4 else "::")
                instance.prepare(primary)
                prepared.instances.append(instance)
        except Exception:
            prepared.abandon()
            raise
        return prepared

    def apply(self, prepared: Prepared, timeout: float = 2.0) -> dict[str, int]:
        """Apply a prepared reload. A kept instance runs on untouched: no transition, no
        missed advert. A going one leaves as on stop (priority 0 from a master, VIPs
        removed); a starting one starts as at start-up. Sync groups that changed, or whose
        members restarted, are rebuilt."""
        plan, config = prepared.plan, prepared.config
        for sync in [group for group in self.sync_groups if group.name in plan.sync_groups]:
            sync.detach()
            self.sync_groups.remove(sync)
        going = [instance for instance in self.instances if instance.name in plan.going]
        for instance in going:
            instance.post(fsm.Shutdown())
        hub.joinall([instance.greenlet for instance in going if instance.greenlet],
                    timeout=timeout)
        for instance in going:
            self._forget(instance)
        for name in set(plan.scripts) & self.scripts.keys():   # only going instances used them
            self.scripts.pop(name).stop()
        self.config = config
        for instance in self.instances:                 # kept: global settings apply at once
            instance.global_defs = config.global_defs
        for runner in self.scripts.values():
            runner.configure(config.global_defs.script_user,
                             config.global_defs.enable_script_security)
        self.sockets.update(prepared.opened)
        prepared.opened = {}
        added = prepared.instances
        self.instances.extend(added)
        order = {item.name: index for index, item in enumerate(config.vrrp_instances)}
        self.instances.sort(key=lambda instance: order[instance.name])
        for instance in added:
            self._remove_leftovers(instance)
        self._wire_tracking(added)
        self._build_sync_groups([group for group in config.vrrp_sync_groups
                                 if group.name in plan.sync_groups])
        for instance in added:
            self._listen(instance)
        self._update_receivers()
        self.greenlets = [g for g in self.greenlets if not g.dead]
        for instance in added:
            self.greenlets.append(instance.start())
        if self.interface_watcher.greenlet is None:
            self.interface_watcher.start()
        for name, runner in list(self.scripts.items()):
            if not runner.subscribers:          # no instance tracks it any more
                runner.stop()
                del self.scripts[name]
            elif runner.greenlet is None:
                runner.start()
        self._configure_lvs_sync()
        counts = plan.counts()
        log_event(log, "vrrp.applied", **counts)
        return counts

    def _build_sync_groups(self, groups) -> None:
        by_name = {instance.name: instance for instance in self.instances}
        for group in groups:
            sync = SyncGroup(group.name, [by_name[name] for name in group.group
                                          if name in by_name])
            sync.attach()
            sync.listeners.append(lambda sync, state, config=group:
                                  self._notify(config, "GROUP", sync.name, state, None))
            for callback in self.on_new_sync_group:
                callback(sync)
            self.sync_groups.append(sync)

    def _listen(self, instance: Instance) -> None:
        instance.listeners.append(
            lambda instance, transition: self._notify(
                instance.config, "INSTANCE", instance.name, transition.new,
                instance.state.priority))
        for callback in self.on_new_instance:
            callback(instance)

    def _update_receivers(self) -> None:
        """One receiver per socket; what each dispatches to follows the instances on it,
        replaced whole (Receiving). A socket left without instances closes."""
        by_key: dict[tuple, dict[int, Instance]] = {}
        for instance in self.instances:
            by_key.setdefault(self._socket_key(instance.config), {})[
                instance.config.virtual_router_id] = instance
        for key, sock in list(self.sockets.items()):
            members = by_key.get(key)
            if not members:                     # its last instance went in a reload
                self.receiving.pop(key, None)
                receiver = self.receivers.pop(key, None)
                if receiver is not None:
                    receiver.kill(block=False)
                sock.close()
                del self.sockets[key]
                continue
            self.receiving[key] = Receiving(
                members, {vrid: instance.expectation() for vrid, instance in members.items()})
            if key not in self.receivers:
                self.receivers[key] = hub.supervise(self._receive, key, sock,
                                                    name=f"vrrp receive {key[0]}/IPv{key[1]}")

    def _forget(self, instance: Instance) -> None:
        self.instances.remove(instance)
        tracker = self.trackers.pop(instance.name, None)
        if tracker is not None:
            for trackers in self.interface_watcher.subscribers.values():
                if tracker in trackers:
                    trackers.remove(tracker)
            for runner in self.scripts.values():
                if tracker in runner.subscribers:
                    runner.subscribers.remove(tracker)

    def _notify(self, config, kind: str, name: str, state: str, priority) -> None:
        """keepalived's scripts: notify_<state> as written, then ``notify`` with
        TYPE NAME STATE PRIORITY."""
        specific = {fsm.MASTER: config.notify_master, fsm.BACKUP: config.notify_backup,
                    fsm.FAULT: config.notify_fault, fsm.STOP: config.notify_stop}.get(state)
        if specific is not None:
            self.notifier.notify(specific, (), f"{kind.lower()} {name} {state}")
        if config.notify is not None:
            extra = (kind, name, state) + ((str(priority),) if priority is not None else ())
            self.notifier.notify(config.notify, extra, f"{kind.lower()} {name} {state}")

    def _remove_leftovers(self, instance: Instance) -> None:
        """VIPs of ours that a crashed earlier run left behind go before we start as BACKUP
        (keepalived's users ask for this: a stale VIP answers ARP for the real master)."""
        for vip in instance.vips():
            try:
                if self.addresses.present(vip, instance.config.interface):
                    self.addresses.remove(vip, instance.config.interface)
                    log_event(log, "vrrp.leftover_removed", instance=instance.name,
                              address=vip.address)
            except OSError as exc:
                log_event(log, "vrrp.address_error", logging.ERROR, instance=instance.name,
                          address=vip.address, action="remove leftover", error=exc)

    def _wire_tracking(self, instances: list[Instance]) -> None:
        scripts = {script.name: script for script in self.config.vrrp_scripts}
        for instance in instances:
            config = instance.config
            tracked = []
            if not config.dont_track_primary:
                tracked.append(Tracked(f"interface {config.interface}", None))
            for item in config.track_interface:
                tracked.append(Tracked(f"interface {item.name}", item.weight, item.reverse))
            for item in config.track_script:
                script = scripts[item.name]
                weight = item.weight if item.weight is not None else script.weight[0]
                reverse = item.reverse if item.weight is not None else script.weight[1]
                tracked.append(Tracked(f"script {item.name}", weight, reverse))
            tracker = Tracker(instance, tracked)
            self.trackers[instance.name] = tracker
            for ifname in {config.interface} | {t.name for t in config.track_interface}:
                if ifname != config.interface or not config.dont_track_primary:
                    self.interface_watcher.watch(ifname, tracker)
            for item in config.track_script:
                if item.name not in self.scripts:
                    self.scripts[item.name] = ScriptRunner(
                        scripts[item.name], self.config.global_defs.script_user,
                        self.config.global_defs.enable_script_security)
                runner = self.scripts[item.name]
                runner.subscribers.append(tracker)

    def _receive(self, key: tuple, sock: VrrpSocket) -> None:
        # Looked up per packet, not captured: a reload changes what is on this socket.
        while True:
            try:
                message, source, destination, ttl = sock.receive()
            except OSError as exc:
                log_event(log, "vrrp.receive_error", logging.WARNING, interface=key[0],
                          error=exc)
                hub.sleep(0.1)
                continue
            receiving = self.receiving.get(key)
            if receiving is None:               # the socket is closing
                continue
            outcome = check_received(message, key[1], source, destination, ttl,
                                     receiving.expectations)
            if isinstance(outcome, Dropped):
                self._count_drop(key[0], receiving.members.get(outcome.vrid), outcome, source)
                continue
            advert = outcome.advert
            instance = receiving.members.get(advert.vrid)
            if instance is None:                # expected but not a member: never, by design
                self._count_drop(key[0], None, Dropped(VRID, "no instance", advert.vrid),
                                 source)
                continue
            for note in outcome.notes:
                instance.counters.noted[note] = instance.counters.noted.get(note, 0) + 1
            instance.post(fsm.AdvertReceived(advert.priority, source, advert.advert_int))

    def _count_drop(self, ifname: str, instance: Instance | None, dropped: Dropped,
                    source: str) -> None:
        if instance is not None:
            counts = instance.counters.dropped
            counts[dropped.reason] = counts.get(dropped.reason, 0) + 1
        else:
            self.dropped[(ifname, dropped.reason)] = \
                self.dropped.get((ifname, dropped.reason), 0) + 1
        log_event(log, "vrrp.drop", logging.DEBUG, interface=ifname, source=source,
                  reason=dropped.reason, detail=dropped.detail)

    def stop(self, timeout: float = 2.0) -> None:
        """Every instance leaves (priority 0 from masters, VIPs removed), then the rest."""
        self.interface_watcher.stop()
        for runner in self.scripts.values():
            runner.stop()
        for instance in self.instances:
            instance.post(fsm.Shutdown())
        hub.joinall([i.greenlet for i in self.instances if i.greenlet], timeout=timeout)
        if self.lvs_sync is not None:
            self.lvs_sync.stop()
        self.notifier.wait(timeout=1.0)
        hub.killall(self.greenlets + list(self.receivers.values()), block=False)
        for sock in self.sockets.values():
            sock.close()
        self.addresses.close()

    def snapshot(self) -> VrrpView:
        """Its instances (each with the sync group it is in), the sync groups, the IPVS sync
        daemon and the packets dropped before any instance knew them."""
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import VrrpView
        group_of = {member.name: group.name
                    for group in self.sync_groups for member in group.members}
        return VrrpView(
            tuple(instance.snapshot(group_of.get(instance.name)) for instance in self.instances),
            tuple(group.snapshot() for group in self.sync_groups),
            None if self.lvs_sync is None else self.lvs_sync.snapshot(),
            self.dropped_view())

    def dropped_view(self) -> Mapping[tuple[str, str], int]:
        """(interface, reason) -> packets dropped on it that no instance of ours could be told
        of: undecodable, or for a vrid we do not run (the rest count on their instance)."""
        from ..state import frozen
        return frozen(self.dropped)
