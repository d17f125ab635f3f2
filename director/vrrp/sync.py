"""Sync groups: the members of a vrrp_sync_group move together.

A member that becomes MASTER on its own pulls the others up; one that steps down to BACKUP
takes them down; one with a fault of its own (a tracked thing failing) holds the whole group
in FAULT until it has none. Transitions caused by the group itself (reason "sync group ...")
do not echo back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import fsm

if TYPE_CHECKING:
    from ..state import SyncGroupView


class SyncGroup:
    def __init__(self, name: str, members: list) -> None:
        self.name = name
        self.members = members
        self.reason = f"sync group {name}"
        self.last_state = fsm.INIT
        self.listeners: list = []           # called with (group, new state) on a change
        self.faulty: set[str] = set()       # members with faults of their own

    def attach(self) -> None:
        """Start (or, rebuilt by a reload, take over from the group it replaces): each
        member's fault is said to the others afresh, raised or cleared."""
        for member in self.members:
            member.listeners.append(self.on_transition)
            member.fault_listeners.append(self.on_faults)
            self._tell_faulty(member, self._own_faults(member))

    def detach(self) -> None:
        """Before a reload rebuilds the group: its members stop telling it anything. (A
        member that leaves the group restarts: reconcile.plan, tracked.signature.)"""
        for member in self.members:
            if self.on_transition in member.listeners:
                member.listeners.remove(self.on_transition)
            if self.on_faults in member.fault_listeners:
                member.fault_listeners.remove(self.on_faults)

    def _own_faults(self, member) -> bool:
        faults = member.state.faults if member.state else frozenset()
        return any(not fault.startswith(self.reason) for fault in faults)

    def on_faults(self, member) -> None:
        """A member with a fault of its own holds the others in FAULT until it has none
        (keepalived's num_member_fault); faults the group raised do not count, or two
        members failing at once would hold each other in FAULT for ever."""
        own = self._own_faults(member)
        if own != (member.name in self.faulty):
            self._tell_faulty(member, own)

    def _tell_faulty(self, member, own: bool) -> None:
        fault_name = f"{self.reason}: {member.name}"
        event = fsm.FaultRaised(fault_name) if own else fsm.FaultCleared(fault_name)
        (self.faulty.add if own else self.faulty.discard)(member.name)
        for other in self.members:
            if other is not member:
                other.post(event)

    def on_transition(self, member, transition: fsm.Transition) -> None:
        self._group_changed()
        if self.reason in transition.reason:     # caused by the group: no echo
            return
        if transition.new in (fsm.MASTER, fsm.BACKUP):
            for other in self.members:
                if other is not member:
                    other.post(fsm.ForceRole(transition.new, self.reason))

    def _group_changed(self) -> None:
        state = self.state()
        if state != self.last_state and state != "MIXED":
            self.last_state = state
            for listener in list(self.listeners):
                listener(self, state)

    def state(self) -> str:
        roles = {m.state.role if m.state else fsm.INIT for m in self.members}
        if fsm.FAULT in roles:
            return fsm.FAULT
        return roles.pop() if len(roles) == 1 else "MIXED"

    def snapshot(self) -> SyncGroupView:
        # the views load when first asked for: they are not on the way to the first advert
        from ..state import SyncGroupView
        return SyncGroupView(self.name, tuple(m.name for m in self.members), self.state())
