"""The VRRP subsystem: builds the instances of a configuration, opens one socket per
interface and family, receives and dispatches adverts, and wires sync groups and tracking."""

from __future__ import annotations

import logging
from typing import Any

from .. import hub
from ..clock import Clock
from ..notify import Notifier
from ..config.validate import effective_version, instance_family
from ..log import event as log_event
from . import fsm
from .addresses import Addresses
from .instance import Instance
from .packet import Dropped, check_received
from .sync import SyncGroup
from .tracking import InterfaceWatcher, ScriptRunner, Tracked, Tracker
from .transport import VrrpSocket

log = logging.getLogger("director.vrrp")


class VrrpService:
    def __init__(self, config: Any, clock: Clock, announcer: Any,
                 notifier: Notifier | None = None) -> None:
        self.config = config
        self.clock = clock
        self.announcer = announcer
        self.notifier = notifier or Notifier(config.global_defs.script_user)
        self.addresses = Addresses()
        self.sockets: dict[tuple, VrrpSocket] = {}
        self.members: dict[tuple, dict[int, Instance]] = {}
        self.instances: list[Instance] = []
        self.sync_groups: list[SyncGroup] = []
        self.interface_watcher = InterfaceWatcher()
        self.scripts: dict[str, ScriptRunner] = {}
        self.dropped: dict[tuple[str, str], int] = {}     # (interface, reason) -> count
        self.greenlets: list[hub.Greenlet] = []

    def start(self) -> None:
        self.addresses.open()
        defs = self.config.global_defs
        for config in self.config.vrrp_instances:
            family = instance_family(config)
            key = (config.interface, family, config.unicast_src_ip or config.mcast_src_ip)
            sock = self.sockets.get(key)
            if sock is None:
                sock = VrrpSocket(key[0], family, key[2]).open()
                self.sockets[key] = sock
                self.members[key] = {}
            instance = Instance(config, defs, effective_version(config, defs), family,
                                self.clock, self.addresses, self.announcer, sock)
            primary = self.addresses.primary_address(config.interface, family) or \
                ("0.0.0.0" if family == 4 else "::")
            instance.prepare(primary)
            self.members[key][config.virtual_router_id] = instance
            self.instances.append(instance)
            self._remove_leftovers(instance)
        self._wire_tracking()
        by_name = {instance.name: instance for instance in self.instances}
        for group in self.config.vrrp_sync_groups:
            sync = SyncGroup(group.name, [by_name[name] for name in group.group
                                          if name in by_name])
            sync.attach()
            sync.listeners.append(lambda sync, state, config=group:
                                  self._notify(config, "GROUP", sync.name, state, None))
            self.sync_groups.append(sync)
        for instance in self.instances:
            instance.listeners.append(
                lambda instance, transition: self._notify(
                    instance.config, "INSTANCE", instance.name, transition.new,
                    instance.state.priority))
        for key, sock in self.sockets.items():
            self.greenlets.append(hub.spawn(self._receive, key, sock,
                                            name=f"vrrp receive {key[0]}/IPv{key[1]}"))
        for instance in self.instances:
            self.greenlets.append(instance.start())
        self.interface_watcher.start()
        for runner in self.scripts.values():
            runner.start()

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

    def _wire_tracking(self) -> None:
        scripts = {script.name: script for script in self.config.vrrp_scripts}
        for instance in self.instances:
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
            for ifname in {config.interface} | {t.name for t in config.track_interface}:
                if ifname != config.interface or not config.dont_track_primary:
                    self.interface_watcher.watch(ifname, tracker)
            for item in config.track_script:
                if item.name not in self.scripts:
                    self.scripts[item.name] = ScriptRunner(
                        scripts[item.name], self.config.global_defs.script_user)
                runner = self.scripts[item.name]
                runner.subscribers.append(tracker)

    def _receive(self, key: tuple, sock: VrrpSocket) -> None:
        members = self.members[key]
        expectations = {vrid: instance.expectation() for vrid, instance in members.items()}
        while True:
            try:
                message, source, destination, ttl = sock.receive()
            except OSError as exc:
                log_event(log, "vrrp.receive_error", logging.WARNING, interface=key[0],
                          error=exc)
                hub.sleep(0.1)
                continue
            outcome = check_received(message, key[1], source, destination, ttl, expectations)
            instance = members.get(outcome.vrid if isinstance(outcome, Dropped)
                                   else outcome.advert.vrid)
            if isinstance(outcome, Dropped):
                self._count_drop(key[0], instance, outcome, source)
                continue
            for note in outcome.notes:
                instance.counters.noted[note] = instance.counters.noted.get(note, 0) + 1
            advert = outcome.advert
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
        self.notifier.wait(timeout=1.0)
        hub.killall(self.greenlets, block=False)
        for sock in self.sockets.values():
            sock.close()
        self.addresses.close()

    def snapshot(self) -> dict:
        return {"instances": [instance.snapshot() for instance in self.instances],
                "sync_groups": [group.snapshot() for group in self.sync_groups],
                "dropped_by_interface": {f"{i}/{r}": n for (i, r), n in self.dropped.items()}}
