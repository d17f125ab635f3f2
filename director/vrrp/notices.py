"""keepalived's VRRP notifications, in keepalived's order: the notify_* scripts, ``notify``
with TYPE NAME STATE PRIORITY, the FIFO line; a sync group after its members have said its new
state; DELETED / FAULT for what a reload removes; MASTER_RX_LOWER_PRI and the priority
changes. The VRRP service calls it from its instances' listeners."""

from __future__ import annotations

from typing import Any, Callable

from .. import hub
from ..notify_fifo import vrrp_line
from . import fsm

DELETED = "DELETED"         # notified for an instance a reload removes (notify_deleted)


class VrrpNotices:
    def __init__(self, notifier: Any, config: Callable[[], Any]) -> None:
        self.notifier = notifier
        self.config = config                    # the running configuration, when asked
        self.deleting: set[str] = set()         # instances a reload removes (notify_deleted)
        # what each instance's notifications said last, and the sync groups whose change
        # waits for their members' (keepalived tells the members first, then the group)
        self.told: dict[str, str] = {}
        self.pending_groups: dict[str, tuple[Any, Any, str]] = {}
        self.rx_lower_running: dict[str, hub.Greenlet] = {}     # notify_master_rx_lower_pri

    def forget(self, name: str) -> None:
        self.told.pop(name, None)
        self.rx_lower_running.pop(name, None)

    def transition(self, instance: Any, transition: fsm.Transition) -> None:
        if transition.new == fsm.STOP and instance.name in self.deleting:
            return                              # apply() says it, in the file's order
        self.notify(instance.config, "INSTANCE", instance.name, transition.new,
                     instance.state.priority)
        self.told[instance.name] = transition.new
        self._flush_groups()

    def group_changed(self, sync: Any, config, state: str) -> None:
        self.pending_groups[sync.name] = (sync, config, state)
        self._flush_groups()

    def _flush_groups(self) -> None:
        """A sync group's notifications once each member's own have said its new state, as
        keepalived orders them (members, then the group)."""
        for name, (sync, config, state) in list(self.pending_groups.items()):
            if all(self.told.get(member.name) == state for member in sync.members):
                del self.pending_groups[name]
                self.notify(config, "GROUP", name, state, 0)

    def deleted(self, instance: Any, role: str) -> None:
        """keepalived: a reload that removes an instance notifies DELETED with
        notify_deleted, else FAULT (nothing when it was in FAULT already)."""
        if instance.config.notify_deleted:
            state = DELETED
        elif role == fsm.FAULT:
            return
        else:
            state = fsm.FAULT
        self.notify(instance.config, "INSTANCE", instance.name, state, instance.state.priority)

    def notify(self, config, kind: str, name: str, state: str, priority: int) -> None:
        """keepalived's scripts: notify_<state> as written, then ``notify`` with
        TYPE NAME STATE PRIORITY, then the FIFO line (a group's priority is 0 in both)."""
        deleted = config.notify_deleted if kind == "INSTANCE" else None
        specific = {fsm.MASTER: config.notify_master, fsm.BACKUP: config.notify_backup,
                    fsm.FAULT: config.notify_fault, fsm.STOP: config.notify_stop,
                    DELETED: deleted if deleted is not True else None}.get(state)
        if specific is not None:
            self.notifier.notify(specific, (), f"{kind.lower()} {name} {state}")
        if config.notify is not None:
            self.notifier.notify(config.notify, (kind, name, state, str(priority)),
                                 f"{kind.lower()} {name} {state}")
        self.notifier.fifos.vrrp(vrrp_line(kind, name, state, priority))

    def noticed(self, instance: Any, what: str) -> None:
        """MASTER_RX_LOWER_PRI (its script, and the FIFO line always, as keepalived) and the
        priority changes (a FIFO line with notify_priority_changes)."""
        config = instance.config
        if what == "MASTER_RX_LOWER_PRI":
            running = self.rx_lower_running.get(instance.name)
            # one run at a time: a VRRPv3 peer (no authentication) sending lower adverts in
            # a loop must not fork a process per advert (keepalived does)
            if config.notify_master_rx_lower_pri is not None and \
                    (running is None or running.dead):
                self.rx_lower_running[instance.name] = self.notifier.notify(
                    config.notify_master_rx_lower_pri, (), f"instance {instance.name} {what}")
        elif not self.priority_changes(config):
            return
        self.notifier.fifos.vrrp(vrrp_line("INSTANCE", instance.name, what,
                                           instance.state.priority))

    def priority_changes(self, config) -> bool:
        """notify_priority_changes: the instance's, else its sync group's, else global."""
        if config.notify_priority_changes is not None:
            return config.notify_priority_changes
        for group in self.config().vrrp_sync_groups:
            if config.name in group.group and group.notify_priority_changes is not None:
                return group.notify_priority_changes
        return bool(self.config().global_defs.vrrp_notify_priority_changes)

    def write_states(self, sync_groups, instances, skip_instances=(), skip_groups=()) -> None:
        """fifo_write_vrrp_states_on_reload: the state of each sync group and instance a
        reload left running, to the FIFOs (groups first). As keepalived 2.2.7: not for an
        instance that is MASTER (a consumer acting on MASTER lines must not act again)."""
        for group in sync_groups:
            state = group.state()
            if group.name not in skip_groups and state != "MIXED":
                self.notifier.fifos.vrrp(vrrp_line("GROUP", group.name, state, 0))
        for instance in instances:
            if instance.name not in skip_instances and instance.state is not None and \
                    instance.state.role != fsm.MASTER:
                self.notifier.fifos.vrrp(vrrp_line("INSTANCE", instance.name,
                                                   instance.state.role, instance.state.priority))
